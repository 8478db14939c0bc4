"""Checkers of exercises 13: from GPT-2 to a modern LLM (RMSNorm, RoPE, SwiGLU, grouped-query
attention, a byte-pair merge)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checks._machinery import (
    GENERIC_HINT,
    _call,
    _call_args_text,
    _checker,
    _close,
    _compare,
    _dtype_name,
    _load_reference_weights,
    _reference_module,
    _require_attributes,
    _shape,
)
from course_lib.feedforward import SwiGLU
from course_lib.multihead import repeat_kv_heads
from course_lib.normalization import rms_norm
from course_lib.rotary import apply_rope, rotate_half

# ---------------------------------------------------------------------------------------------
# Lesson 13: from GPT-2 to a modern LLM
# ---------------------------------------------------------------------------------------------


@_checker("13.1", "rms_norm")
def check_rms_norm(ex, rms_norm_fn):
    """13.1: ``rms_norm(x (..., d), weight (d,), eps=1e-6) -> (..., d)``: ``x / sqrt(mean(x**2) + eps) * weight``
    over the last dimension, with no mean subtraction and no bias."""
    settings = [  # shape, eps (None: the default), scale of x, shift of x, dtype
        ((5, 8), None, 1.0, 3.0, torch.float64),
        ((2, 3, 6), None, 1.0, 0.5, torch.float32),
        ((2, 2, 3, 16), 0.5, 1.0, 0.0, torch.float64),
        ((4, 5), 1e-2, 0.1, 0.0, torch.float32),
        ((3, 12), None, 0.003, 0.0, torch.float64),  # tiny values: the default eps (1e-6) matters
    ]
    for shape, eps, scale, shift, dtype in settings:
        d = shape[-1]
        x = ex.randn(*shape, dtype=dtype, scale=scale) + shift  # (..., d)
        weight = 1.0 + ex.randn(d, dtype=dtype, scale=0.5)  # (d,)
        kwargs = {} if eps is None else {"eps": eps}
        e = 1e-6 if eps is None else eps
        case = f"x {_shape(x)}" + (f", eps={eps}" if eps is not None else "") + f" {_dtype_name(dtype)}"
        got = _call(ex, rms_norm_fn, x, weight, case=case, default_dtype=dtype, **kwargs)
        expected = rms_norm(x, weight, **kwargs)  # (..., d)
        mean_square = (x**2).mean(dim=-1, keepdim=True)  # (..., 1)
        centred = x - x.mean(dim=-1, keepdim=True)  # (..., d)
        variants = [
            ("subtracted the mean: RMSNorm does not centre the vector (that is layer norm); divide x itself by "
             "sqrt(mean(x**2) + eps)", centred / torch.sqrt((centred**2).mean(dim=-1, keepdim=True) + e) * weight),
            ("subtracted the mean: RMSNorm does not centre the vector; divide x itself by sqrt(mean(x**2) + eps)",
             centred / torch.sqrt(mean_square + e) * weight),
            ("eps outside the square root: divide by sqrt(mean(x**2) + eps), not by sqrt(mean(x**2)) + eps",
             x / (torch.sqrt(mean_square) + e) * weight),
            ("eps left out: divide by sqrt(mean(x**2) + eps)", x / torch.sqrt(mean_square) * weight),
            ("ignores eps: use the eps argument" if eps is not None else "wrong default eps: the contract's "
             "default is eps=1e-6", x / torch.sqrt(mean_square + (1e-6 if eps is not None else 1e-5)) * weight),
            ("sum instead of mean: the root MEAN square divides the sum of squares by d, (x**2).mean(dim=-1)",
             x / torch.sqrt((x**2).sum(dim=-1, keepdim=True) + e) * weight),
            ("divided by the mean square without the square root: divide by sqrt(mean(x**2) + eps)",
             x / (mean_square + e) * weight),
            ("forgot to scale by weight after normalising", x / torch.sqrt(mean_square + e)),
            ("scaled by weight before normalising: normalise x first, then multiply by weight",
             (x * weight) / torch.sqrt(((x * weight) ** 2).mean(dim=-1, keepdim=True) + e)),
            ("normalised over the wrong dimension: each token is normalised over its features, the last dimension",
             x / torch.sqrt((x**2).mean(dim=0, keepdim=True) + e) * weight),
        ]  # fmt: skip
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="same shape as x")
    return f"correct on {len(settings)} cases (2-D to 4-D inputs, default and given eps, float32 and float64)"


def _rope_with_frequencies(x: torch.Tensor, positions: torch.Tensor, frequencies: torch.Tensor, sign: float = 1.0):
    """The rotate-half rotation with any frequencies per pair (to compute the usual mistakes)."""
    angles = positions.to(torch.float64)[:, None] * frequencies[None, :]  # (T, d_head/2)
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1).to(x.dtype)  # (T, d_head)
    sin = torch.cat([angles.sin(), angles.sin()], dim=-1).to(x.dtype)  # (T, d_head)
    return x * cos + sign * rotate_half(x) * sin  # (..., T, d_head)


_ROPE_EXPONENT_HINT = (
    "wrong frequency exponent: pair i (i = 0 .. d_head/2 - 1) turns at base ** (-2i / d_head), i.e. "
    "1 / base ** (torch.arange(0, d_head, 2) / d_head)"
)


@_checker("13.2", "apply_rope")
def check_apply_rope(ex, apply_rope_fn):
    """13.2: ``apply_rope(x (..., T, d_head), positions (T,) int64, base=10000.0) -> (..., T, d_head)`` in the
    rotate-half layout: dimension i pairs with i + d_head/2, and pair i turns by ``positions[t] * base **
    (-2i / d_head)`` radians."""
    settings = [  # shape of x, positions, base (None: the default), dtype
        ((6, 8), torch.arange(6), None, torch.float64),
        ((2, 3, 5, 16), torch.arange(7, 12), None, torch.float64),  # a cached step: positions continue at 7
        ((1, 2, 1, 8), torch.tensor([20]), 500.0, torch.float64),  # one new token at position 20
        ((2, 4, 16), torch.arange(3, 7), None, torch.float32),
        ((3, 10, 32), torch.arange(10), 100.0, torch.float64),
    ]
    for shape, positions, base, dtype in settings:
        x = ex.randn(*shape, dtype=dtype)  # (..., T, d_head)
        d_head = shape[-1]
        b = 10000.0 if base is None else base
        kwargs = {} if base is None else {"base": base}
        case = f"x {_shape(x)}, positions {positions.tolist()}" + (f", base={base}" if base is not None else "")
        case += f" {_dtype_name(dtype)}"
        got = _call(ex, apply_rope_fn, x, positions, case=case, default_dtype=dtype, **kwargs)
        expected = apply_rope(x, positions, b)  # (..., T, d_head)
        two_i = torch.arange(0, d_head, 2, dtype=torch.float64)  # (d_head/2,): 0, 2, 4, ...
        restarted = torch.arange(len(positions))  # (T,): 0, 1, 2, ...
        variants = [
            ("paired neighbouring dimensions (2i, 2i+1): this exercise uses the rotate-half layout of Hugging Face's "
             "Llama, where dimension i pairs with dimension i + d_head/2", apply_rope(x, positions, b, interleaved=True)),
            ("ignored positions: the rotation must use the positions argument, not 0, 1, 2, ...; in cached "
             "decoding the new tokens continue at T_past, T_past + 1, ...", apply_rope(x, restarted, b)),
            (_ROPE_EXPONENT_HINT, _rope_with_frequencies(x, positions, b ** (-two_i / 2 / d_head))),
            (_ROPE_EXPONENT_HINT, _rope_with_frequencies(x, positions, b ** (-two_i / (d_head / 2)))),
            (_ROPE_EXPONENT_HINT, _rope_with_frequencies(x, positions, b ** (-two_i / 2 / (d_head / 2)))),
            ("the frequencies grow instead of shrinking: use base ** (-2i / d_head), with the minus sign",
             _rope_with_frequencies(x, positions, b ** (two_i / d_head))),
            ("ignores base: use the base argument", _rope_with_frequencies(x, positions, 10000.0 ** (-two_i / d_head))),
            ("turned the wrong way: (a, b) -> (a cos θ - b sin θ, a sin θ + b cos θ), so rotate_half(x) is "
             "cat(-second_half, first_half)", _rope_with_frequencies(x, positions, b ** (-two_i / d_head), sign=-1.0)),
            ("every pair turned at the same speed: pair i has its own frequency base ** (-2i / d_head)",
             _rope_with_frequencies(x, positions, torch.ones_like(two_i))),
        ]  # fmt: skip
        if dtype == torch.float64 and isinstance(got, torch.Tensor) and got.shape == expected.shape:
            if not _close(got, expected, 1e-10) and _close(got, expected, 1e-5):
                ex.fail(
                    "the output is right only to float32 precision",
                    "compute the angles in the dtype of x (or in float64): torch.arange(..., dtype=x.dtype); "
                    ".float() or a float32 tensor makes cos and sin float32",
                    case,
                )
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="same shape as x: (..., T, d_head)")
    return (
        f"correct on {len(settings)} cases (2-D to 4-D inputs, positions from 0 and continuing a cache, "
        "default and given base, float32 and float64)"
    )


_SWIGLU_CONSTRUCTOR = "SwiGLU(d_model, d_ff, bias=False)"


def _prepare_swiglu(ex, learner_class, d_model, d_ff, kwargs, reference, case, dtype) -> nn.Module:
    """Build the learner's SwiGLU like the reference, check its layer names, load the reference's weights."""
    error_hint = f"the constructor must accept the contract's arguments: {_SWIGLU_CONSTRUCTOR}"
    learner = _call(ex, learner_class, d_model, d_ff, case=case, default_dtype=dtype, error_hint=error_hint, **kwargs)
    if not isinstance(learner, nn.Module):
        ex.fail(f"{learner_class.__name__}(...) is not an nn.Module", "subclass nn.Module and call super().__init__()")
    _require_attributes(
        ex, learner, ["gate", "up", "down"], "gate (d_model -> d_ff), up (d_model -> d_ff) and down (d_ff -> d_model)"
    )
    learner = learner.to(dtype)
    _load_reference_weights(ex, learner, reference, case)
    return learner.eval()


@_checker("13.3", "SwiGLU", kind="class")
def check_swiglu(ex, swiglu_class):
    """13.3: ``class SwiGLU(nn.Module)`` built as ``SwiGLU(d_model, d_ff)`` (and with ``bias=True``); layers
    ``gate`` and ``up`` (d_model -> d_ff) and ``down`` (d_ff -> d_model); ``forward(x)`` returns
    ``down(silu(gate(x)) * up(x))``."""
    settings = [
        (8, 24, {}, (2, 5), torch.float64),
        (6, 16, {}, (3, 4), torch.float32),
        (12, 32, {"bias": True}, (1, 3), torch.float64),
    ]
    for d_model, d_ff, kwargs, (B, T), dtype in settings:
        case = f"SwiGLU({_call_args_text((d_model, d_ff), kwargs)}), x ({B}, {T}, {d_model}) {_dtype_name(dtype)}"
        reference = _reference_module(ex, SwiGLU, (d_model, d_ff), kwargs, dtype)
        learner = _prepare_swiglu(ex, swiglu_class, d_model, d_ff, kwargs, reference, case, dtype)
        x = ex.randn(B, T, d_model, dtype=dtype, scale=2.0)  # (B, T, d_model)
        got = _call(ex, learner, x, case=case, default_dtype=dtype)
        expected = reference(x)  # (B, T, d_model)
        gate, up, down = reference.gate(x), reference.up(x), reference.down  # (B, T, d_ff), (B, T, d_ff), layer
        variants = [
            ("SiLU on the wrong branch: it goes on the gate, down(silu(gate(x)) * up(x))", down(gate * F.silu(up))),
            ("SiLU applied after the product: the gate alone goes through SiLU, down(silu(gate(x)) * up(x))",
             down(F.silu(gate * up))),
            ("no SiLU: the gate is silu(gate(x))", down(gate * up)),
            ("used sigmoid (the original GLU): SwiGLU's gate is SiLU, x * sigmoid(x), i.e. F.silu",
             down(torch.sigmoid(gate) * up)),
            ("used GELU (that is GeGLU): SwiGLU's gate is SiLU, F.silu", down(F.gelu(gate) * up)),
            ("used ReLU (that is ReGLU): SwiGLU's gate is SiLU, F.silu", down(F.relu(gate) * up)),
            ("added the two branches: multiply them element-wise, silu(gate(x)) * up(x)", down(F.silu(gate) + up)),
            ("forgot the down projection back to d_model", F.silu(gate) * up),
            ("added the residual inside SwiGLU: the residual belongs to the block around it", x + expected),
        ]  # fmt: skip
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="the output is (B, T, d_model)")
    return f"correct on {len(settings)} cases (several d_model and d_ff, with and without biases; float32 and float64)"


@_checker("13.4", "repeat_kv_heads")
def check_repeat_kv_heads(ex, repeat_kv_heads_fn):
    """13.4: ``repeat_kv_heads(x (B, n_kv_heads, T, d_head), n_repeats) -> (B, n_kv_heads * n_repeats, T, d_head)``:
    each key/value head repeated ``n_repeats`` times in place, so query head h reads kv head h // n_repeats."""
    settings = [  # B, n_kv_heads, T, d_head, n_repeats, dtype
        (1, 2, 3, 4, 3, torch.float64),
        (2, 3, 5, 8, 2, torch.float32),
        (2, 1, 4, 6, 4, torch.float64),  # multi-query attention: one kv head for all
        (1, 4, 2, 4, 1, torch.float64),  # multi-head attention: nothing to repeat
    ]
    for B, n_kv_heads, T, d_head, n_repeats, dtype in settings:
        x = ex.randn(B, n_kv_heads, T, d_head, dtype=dtype)  # (B, n_kv_heads, T, d_head)
        case = f"x {_shape(x)} = (B, n_kv_heads, T, d_head), n_repeats={n_repeats} {_dtype_name(dtype)}"
        got = _call(ex, repeat_kv_heads_fn, x, n_repeats, case=case, default_dtype=dtype)
        expected = repeat_kv_heads(x, n_repeats)  # (B, n_heads, T, d_head)
        variants = [
            ("tiled the heads (kv0, kv1, kv0, kv1, ...) with .repeat: each kv head must serve n_repeats neighbouring "
             "query heads (kv0, kv0, kv1, kv1, ...), so query head h reads kv head h // n_repeats: use "
             "x.repeat_interleave(n_repeats, dim=1)", x.repeat(1, n_repeats, 1, 1)),
            ("repeated along the wrong dimension: the heads are dimension 1 of (B, n_kv_heads, T, d_head)",
             x.repeat_interleave(n_repeats, dim=2)),
            ("repeated along the wrong dimension: the heads are dimension 1 of (B, n_kv_heads, T, d_head)",
             x.repeat_interleave(n_repeats, dim=-1)),
            ("repeated along the wrong dimension: the heads are dimension 1 of (B, n_kv_heads, T, d_head)",
             x.repeat_interleave(n_repeats, dim=0)),
            ("returned x unchanged: repeat each kv head n_repeats times", x),
        ]  # fmt: skip
        shape_hint = f"(B, n_kv_heads * n_repeats, T, d_head) = ({B}, {n_kv_heads * n_repeats}, {T}, {d_head})"
        _compare(ex, got, expected, case=case, variants=variants, shape_hint=shape_hint)
    return f"correct on {len(settings)} cases (grouped, multi-query and multi-head; float32 and float64)"


# ---------------------------------------------------------------------------------------------
# 13.5: one byte-pair merge
# ---------------------------------------------------------------------------------------------


def _merge_left_to_right(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    merged, index = [], 0
    while index < len(ids):
        if index + 1 < len(ids) and ids[index] == pair[0] and ids[index + 1] == pair[1]:
            merged.append(new_id)
            index += 2
        else:
            merged.append(ids[index])
            index += 1
    return merged


def _merge_overlapping(ids, pair, new_id):
    """Every position where the pair starts becomes new_id (the second id of a merged pair is reused)."""
    merged = [new_id if (a, b) == tuple(pair) else a for a, b in zip(ids[:-1], ids[1:], strict=True)]
    return merged + ids[-1:]


def _merge_overlapping_skipping_seconds(ids, pair, new_id):
    """Every position where the pair starts becomes new_id, and every id that ends a pair is dropped."""
    merged = []
    for index, value in enumerate(ids):
        if index + 1 < len(ids) and (value, ids[index + 1]) == tuple(pair):
            merged.append(new_id)
        elif index == 0 or (ids[index - 1], value) != tuple(pair):
            merged.append(value)
    return merged


def _merge_right_to_left(ids, pair, new_id):
    reversed_pair = (pair[1], pair[0])
    return _merge_left_to_right(ids[::-1], reversed_pair, new_id)[::-1]


def _merge_first_only(ids, pair, new_id):
    for index in range(len(ids) - 1):
        if (ids[index], ids[index + 1]) == tuple(pair):
            return ids[:index] + [new_id] + ids[index + 2 :]
    return list(ids)


def _merge_dropping_last(ids, pair, new_id):
    """A loop over range(len(ids) - 1) that forgets the id at the end when no pair starts there."""
    merged, index = [], 0
    while index < len(ids) - 1:
        if (ids[index], ids[index + 1]) == tuple(pair):
            merged.append(new_id)
            index += 2
        else:
            merged.append(ids[index])
            index += 1
    return merged


def _merge_either_order(ids, pair, new_id):
    merged, index = [], 0
    while index < len(ids):
        if index + 1 < len(ids) and (ids[index], ids[index + 1]) in (tuple(pair), tuple(pair)[::-1]):
            merged.append(new_id)
            index += 2
        else:
            merged.append(ids[index])
            index += 1
    return merged


_MERGE_MISTAKES = [
    ("merged overlapping occurrences: once a pair is merged, both of its ids are used up, so continue after "
     "the second one (index += 2): [1, 1, 1] with pair (1, 1) gives [new_id, 1]", _merge_overlapping),
    ("merged overlapping occurrences: once a pair is merged, both of its ids are used up, so continue after "
     "the second one (index += 2): [1, 1, 1] with pair (1, 1) gives [new_id, 1]", _merge_overlapping_skipping_seconds),
    ("scanned right to left: scan left to right, so [1, 1, 1] with pair (1, 1) gives [new_id, 1], not "
     "[1, new_id]", _merge_right_to_left),
    ("merged only the first occurrence: replace every non-overlapping occurrence", _merge_first_only),
    ("the last id was lost: when no pair starts at the last position, that id is kept as it is",
     _merge_dropping_last),
    ("matched the pair in either order: (a, b) is a different pair from (b, a)", _merge_either_order),
]  # fmt: skip


def _require_id_list(ex, got, case: str) -> list[int]:
    if isinstance(got, torch.Tensor) or not isinstance(got, list | tuple):
        ex.fail(f"the result must be a list of ints, got {type(got).__name__}", "build and return a new list", case)
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in got):
        kinds = sorted({type(value).__name__ for value in got})
        ex.fail(
            f"the result must hold ints, got {', '.join(kinds)}",
            "append the ids themselves (ints) and new_id; no nested lists or pairs",
            case,
        )
    return list(got)


@_checker("13.5", "merge_pair")
def check_merge_pair(ex, merge_pair_fn):
    """13.5: ``merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]``: scan ``ids`` left
    to right; where ``ids[i], ids[i + 1]`` equal ``pair``, write ``new_id`` and continue after both, else keep
    ``ids[i]``. Returns a new list; ``ids`` is left unchanged."""
    settings = [
        ([5, 6, 7, 5, 6], (5, 6), 9),
        ([1, 1, 1], (1, 1), 4),
        ([1, 1, 1, 1, 1], (1, 1), 7),
        ([2, 3, 3, 2, 3], (3, 2), 8),
        ([2, 1, 2, 1], (1, 2), 9),
        ([7, 8, 9], (1, 2), 3),
        ([], (1, 2), 5),
        ([4], (4, 4), 6),
    ]
    for ids, pair, new_id in settings:
        case = f"merge_pair({ids}, {pair}, {new_id})"
        got = _require_id_list(ex, _call(ex, merge_pair_fn, list(ids), pair, new_id, case=case), case)
        expected = _merge_left_to_right(ids, pair, new_id)
        wrong = [(hint, mistake(list(ids), pair, new_id)) for hint, mistake in _MERGE_MISTAKES]
        ex.note_results({hint: got == result for hint, result in wrong})
        if got == expected:
            continue
        problem = f"got {got}, expected {expected}"
        candidates = [hint for hint, result in wrong if got == result and result != expected]
        if not ex.name_mistake(problem, candidates, case):
            ex.fail(problem, "follow the case by hand: " + GENERIC_HINT, case)
    return f"correct on {len(settings)} cases (repeated and overlapping pairs, no occurrence, empty and one-id lists)"
