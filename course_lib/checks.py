"""Checkers for the exercise notebooks: ``check_<name>(learner_object)``.

A check cell is ``from course_lib.checks import check_X`` and then ``check_X(your_function)``
(or ``check_X(YourClass)`` for a class exercise: pass the class itself, not an instance).
Each checker runs the learner's work on several seeded cases (batch and head dimensions,
float32 and float64, masks with a fully masked row, ...), compares it with the course_lib
reference, and then either prints exactly one deterministic line, such as

    ✓ 03.2 scaled_dot_product_attention: correct on 6 cases (...)

or raises ``CheckFailed`` (an ``AssertionError``) whose message names the mistake and gives
a hint. To name the mistake, a checker also computes what common wrong versions would
return (softmax over the wrong dimension, no scaling, an inverted mask, ...) and says which
one the learner's result matches. A stub that still raises ``NotImplementedError`` fails
with "not implemented yet". Checkers draw their own random numbers from a fixed seed, leave
the global random state and the default dtype as they found them, and work whatever the
default dtype is.

Checkers and what each expects from the learner (tensors are batch first):

    01.1 check_embedding_lookup                embedding_lookup(token_ids (B, T), table (V, d)) -> (B, T, d)
    01.2 check_one_hot_embedding               one_hot_embedding(token_ids (B, T), table (V, d)) -> (B, T, d),
                                               one_hot(token_ids, V).float() @ table (float32 tables)
    01.3 check_cosine_similarity_matrix        cosine_similarity_matrix(x (N, d)) -> (N, N)
    02.1 check_sinusoidal_positional_encoding  sinusoidal_positional_encoding(seq_len, d_model, base=10000.0)
                                               -> (seq_len, d_model), sin on even and cos on odd dimensions
    02.2 check_pe_wavelength                   pe_wavelength(i, d_model, base=10000.0) -> float,
                                               2 * pi * base ** (2 * i / d_model)
    02.3 check_add_positional_encoding         add_positional_encoding(x (B, T, d_model)) -> x + PE, (B, T, d_model)
    03.1 check_attention_scores                attention_scores(q (..., T_q, d_k), k (..., T_k, d_k)) -> (..., T_q, T_k)
    03.2 check_scaled_dot_product_attention    scaled_dot_product_attention(q, k, v, mask=None)
                                               -> (output (..., T_q, d_v), weights (..., T_q, T_k))
    03.3 check_softmax_saturation              softmax_saturation(d) -> (max weight unscaled, max weight scaled),
                                               drawn as described in check_softmax_saturation's docstring
    04.1 check_causal_mask                     causal_mask(T) -> bool (T, T)
    04.2 check_padding_mask                    padding_mask(token_ids (B, T), pad_id) -> bool (B, 1, 1, T)
    04.3 check_decoder_self_mask               decoder_self_mask(tgt_ids (B, T), pad_id) -> bool (B, 1, T, T)
    05.1 check_split_heads                     split_heads(x (B, T, d_model), n_heads) -> (B, n_heads, T, d_head)
    05.2 check_merge_heads                     merge_heads(x (B, n_heads, T, d_head)) -> (B, T, d_model)
    05.3 check_multi_head_attention            class MultiHeadAttention(d_model, n_heads, dropout=0.0, bias=True),
                                               w_q, w_k, w_v, w_o; forward(query, key, value, mask=None);
                                               keeps .attention_weights (B, n_heads, T_q, T_k)
    05.4 check_mha_parameter_count             mha_parameter_count(d_model, bias=True) -> int
    06.1 check_layer_norm                      layer_norm(x (..., d), weight (d,), bias (d,), eps=1e-5) -> (..., d)
    06.2 check_feed_forward                    class FeedForward(d_model, d_ff, activation="relu", dropout=0.0),
                                               linear1, linear2; forward(x (B, T, d_model))
    06.3 check_residual_sublayer               residual_sublayer(x, sublayer, norm, norm_first) -> (B, T, d_model)
    07.1 check_encoder_layer                   class EncoderLayer(d_model, n_heads, d_ff, dropout=0.0,
                                               activation="relu", norm_first=False), self_attn, ff, norm1, norm2;
                                               forward(x, mask=None)
    07.2 check_encoder_layer_parameter_count   encoder_layer_parameter_count(d_model, d_ff) -> int
    07.3 check_pad_batch                       pad_batch(sequences: list[list[int]], pad_id) -> int64 (B, T_max)
    08.1 check_decoder_layer                   class DecoderLayer(same arguments as EncoderLayer), self_attn,
                                               cross_attn, ff, norm1, norm2, norm3;
                                               forward(x, memory, self_mask=None, memory_mask=None)
    08.2 check_cross_attention_weights_shape   cross_attention_weights_shape(B, T, S, n_heads) -> tuple
    08.3 check_shift_right                     shift_right(tgt_ids (B, T), bos_id) -> (B, T)
    09.1 check_next_token_probs                next_token_probs(logits (..., V), temperature=1.0, top_k=None, top_p=None)
    09.2 check_greedy_decode                   greedy_decode(model, src_ids (B, S), bos_id, eos_id, max_len)
                                               -> (B, 1 + L), for a course_lib Transformer
    09.3 check_sequence_log_prob               sequence_log_prob(logits (B, T, V), target_ids (B, T)) -> (B,)

Built for the exercise notebooks of lessons 01-09.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import scaled_dot_product_attention
from course_lib.decoder import DecoderLayer
from course_lib.embeddings import embedding_lookup
from course_lib.encoder import EncoderLayer
from course_lib.feedforward import FeedForward
from course_lib.generation import greedy_decode, next_token_probs
from course_lib.masks import causal_mask, combine_masks, padding_mask
from course_lib.models import Transformer, TransformerConfig
from course_lib.multihead import MultiHeadAttention, merge_heads, split_heads
from course_lib.normalization import LayerNorm, layer_norm
from course_lib.positional import sinusoidal_positional_encoding

__all__ = [
    "CheckFailed",
    "check_add_positional_encoding",
    "check_attention_scores",
    "check_causal_mask",
    "check_cosine_similarity_matrix",
    "check_cross_attention_weights_shape",
    "check_decoder_layer",
    "check_decoder_self_mask",
    "check_embedding_lookup",
    "check_encoder_layer",
    "check_encoder_layer_parameter_count",
    "check_feed_forward",
    "check_greedy_decode",
    "check_layer_norm",
    "check_merge_heads",
    "check_mha_parameter_count",
    "check_multi_head_attention",
    "check_next_token_probs",
    "check_one_hot_embedding",
    "check_pad_batch",
    "check_padding_mask",
    "check_pe_wavelength",
    "check_residual_sublayer",
    "check_scaled_dot_product_attention",
    "check_sequence_log_prob",
    "check_shift_right",
    "check_sinusoidal_positional_encoding",
    "check_softmax_saturation",
    "check_split_heads",
]

SEED = 0
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
SATURATION_SEED = 0
SATURATION_KEYS = 10
NOT_IMPLEMENTED_HINT = "replace the `raise NotImplementedError` line with your code, run that cell, then run this check"
GENERIC_HINT = (
    "print the shapes and a few values of each step of your code on this case, and compare them with the lesson"
)


class CheckFailed(AssertionError):
    """Raised by a checker when the learner's work is not right yet; the message says why and what to try."""


# ---------------------------------------------------------------------------------------------
# Shared machinery: the exercise, calling the learner's code, comparing with the reference
# ---------------------------------------------------------------------------------------------


class _Exercise:
    """One exercise being checked: its id and name, and the seeded random numbers of its cases."""

    def __init__(self, exercise_id: str, name: str):
        self.id = exercise_id
        self.name = name
        self.generator = torch.Generator().manual_seed(SEED)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float64, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator, dtype=dtype) * scale

    def randint(self, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=self.generator)

    def fail(self, problem: str, hint: str, case: str | None = None):
        __tracebackhide__ = True
        where = f" (case: {case})" if case else ""
        raise CheckFailed(f"{self.id} {self.name}: {problem}{where}.\nHint: {hint}")


@contextmanager
def _default_dtype(dtype: torch.dtype):
    """Run a case with ``dtype`` as the default, so tensors the learner creates match the inputs."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _checker(exercise_id: str, name: str, kind: str = "function"):
    """Turn ``check(ex, learner_object) -> summary`` into the public ``check_<name>(learner_object)``.

    The wrapper seeds its own random numbers (restoring the global state afterwards), turns a
    stub's ``NotImplementedError`` into a clear ``CheckFailed``, and prints the one success line.
    """

    def decorate(check):
        def run(learner_object) -> None:
            __tracebackhide__ = True  # IPython and pytest show the message, not these frames
            ex = _Exercise(exercise_id, name)
            _require_learner_object(ex, learner_object, kind)
            previous_dtype, previous_threads = torch.get_default_dtype(), torch.get_num_threads()
            torch.set_num_threads(1)  # the cases are tiny: one thread is faster, and steady on a busy machine
            try:
                with torch.random.fork_rng(devices=[]), torch.no_grad():
                    torch.manual_seed(SEED)
                    summary = check(ex, learner_object)
            except NotImplementedError:
                raise CheckFailed(f"{exercise_id} {name}: not implemented yet.\nHint: {NOT_IMPLEMENTED_HINT}") from None
            finally:
                torch.set_default_dtype(previous_dtype)
                torch.set_num_threads(previous_threads)
            print(f"✓ {exercise_id} {name}: {summary}")

        run.__name__ = check.__name__
        run.__qualname__ = check.__qualname__
        run.__doc__ = check.__doc__
        run.__module__ = check.__module__
        return run

    return decorate


def _require_learner_object(ex: _Exercise, learner_object, kind: str) -> None:
    if kind == "class":
        if isinstance(learner_object, nn.Module):
            ex.fail(
                f"got an instance of {type(learner_object).__name__}",
                f"pass the class itself, e.g. check_...({type(learner_object).__name__}); the checker builds "
                "instances of several sizes",
            )
        if not isinstance(learner_object, type):
            ex.fail(f"expected a class, got {type(learner_object).__name__}", "pass your nn.Module subclass itself")
    elif not callable(learner_object):
        ex.fail(f"expected a function, got {type(learner_object).__name__}", "pass your function itself, without ()")


def _shape(value) -> str:
    """Render a shape (of a tensor, or a tuple) as ``(2, 10, 32)``."""
    sizes = value.shape if isinstance(value, torch.Tensor) else value
    return "(" + ", ".join(str(int(size)) for size in sizes) + ")"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _snapshot(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list):
        return copy.deepcopy(value)
    return None


def _unchanged(before, after) -> bool:
    if isinstance(before, torch.Tensor):
        return isinstance(after, torch.Tensor) and after.shape == before.shape and torch.equal(after, before)
    return before == after


def _call(
    ex: _Exercise, func, *args, case: str, default_dtype: torch.dtype | None = None, error_hint: str = "", **kwargs
):
    """Call the learner's code; turn its errors (and changes to its inputs) into a CheckFailed with a hint."""
    __tracebackhide__ = True
    snapshots = [_snapshot(arg) for arg in args]
    try:
        with _default_dtype(default_dtype or torch.get_default_dtype()):
            result = func(*args, **kwargs)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:
        hint = error_hint or "read the error message, then " + GENERIC_HINT
        raise CheckFailed(
            f"{ex.id} {ex.name}: your code raised {type(error).__name__}: {error} (case: {case}).\nHint: {hint}"
        ) from error
    for position, (before, arg) in enumerate(zip(snapshots, args, strict=True)):
        if before is not None and not _unchanged(before, arg):
            ex.fail(
                f"argument {position + 1} was changed in place",
                "leave the inputs as they are (no +=, no x[...] = ..., no .append on a given list): "
                "build new tensors or lists instead",
                case,
            )
    return result


def _tolerance(*tensors: torch.Tensor) -> float:
    """The looser tolerance of the float tensors given (1e-5 for float32, 1e-10 for float64)."""
    floats = [TOLERANCE.get(t.dtype, 1e-5) for t in tensors if t.is_floating_point()]
    return max(floats) if floats else 0.0


def _close(got: torch.Tensor, expected: torch.Tensor, tol: float, equal_nan: bool = False) -> bool:
    if got.shape != expected.shape:
        return False
    if not (got.is_floating_point() or expected.is_floating_point()):
        return torch.equal(got.long(), expected.long())
    return torch.allclose(got.double(), expected.double(), rtol=tol, atol=tol, equal_nan=equal_nan)


def _largest_difference(got: torch.Tensor, expected: torch.Tensor):
    """Index, learner value, reference value and size of the largest difference (NaN counts as infinite)."""
    got64, expected64 = got.double(), expected.double()
    difference = torch.where(got64 == expected64, 0.0, (got64 - expected64).abs())  # equal infinities count as 0
    difference = torch.nan_to_num(difference, nan=math.inf)
    flat_index = int(difference.flatten().argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index), difference.shape))
    return index, got64[index].item(), expected64[index].item(), difference[index].item()


def _require_tensor(ex: _Exercise, got, what: str, case: str, expected_shape: str = "") -> None:
    if not isinstance(got, torch.Tensor):
        if isinstance(got, tuple | list) and got and isinstance(got[0], torch.Tensor):
            described = f"a {type(got).__name__} of {len(got)} tensors"
        else:
            described = type(got).__name__
        ex.fail(
            f"the {what} must be a torch.Tensor{' ' + expected_shape if expected_shape else ''}, got {described}",
            "return the tensor itself (check the return statement)",
            case,
        )


def _require_dtype(ex: _Exercise, got: torch.Tensor, expected: torch.Tensor, what: str, case: str) -> None:
    """Bool must stay bool, int64 ids must stay int64, floats must be floats."""
    if expected.dtype == torch.bool and got.dtype != torch.bool:
        if got.is_floating_point() and torch.isinf(got).any():
            kind = "an additive float mask (0 and -inf); this exercise asks for the bool mask itself"
        else:
            kind = f"a {_dtype_name(got.dtype)} mask"
        ex.fail(
            f"wrong dtype: got {kind}, expected torch.bool",
            "masks are bool with True = may attend: build them with dtype=torch.bool or a comparison, or call .bool()",
            case,
        )
    if expected.dtype == torch.int64 and got.dtype != torch.int64:
        ex.fail(
            f"wrong dtype: got {_dtype_name(got.dtype)}, expected torch.int64 (token ids)",
            "token ids are int64 (torch.long): create tensors with dtype=torch.long, or convert with .long()",
            case,
        )
    if expected.is_floating_point() and not got.is_floating_point():
        ex.fail(f"wrong dtype: got {_dtype_name(got.dtype)}, expected a float tensor", GENERIC_HINT, case)


def _compare(
    ex: _Exercise,
    got,
    expected: torch.Tensor,
    *,
    case: str,
    what: str = "output",
    variants=(),
    shape_hint: str = "",
    nan_hint: str = "",
    any_float: bool = False,
    tol: float | None = None,
    generic_hint: str = GENERIC_HINT,
) -> None:
    """Compare the learner's tensor with the reference; on a difference, name the mistake if we can.

    ``variants`` is a list of ``(hint, wrong_result)``: what a known mistake would return on this
    case. If the learner's result equals one of them (and that mistake makes a difference here),
    the hint names it. ``any_float`` accepts any float dtype (otherwise it must match the reference).
    """
    __tracebackhide__ = True
    _require_tensor(ex, got, what, case, f"of shape {_shape(expected)}")
    _require_dtype(ex, got, expected, what, case)
    tol = _tolerance(got, expected) if tol is None else tol
    if _close(got, expected, tol):
        if expected.is_floating_point() and not any_float and got.dtype != expected.dtype:
            ex.fail(
                f"wrong dtype: the {what} is {_dtype_name(got.dtype)} but should be {_dtype_name(expected.dtype)} "
                "like the inputs",
                "create new tensors with dtype=x.dtype (and device=x.device) instead of a fixed dtype",
                case,
            )
        return
    for hint, wrong in variants:
        if wrong is None or not isinstance(wrong, torch.Tensor):
            continue
        if _close(got, wrong, tol, equal_nan=True) and not _close(wrong, expected, tol, equal_nan=True):
            ex.fail(f"the {what} is not right", hint, case)
    if got.shape != expected.shape:
        ex.fail(
            f"wrong {what} shape: expected {_shape(expected)}, got {_shape(got)}",
            shape_hint or "print the shape after each line of your code to see where it goes wrong",
            case,
        )
    if got.is_floating_point() and torch.isnan(got).any() and not torch.isnan(expected).any():
        index = tuple(int(i) for i in torch.isnan(got).nonzero()[0])
        ex.fail(f"the {what} contains NaN (first at index {index})", nan_hint or generic_hint, case)
    index, got_value, expected_value, difference = _largest_difference(got, expected)
    ex.fail(
        f"the {what} differs from the reference by {difference:.3g} at index {index} "
        f"(got {got_value:.6g}, expected {expected_value:.6g})",
        generic_hint,
        case,
    )


def _as_number(ex: _Exercise, value, what: str, case: str) -> float:
    """Accept a Python number or a one-element tensor; anything else fails with a hint."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            ex.fail(
                f"the {what} must be one number, got a tensor of shape {_shape(value)}",
                "reduce it to a single value (e.g. .max()) and convert it with .item()",
                case,
            )
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, int | float) and not hasattr(value, "__float__"):
        ex.fail(f"the {what} must be a number, got {type(value).__name__}", "return a float or an int", case)
    return float(value)


def _first_variant(value: float, expected: float, variants, rel: float = 1e-6) -> str | None:
    """The hint of the first (hint, wrong_number) that ``value`` equals while the reference differs."""
    for hint, wrong in variants:
        if math.isclose(value, wrong, rel_tol=rel, abs_tol=1e-12) and not math.isclose(expected, wrong, rel_tol=rel):
            return hint
    return None


def _randomize_parameters(ex: _Exercise, module: nn.Module) -> None:
    """Random weights everywhere (layer norms near 1 with random shifts), so a mixed-up layer shows."""
    for name, parameter in module.named_parameters():
        if parameter.dim() == 1 and "norm" in name and name.endswith("weight"):
            parameter.copy_(1.0 + ex.randn(*parameter.shape, dtype=parameter.dtype, scale=0.3))
        elif parameter.dim() == 1:
            parameter.copy_(ex.randn(*parameter.shape, dtype=parameter.dtype, scale=0.3))
        else:
            parameter.copy_(ex.randn(*parameter.shape, dtype=parameter.dtype, scale=parameter.shape[-1] ** -0.5))


def _require_attributes(ex: _Exercise, module: nn.Module, names: list[str], contract: str, hints=None) -> None:
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        found = [name for name, _ in module.named_children()]
        extra = "; ".join((hints or {}).get(name, "") for name in missing if (hints or {}).get(name))
        ex.fail(
            f"missing attributes: {', '.join(missing)} (your module has: {', '.join(found) or 'no submodules'})",
            f"the contract names them {contract}, so the checker can load the reference's weights"
            + (f"; {extra}" if extra else ""),
        )


def _load_reference_weights(ex: _Exercise, learner: nn.Module, reference: nn.Module, case: str) -> None:
    """Copy the reference's weights into the learner's module; name the parameters that do not line up."""
    learner_keys = set(learner.state_dict())
    reference_keys = set(reference.state_dict())
    missing = sorted(reference_keys - learner_keys)
    unexpected = sorted(learner_keys - reference_keys)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"the reference has {', '.join(missing)} which your module lacks")
        if unexpected:
            parts.append(f"your module has {', '.join(unexpected)} which the reference lacks")
        hint = "use the contract's attribute names and nn.Linear layers"
        if any(key.endswith(".bias") for key in missing + unexpected):
            hint += "; pass bias=bias to every nn.Linear so bias=False gives layers without biases"
        ex.fail("the parameters do not match the reference: " + "; ".join(parts), hint, case)
    try:
        learner.load_state_dict(reference.state_dict())
    except RuntimeError as error:
        ex.fail(
            f"the reference's weights do not fit your module: {error}",
            "check the in and out sizes of your nn.Linear layers",
            case,
        )


def _reference_module(ex: _Exercise, module_class, args: tuple, kwargs: dict, dtype: torch.dtype) -> nn.Module:
    with _default_dtype(dtype):
        reference = module_class(*args, **kwargs)
    _randomize_parameters(ex, reference)
    return reference.to(dtype).eval()


_CONSTRUCTORS = {
    "MultiHeadAttention": "MultiHeadAttention(d_model, n_heads, dropout=0.0, bias=True)",
    "FeedForward": 'FeedForward(d_model, d_ff, activation="relu", dropout=0.0)',
    "EncoderLayer": 'EncoderLayer(d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False)',
    "DecoderLayer": 'DecoderLayer(d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False)',
}


def _prepare_learner_module(ex, learner_class, args, kwargs, reference, names, contract, case, dtype, hints=None):
    """Build the learner's module like the reference, check its attribute names, load the reference's weights."""
    error_hint = f"the constructor must accept the contract's arguments: {_CONSTRUCTORS[ex.name]}"
    learner = _call(ex, learner_class, *args, case=case, default_dtype=dtype, error_hint=error_hint, **kwargs)
    if not isinstance(learner, nn.Module):
        ex.fail(f"{learner_class.__name__}(...) is not an nn.Module", "subclass nn.Module and call super().__init__()")
    _require_attributes(ex, learner, names, contract, hints)
    learner = learner.to(dtype)
    _load_reference_weights(ex, learner, reference, case)
    return learner.eval()


def _attempt(compute, *args, **kwargs):
    """A wrong variant that cannot even be computed on this case (shapes do not fit) is simply skipped."""
    try:
        return compute(*args, **kwargs)
    except (ValueError, RuntimeError):
        return None


def _call_args_text(args: tuple, kwargs: dict) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _residual(x, sublayer, norm, *, norm_first: bool, residual: bool = True, add_normalised: bool = False):
    """One sublayer with its residual connection and layer norm, and the usual ways to get it wrong."""
    if norm_first:
        normalised = norm(x)  # (B, T, d_model)
        out = sublayer(normalised)  # (B, T, d_model)
        if not residual:
            return out
        return (normalised if add_normalised else x) + out  # (B, T, d_model)
    out = sublayer(x)  # (B, T, d_model)
    return norm(x + out) if residual else norm(out)  # (B, T, d_model)


# ---------------------------------------------------------------------------------------------
# Lesson 01: tokens and embeddings
# ---------------------------------------------------------------------------------------------


def _embedding_cases(ex: _Exercise, dtypes):
    """(token_ids, table, description) with V != d and B != T, so swapped axes show."""
    sizes = [(2, 5, 11, 4), (3, 4, 7, 6), (1, 1, 3, 5), (4, 3, 20, 8)]
    cases = []
    for (B, T, V, d), dtype in zip(sizes, dtypes, strict=True):
        table = ex.randn(V, d, dtype=dtype)  # (V, d)
        last = len(cases) == len(sizes) - 1
        token_ids = ex.randint(0, V - 1 if last else V, (B, T))  # (B, T); the last case never uses id V - 1
        if not last:
            token_ids[0, 0] = V - 1  # the largest id appears
        cases.append((token_ids, table, f"token_ids {_shape(token_ids)}, table {_shape(table)} {_dtype_name(dtype)}"))
    return cases


def _embedding_variants(token_ids: torch.Tensor, table: torch.Tensor):
    V, d = table.shape
    one_hot = F.one_hot(token_ids, V).to(table.dtype)  # (B, T, V)
    return [
        (
            "off by one: row token_ids[b, t] of the table is the vector of that token (no -1 or +1)",
            table[token_ids - 1],
        ),
        (
            "the rows were flattened to (B*T, d): index with the (B, T) ids directly, or reshape back to (B, T, d)",
            table[token_ids.flatten()],
        ),
        ("you returned the one-hot matrix: multiply it by the table (or index the table's rows)", one_hot),
        (
            "scaled by sqrt(d): this exercise is the plain lookup, without the sqrt(d_model) factor",
            table[token_ids] * d**0.5,
        ),
    ]


@_checker("01.1", "embedding_lookup")
def check_embedding_lookup(ex, embedding_lookup_fn):
    """01.1: ``embedding_lookup(token_ids (B, T), table (V, d)) -> (B, T, d)``, row ``token_ids[b, t]`` of table."""
    cases = _embedding_cases(ex, [torch.float64, torch.float32, torch.float64, torch.float32])
    for token_ids, table, case in cases:
        got = _call(ex, embedding_lookup_fn, token_ids, table, case=case, default_dtype=table.dtype)
        expected = embedding_lookup(token_ids, table)  # (B, T, d)
        _compare(
            ex, got, expected, case=case, variants=_embedding_variants(token_ids, table),
            shape_hint="one d-dimensional row of the table per token: (B, T, d); index the rows with table[token_ids]",
        )  # fmt: skip
    return f"correct on {len(cases)} cases (several B, T, V, d; float32 and float64 tables)"


@_checker("01.2", "one_hot_embedding")
def check_one_hot_embedding(ex, one_hot_embedding_fn):
    """01.2: ``one_hot_embedding(token_ids (B, T), table (V, d)) -> (B, T, d)``: ``one_hot(ids, V).float() @ table``.

    The tables are float32, so ``.float()`` is the right conversion (``.to(table.dtype)`` works too).
    """
    cases = _embedding_cases(ex, [torch.float32] * 4)
    error_hint = (
        "one_hot(token_ids) without num_classes makes only max(id) + 1 columns: pass num_classes=V "
        "(V = table.shape[0]), and multiply one_hot (B, T, V) @ table (V, d)"
    )
    for token_ids, table, case in cases:
        got = _call(
            ex, one_hot_embedding_fn, token_ids, table, case=case, default_dtype=table.dtype, error_hint=error_hint
        )
        expected = embedding_lookup(token_ids, table)  # (B, T, d)
        _compare(
            ex, got, expected, case=case, variants=_embedding_variants(token_ids, table),
            shape_hint="one_hot(token_ids, V) is (B, T, V); (B, T, V) @ table (V, d) gives (B, T, d)",
        )  # fmt: skip
    return f"correct on {len(cases)} cases (several B, T, V, d; equal to the lookup table[token_ids])"


@_checker("01.3", "cosine_similarity_matrix")
def check_cosine_similarity_matrix(ex, cosine_similarity_matrix_fn):
    """01.3: ``cosine_similarity_matrix(x (N, d)) -> (N, N)``, entry (i, j) the cosine of rows i and j."""
    sizes = [(5, 8, torch.float64), (4, 3, torch.float32), (6, 16, torch.float64), (3, 7, torch.float32)]
    for N, d, dtype in sizes:
        x = ex.randn(N, d, dtype=dtype) + 0.5  # (N, d), a shared offset so the norms differ from the dot products
        x[0] *= 3.0  # one long vector: cosine must not depend on length
        case = f"x {_shape(x)} {_dtype_name(dtype)}"
        got = _call(ex, cosine_similarity_matrix_fn, x, case=case, default_dtype=dtype)
        expected = F.cosine_similarity(x[:, None, :], x[None, :, :], dim=-1)  # (N, N)
        norms = x.norm(dim=-1, keepdim=True)  # (N, 1)
        unit = x / norms  # (N, d)
        variants = [
            ("plain dot products: divide by the lengths of both vectors (normalise each row first)", x @ x.T),
            ("normalised over the wrong dimension: each row is a vector, so use x.norm(dim=-1, keepdim=True)",
             (x / x.norm(dim=0, keepdim=True)) @ (x / x.norm(dim=0, keepdim=True)).T),
            ("only one side is normalised: divide by the length of both vectors", unit @ x.T),
            ("only one side is normalised: divide by the length of both vectors", x @ unit.T),
            ("divided by the squared lengths: the cosine divides by |a| |b|, not |a|^2 |b|^2",
             (x / norms**2) @ (x / norms**2).T),
            ("returned the cosine distance 1 - cos: return the similarity itself", 1.0 - unit @ unit.T),
        ]  # fmt: skip
        _compare(
            ex, got, expected, case=case, variants=variants,
            shape_hint="one similarity per pair of rows: (N, N), which is x @ x.T, not x.T @ x (d, d)",
        )  # fmt: skip
    return f"correct on {len(sizes)} cases (rows of different lengths; float32 and float64)"


# ---------------------------------------------------------------------------------------------
# Lesson 02: positional encoding
# ---------------------------------------------------------------------------------------------


def _pe_variant(seq_len: int, d_model: int, base: float, *, swap=False, blocks=False, exponent="pair", start=0):
    """What a common wrong positional encoding gives (float64)."""
    positions = torch.arange(start, start + seq_len, dtype=torch.float64)[:, None]  # (seq_len, 1)
    if exponent == "per_dimension":
        dims = torch.arange(d_model, dtype=torch.float64)  # (d_model,)
        angles = positions / base ** (dims / d_model)  # (seq_len, d_model)
        encoding = torch.cos(angles) if swap else torch.sin(angles)  # (seq_len, d_model)
        encoding[:, 1::2] = (torch.sin if swap else torch.cos)(angles[:, 1::2])
        return encoding
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d_model/2,)
    if exponent == "doubled":
        two_i = 2 * two_i
    elif exponent == "half":
        two_i = two_i / 2
    angles = positions / base ** (two_i / d_model)  # (seq_len, d_model/2)
    first, second = (torch.cos(angles), torch.sin(angles)) if swap else (torch.sin(angles), torch.cos(angles))
    if blocks:
        return torch.cat([first, second], dim=-1)  # (seq_len, d_model)
    encoding = torch.empty(seq_len, d_model, dtype=torch.float64)  # (seq_len, d_model)
    encoding[:, 0::2] = first
    encoding[:, 1::2] = second
    return encoding


def _pe_variants(seq_len: int, d_model: int, base: float):
    return [
        ("sin and cos swapped: even dimensions (0, 2, 4, ...) get sin, odd dimensions get cos",
         _pe_variant(seq_len, d_model, base, swap=True)),
        ("not interleaved: you put all the sines first, then all the cosines; sin goes to the even dimensions "
         "(pe[:, 0::2]) and cos to the odd ones (pe[:, 1::2])", _pe_variant(seq_len, d_model, base, blocks=True)),
        ("sin and cos swapped and not interleaved: sin goes to pe[:, 0::2], cos to pe[:, 1::2]",
         _pe_variant(seq_len, d_model, base, swap=True, blocks=True)),
        ("the exponent is doubled: for pair i it is 2i/d_model; if your variable already runs over the even "
         "dimensions 0, 2, 4, ... use it as is, not 2 * it", _pe_variant(seq_len, d_model, base, exponent="doubled")),
        ("the exponent is halved: for pair i (dimensions 2i and 2i+1) it is 2i/d_model, not i/d_model",
         _pe_variant(seq_len, d_model, base, exponent="half")),
        ("each dimension got its own frequency: dimensions 2i and 2i+1 must share the frequency 1/base**(2i/d_model)",
         _pe_variant(seq_len, d_model, base, exponent="per_dimension")),
        ("positions start at 1: the first position is 0 (torch.arange(seq_len))",
         _pe_variant(seq_len, d_model, base, start=1)),
        ("ignores base: use the base argument instead of the number 10000", _pe_variant(seq_len, d_model, 10000.0)),
        ("transposed: rows are positions and columns are dimensions, (seq_len, d_model)",
         _pe_variant(seq_len, d_model, base).T),
    ]  # fmt: skip


@_checker("02.1", "sinusoidal_positional_encoding")
def check_sinusoidal_positional_encoding(ex, sinusoidal_positional_encoding_fn):
    """02.1: ``sinusoidal_positional_encoding(seq_len, d_model, base=10000.0) -> (seq_len, d_model)``.

    ``PE[pos, 2i] = sin(pos / base**(2i/d_model))``, ``PE[pos, 2i+1] = cos(pos / base**(2i/d_model))``.
    Any float dtype is accepted (values are compared to 1e-5).
    """
    settings = [(10, 16, None), (12, 8, 50.0), (5, 6, None), (1, 4, None), (9, 12, 10.0)]
    for seq_len, d_model, base in settings:
        kwargs = {} if base is None else {"base": base}
        case = f"sinusoidal_positional_encoding({_call_args_text((seq_len, d_model), kwargs)})"
        got = _call(ex, sinusoidal_positional_encoding_fn, seq_len, d_model, case=case, **kwargs)
        with _default_dtype(torch.float64):
            expected = sinusoidal_positional_encoding(seq_len, d_model, **kwargs)  # (seq_len, d_model)
        _compare(
            ex, got, expected, case=case, variants=_pe_variants(seq_len, d_model, base or 10000.0), any_float=True,
            tol=1e-5, shape_hint="one row per position and one column per dimension: (seq_len, d_model)",
        )  # fmt: skip
    return f"correct on {len(settings)} cases (several seq_len and d_model, base 10000, 50 and 10)"


@_checker("02.2", "pe_wavelength")
def check_pe_wavelength(ex, pe_wavelength_fn):
    """02.2: ``pe_wavelength(i, d_model, base=10000.0) -> float``: ``2 * pi * base ** (2 * i / d_model)`` positions."""
    settings = [(3, 16, None), (7, 16, None), (2, 10, 100.0), (1, 4, None), (0, 16, None)]
    for i, d_model, base in settings:
        kwargs = {} if base is None else {"base": base}
        b = 10000.0 if base is None else base
        case = f"pe_wavelength({_call_args_text((i, d_model), kwargs)})"
        got = _as_number(ex, _call(ex, pe_wavelength_fn, i, d_model, case=case, **kwargs), "wavelength", case)
        expected = 2 * math.pi * b ** (2 * i / d_model)
        if math.isclose(got, expected, rel_tol=1e-6):
            continue
        variants = [
            ("forgot the 2*pi: sin(pos * f) repeats every 2*pi / f positions", b ** (2 * i / d_model)),
            ("used pi instead of 2*pi: a full turn of sin is 2*pi", math.pi * b ** (2 * i / d_model)),
            ("the exponent is i/d_model; for pair i it is 2i/d_model", 2 * math.pi * b ** (i / d_model)),
            ("returned the frequency (radians per position); the wavelength is 2*pi / frequency",
             b ** (-2 * i / d_model)),
            ("returned the frequency in turns per position; the wavelength is its inverse",
             1 / (2 * math.pi * b ** (2 * i / d_model))),
            ("ignores base: use the base argument instead of 10000", 2 * math.pi * 10000.0 ** (2 * i / d_model)),
        ]  # fmt: skip
        hint = _first_variant(got, expected, variants) or "the wavelength of pair i is 2*pi * base**(2i/d_model)"
        ex.fail(f"got {got:.6g}, expected {expected:.6g}", hint, case)
    return f"correct on {len(settings)} cases (pairs 0 to 7, base 10000 and 100)"


@_checker("02.3", "add_positional_encoding")
def check_add_positional_encoding(ex, add_positional_encoding_fn):
    """02.3: ``add_positional_encoding(x (B, T, d_model)) -> (B, T, d_model)``: ``x + PE`` for positions 0..T-1."""
    settings = [
        (2, 6, 8, torch.float32),
        (3, 4, 16, torch.float64),
        (1, 10, 6, torch.float32),
        (4, 1, 4, torch.float64),
    ]
    for B, T, d_model, dtype in settings:
        x = ex.randn(B, T, d_model, dtype=dtype)  # (B, T, d_model)
        case = f"x {_shape(x)} {_dtype_name(dtype)}"
        got = _call(ex, add_positional_encoding_fn, x, case=case, default_dtype=dtype)
        with _default_dtype(torch.float64):
            encoding = sinusoidal_positional_encoding(max(B, T), d_model).to(dtype)  # (max(B, T), d_model)
        expected = x + encoding[:T]  # (B, T, d_model)
        variants = [
            ("forgot x: return x + PE, not PE alone", encoding[:T].expand(B, T, d_model)),
            ("multiplied x by PE: the encoding is added", x * encoding[:T]),
            ("took the length from x.shape[0], which is the batch size: x is (B, T, d_model), so T = x.shape[1]",
             x + encoding[:B, None, :]),
            ("scaled x by sqrt(d_model): this exercise only adds the encoding", x * d_model**0.5 + encoding[:T]),
        ]  # fmt: skip
        _compare(
            ex, got, expected, case=case, variants=variants, tol=1e-5, shape_hint="same shape as x: (B, T, d_model)"
        )
    return f"correct on {len(settings)} cases (several B, T, d_model; float32 and float64)"


# ---------------------------------------------------------------------------------------------
# Lesson 03: self-attention
# ---------------------------------------------------------------------------------------------

_K_TRANSPOSE_HINT = (
    "print q.shape and k.shape; k.T reverses every dimension of a batched tensor, so use k.transpose(-2, -1) "
    "(and q @ ... rather than torch.mm, which only takes 2-D matrices)"
)


def _attention_inputs(ex: _Exercise, batch: tuple, T_q: int, T_k: int, d_k: int, d_v: int, dtype: torch.dtype):
    q = ex.randn(*batch, T_q, d_k, dtype=dtype)  # (..., T_q, d_k)
    k = ex.randn(*batch, T_k, d_k, dtype=dtype)  # (..., T_k, d_k)
    v = ex.randn(*batch, T_k, d_v, dtype=dtype)  # (..., T_k, d_v)
    return q, k, v


@_checker("03.1", "attention_scores")
def check_attention_scores(ex, attention_scores_fn):
    """03.1: ``attention_scores(q (..., T_q, d_k), k (..., T_k, d_k)) -> (..., T_q, T_k)``: ``q k^T / sqrt(d_k)``."""
    settings = [
        ((), 3, 5, 4, torch.float64),
        ((2,), 4, 4, 8, torch.float32),
        ((2, 3), 2, 6, 16, torch.float64),
        ((1,), 1, 3, 9, torch.float32),
    ]
    for batch, T_q, T_k, d_k, dtype in settings:
        q, k, _ = _attention_inputs(ex, batch, T_q, T_k, d_k, 1, dtype)
        case = f"q {_shape(q)}, k {_shape(k)} {_dtype_name(dtype)}"
        got = _call(ex, attention_scores_fn, q, k, case=case, default_dtype=dtype, error_hint=_K_TRANSPOSE_HINT)
        dots = torch.einsum("...qd,...kd->...qk", q, k)  # (..., T_q, T_k)
        expected = dots / math.sqrt(d_k)  # (..., T_q, T_k)
        variants = [
            ("no scaling: divide the dot products by sqrt(d_k), d_k = q.shape[-1]", dots),
            ("scaled by d_k instead of sqrt(d_k): divide by math.sqrt(d_k)", dots / d_k),
            ("multiplied by sqrt(d_k): divide by it instead", dots * math.sqrt(d_k)),
            ("you applied softmax: this exercise returns the scaled scores, before the softmax",
             torch.softmax(expected, dim=-1)),
            ("swapped q and k: the scores are q @ k.transpose(-2, -1), shape (..., T_q, T_k)",
             expected.transpose(-2, -1)),
        ]  # fmt: skip
        _compare(
            ex, got, expected, case=case, variants=variants,
            shape_hint="one score per (query, key) pair: (..., T_q, T_k), from q @ k.transpose(-2, -1)",
        )  # fmt: skip
    return f"correct on {len(settings)} cases (batch and head dims, T_q != T_k, float32 and float64)"


def _attention_variant(q, k, v, mask, *, scale="sqrt_dk", dim=-1, fill=-math.inf, invert=False, zero=True,
                       after=False, ignore_mask=False):  # fmt: skip
    """What a common wrong attention gives: (output, weights)."""
    d_k, d_v = q.shape[-1], v.shape[-1]
    divisor = {"sqrt_dk": math.sqrt(d_k), "none": 1.0, "dk": d_k, "sqrt_dv": math.sqrt(d_v), "dv": d_v}[scale]
    scores = (q @ k.transpose(-2, -1)) / divisor  # (..., T_q, T_k)
    if mask is None or ignore_mask:
        weights = torch.softmax(scores, dim=dim)  # (..., T_q, T_k)
        return weights @ v, weights
    allowed = ~mask if invert else mask
    if after:
        weights = torch.softmax(scores, dim=dim) * allowed  # (..., T_q, T_k), not renormalised
    else:
        weights = torch.softmax(scores.masked_fill(~allowed, fill), dim=dim)  # (..., T_q, T_k)
        if zero:
            weights = weights.masked_fill(~allowed, 0.0)
    return weights @ v, weights  # (..., T_q, d_v), (..., T_q, T_k)


_NAN_ROW_HINT = (
    "NaN on a fully masked row: when every key of a query is blocked, softmax of all -inf is 0/0; "
    "after the softmax set the blocked weights to 0 (weights.masked_fill(~mask, 0.0)) so such a row gives "
    "zero weights and a zero output"
)
_INVERTED_HINT = (
    "inverted mask: True means may attend, so block where the mask is False: scores.masked_fill(~mask, float('-inf'))"
)
_ZERO_FILL_HINT = (
    "mask applied as 0 instead of -inf: a blocked score of 0 still gets weight exp(0) after the softmax "
    "(multiplying the scores by the mask does the same); fill the blocked scores with float('-inf')"
)
_UNIFORM_HINT = (
    "a fully masked row must give zero weights, not uniform ones: with a large negative number like -1e9 the "
    "softmax spreads the weight evenly over blocked keys; set the blocked weights to 0 after the softmax"
)
_AFTER_HINT = (
    "the mask was applied after the softmax, so the rows are not renormalised (they no longer sum to 1): "
    "fill the blocked scores with -inf before the softmax"
)


def _attention_mistakes(q, k, v, mask):
    """(hint, (output, weights)) for the usual mistakes of scaled dot-product attention."""
    mistakes = [
        ("softmax over the wrong dimension: each query's weights must sum to 1 over the keys, "
         "so use softmax(scores, dim=-1)", dict(dim=-2)),
        ("softmax over the wrong dimension: each query's weights must sum to 1 over the keys, "
         "so use softmax(scores, dim=-1)", dict(dim=-2, zero=False)),
        ("no scaling: divide the scores by sqrt(d_k), d_k = q.shape[-1]", dict(scale="none")),
        ("scaled by d_k instead of sqrt(d_k): divide by math.sqrt(d_k)", dict(scale="dk")),
        ("scaled by the value size d_v instead of the key size d_k: use d_k = q.shape[-1]", dict(scale="sqrt_dv")),
        ("scaled by d_v, the value size: use sqrt(d_k), the key size q.shape[-1]", dict(scale="dv")),
    ]  # fmt: skip
    if mask is not None:
        mistakes += [
            (_NAN_ROW_HINT, dict(zero=False)),
            (_INVERTED_HINT, dict(invert=True)),
            (_INVERTED_HINT, dict(invert=True, zero=False)),
            (_ZERO_FILL_HINT, dict(fill=0.0, zero=False)),
            (_ZERO_FILL_HINT, dict(fill=0.0)),
            (_UNIFORM_HINT, dict(fill=-1e9, zero=False)),
            (_AFTER_HINT, dict(after=True)),
            ("the mask was ignored: fill the scores of blocked keys (mask False) with -inf", dict(ignore_mask=True)),
        ]
    return [(hint, _attention_variant(q, k, v, mask, **kwargs)) for hint, kwargs in mistakes]


def _unpack_attention_result(ex, result, expected_output, expected_weights, case):
    if isinstance(result, torch.Tensor):
        ex.fail(
            f"returned a single tensor of shape {_shape(result)}",
            "return a pair: (output, weights), output (..., T_q, d_v) and weights (..., T_q, T_k)",
            case,
        )
    if not isinstance(result, tuple | list) or len(result) != 2:
        ex.fail(f"returned {type(result).__name__}", "return a pair: return output, weights", case)
    output, weights = result
    if (
        isinstance(output, torch.Tensor)
        and isinstance(weights, torch.Tensor)
        and output.shape == expected_weights.shape
        and weights.shape == expected_output.shape
        and expected_output.shape != expected_weights.shape
    ):
        ex.fail("returned (weights, output)", "return them in the order (output, weights)", case)
    return output, weights


def _check_attention_weights(ex, weights, expected, mistakes, mask, case):
    """Weights first: they show most mistakes. Known mistakes, then properties, then a generic message."""
    variants = [(hint, wrong_weights) for hint, (_, wrong_weights) in mistakes]
    _require_tensor(ex, weights, "weights", case)
    if weights.shape == expected.shape and not _close(weights, expected, _tolerance(weights, expected)):
        tol = _tolerance(weights, expected)
        allowed = torch.ones_like(expected, dtype=torch.bool) if mask is None else mask.expand_as(expected)
        has_key = allowed.any(dim=-1, keepdim=True)  # (..., T_q, 1)
        nan_rows = torch.isnan(weights) & ~torch.isnan(expected)
        if nan_rows.any() and not (nan_rows & has_key).any():
            ex.fail("the weights contain NaN", _NAN_ROW_HINT, case)
        for hint, wrong in variants:
            if _close(weights, wrong, tol, equal_nan=True) and not _close(wrong, expected, tol, equal_nan=True):
                ex.fail("the attention weights are not right", hint, case)
        row_sums = weights.double().sum(dim=-1)  # (..., T_q)
        rows_ok = torch.allclose(row_sums[has_key[..., 0]], torch.ones((), dtype=torch.float64), atol=1e-4)
        if mask is None and not rows_ok:
            column_sums = weights.double().sum(dim=-2)  # (..., T_k)
            if torch.allclose(column_sums, torch.ones((), dtype=torch.float64), atol=1e-4):
                ex.fail("the weights sum to 1 over the queries", mistakes[0][0], case)
            ex.fail("the weights of a query do not sum to 1", "take the softmax over the keys (dim=-1)", case)
        if mask is not None and (weights.double().abs() > 1e-6)[~allowed].any():
            ex.fail(
                "some blocked keys (mask False) get a non-zero weight",
                "fill the scores of blocked keys with float('-inf') before the softmax, and zero the weights of "
                "fully masked rows after it",
                case,
            )
        if mask is not None and not rows_ok:
            ex.fail("the weights of a query do not sum to 1 over its allowed keys", _AFTER_HINT, case)
    _compare(
        ex, weights, expected, case=case, what="weights", variants=variants, nan_hint=_NAN_ROW_HINT,
        shape_hint="the weights are (..., T_q, T_k): one weight per (query, key) pair",
    )  # fmt: skip


def _attention_cases(ex: _Exercise):
    """Six cases: batch and head dims, d_v != d_k, causal, padding and random masks, fully masked rows."""
    cases = []
    q, k, v = _attention_inputs(ex, (), 4, 6, 8, 5, torch.float64)
    cases.append((q, k, v, None, "no batch dims, no mask"))
    q, k, v = _attention_inputs(ex, (2, 3), 5, 7, 4, 6, torch.float32)
    cases.append((q, k, v, None, "batch and head dims, no mask"))
    q, k, v = _attention_inputs(ex, (2,), 5, 5, 8, 3, torch.float64)
    cases.append((q, k, v, causal_mask(5), "causal mask (T, T)"))
    q, k, v = _attention_inputs(ex, (3, 2), 4, 6, 8, 5, torch.float32)
    ids = torch.tensor([[5, 6, 7, 8, 0, 0], [4, 4, 4, 4, 4, 4], [0, 0, 0, 0, 0, 0]])  # (B, T_k), row 2 all padding
    cases.append((q, k, v, padding_mask(ids, 0), "padding mask (B, 1, 1, T_k), one sequence all padding"))
    q, k, v = _attention_inputs(ex, (2, 2), 5, 6, 16, 2, torch.float64)
    mask = ex.randn(2, 2, 5, 6) > -0.3  # (B, H, T_q, T_k)
    mask[0, 1, 2] = False  # a fully masked row
    mask[1, :, :, 0] = True  # every other row keeps a key
    cases.append((q, k, v, mask, "random mask (B, H, T_q, T_k) with a fully masked row"))
    q, k, v = _attention_inputs(ex, (3, 2), 4, 4, 8, 6, torch.float32)
    ids = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 8], [9, 0, 0, 0]])  # (B, T)
    cases.append((q, k, v, combine_masks(causal_mask(4), padding_mask(ids, 0)), "causal and padding masks combined"))
    return cases


@_checker("03.2", "scaled_dot_product_attention")
def check_scaled_dot_product_attention(ex, attention_fn):
    """03.2: ``scaled_dot_product_attention(q, k, v, mask=None) -> (output, weights)``.

    q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v); mask bool (True = may attend) broadcastable to
    (..., T_q, T_k); output (..., T_q, d_v), weights (..., T_q, T_k); a fully masked row gives zeros.
    """
    cases = _attention_cases(ex)
    for q, k, v, mask, description in cases:
        case = f"{description}: q {_shape(q)}, k {_shape(k)}, v {_shape(v)}"
        if mask is not None:
            case += f", mask {_shape(mask)}"
        case += f" {_dtype_name(q.dtype)}"
        args = (q, k, v) if mask is None else (q, k, v, mask)
        result = _call(ex, attention_fn, *args, case=case, default_dtype=q.dtype, error_hint=_K_TRANSPOSE_HINT)
        expected_output, expected_weights = scaled_dot_product_attention(q, k, v, mask)
        output, weights = _unpack_attention_result(ex, result, expected_output, expected_weights, case)
        mistakes = _attention_mistakes(q, k, v, mask)
        _check_attention_weights(ex, weights, expected_weights, mistakes, mask, case)
        scores_times_v = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])) @ v  # (..., T_q, d_v)
        output_variants = [(hint, wrong_output) for hint, (wrong_output, _) in mistakes]
        output_variants.append(("the output uses the scores, not the weights: output = weights @ v", scores_times_v))
        _compare(
            ex, output, expected_output, case=case, variants=output_variants, nan_hint=_NAN_ROW_HINT,
            shape_hint="the output is (..., T_q, d_v): weights (..., T_q, T_k) @ v (..., T_k, d_v)",
            generic_hint="the weights are right but the output is not: output = weights @ v",
        )  # fmt: skip
    return (
        f"correct on {len(cases)} cases (batch and head dims, d_v != d_k, causal/padding/random masks, "
        "fully masked rows give zeros, float32 and float64)"
    )


def _saturation_numbers(d: int, dtype: torch.dtype = torch.float64, keys_first: bool = False, divisor=None):
    generator = torch.Generator().manual_seed(SATURATION_SEED)
    if keys_first:
        k = torch.randn(SATURATION_KEYS, d, generator=generator, dtype=dtype)  # (10, d)
        q = torch.randn(d, generator=generator, dtype=dtype)  # (d,)
    else:
        q = torch.randn(d, generator=generator, dtype=dtype)  # (d,)
        k = torch.randn(SATURATION_KEYS, d, generator=generator, dtype=dtype)  # (10, d)
    scores = k @ q  # (10,)
    scale = math.sqrt(d) if divisor is None else divisor
    return torch.softmax(scores, dim=-1).max().item(), torch.softmax(scores / scale, dim=-1).max().item()


@_checker("03.3", "softmax_saturation")
def check_softmax_saturation(ex, softmax_saturation_fn):
    """03.3 (understanding): ``softmax_saturation(d) -> (max weight unscaled, max weight scaled)``.

    The recipe the checker expects, for a key size ``d``::

        generator = torch.Generator().manual_seed(0)
        q = torch.randn(d, generator=generator, dtype=torch.float64)       # one query (d,)
        k = torch.randn(10, d, generator=generator, dtype=torch.float64)   # ten keys (10, d), drawn after q
        scores = k @ q                                                      # (10,)
        return the largest weight of softmax(scores) and of softmax(scores / sqrt(d)), as two floats

    (float32 draws are accepted too.) The unscaled softmax saturates: its largest weight tends to 1 as d grows.
    """
    dims = [4, 16, 64, 256, 1024]
    for d in dims:
        case = f"softmax_saturation({d})"
        result = _call(ex, softmax_saturation_fn, d, case=case, default_dtype=torch.float64)
        if not isinstance(result, tuple | list) or len(result) != 2:
            ex.fail(
                f"returned {type(result).__name__}",
                "return two numbers: (largest weight without scaling, largest weight with scaling)",
                case,
            )
        unscaled = _as_number(ex, result[0], "first number (max weight unscaled)", case)
        scaled = _as_number(ex, result[1], "second number (max weight scaled)", case)
        if not unscaled >= scaled:
            ex.fail(
                f"the unscaled maximum {unscaled:.4f} is smaller than the scaled one {scaled:.4f}",
                "return (unscaled, scaled) in that order: dividing by sqrt(d) flattens the softmax, so the "
                "unscaled weights are the more peaked ones",
                case,
            )
        accepted = [_saturation_numbers(d), _saturation_numbers(d, torch.float32)]
        if any(math.isclose(unscaled, u, rel_tol=1e-5) and math.isclose(scaled, s, rel_tol=1e-5) for u, s in accepted):
            continue
        expected_unscaled, expected_scaled = accepted[0]
        if math.isclose(unscaled, expected_unscaled, rel_tol=1e-5):
            hint = "the unscaled number is right; the scaled one divides the scores by sqrt(d) before the softmax"
            if math.isclose(scaled, _saturation_numbers(d, divisor=d)[1], rel_tol=1e-5):
                hint = "scaled by d instead of sqrt(d): divide the scores by math.sqrt(d)"
        elif math.isclose(unscaled, _saturation_numbers(d, keys_first=True)[0], rel_tol=1e-5):
            hint = "draw q first and then k from the same generator (the order changes the numbers)"
        else:
            hint = (
                "follow the recipe in help(check_softmax_saturation): generator seeded with 0, q = randn(d), "
                "then k = randn(10, d), scores = k @ q, and take .max() of each softmax"
            )
        ex.fail(
            f"got ({unscaled:.6g}, {scaled:.6g}), expected ({expected_unscaled:.6g}, {expected_scaled:.6g})", hint, case
        )
    return f"correct for d = {', '.join(str(d) for d in dims)} (the unscaled softmax saturates as d grows)"


# ---------------------------------------------------------------------------------------------
# Lesson 04: masking
# ---------------------------------------------------------------------------------------------


@_checker("04.1", "causal_mask")
def check_causal_mask(ex, causal_mask_fn):
    """04.1: ``causal_mask(T) -> bool (T, T)``, True on and below the diagonal (True = may attend)."""
    sizes = [5, 2, 8, 1]
    for T in sizes:
        case = f"causal_mask({T})"
        got = _call(ex, causal_mask_fn, T, case=case)
        expected = causal_mask(T)  # (T, T)
        variants = [
            ("inverted mask: True means may attend, so the lower triangle and the diagonal are True", ~expected),
            ("transposed: row i (a query) may attend to columns 0..i, so keep the lower triangle (tril)", expected.T),
            ("the diagonal is missing: a token may attend to itself", expected & ~torch.eye(T, dtype=torch.bool)),
            ("inverted mask that also blocks the diagonal: True = may attend, use the lower triangle with the diagonal",
             expected.T & ~torch.eye(T, dtype=torch.bool)),
        ]  # fmt: skip
        _compare(
            ex, got, expected, case=case, variants=variants, shape_hint="one row per query, one column per key: (T, T)"
        )
    return f"correct on {len(sizes)} cases (T = 1, 2, 5, 8; bool, True = may attend)"


@_checker("04.2", "padding_mask")
def check_padding_mask(ex, padding_mask_fn):
    """04.2: ``padding_mask(token_ids (B, T), pad_id) -> bool (B, 1, 1, T)``, True at real tokens."""
    settings = [
        (torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]]), 0, "right padding with pad_id 0"),
        (torch.tensor([[3, 3, 1, 2], [4, 0, 1, 3], [3, 3, 3, 3]]), 3, "pad_id 3, id 0 is a real token, a row of pads"),
        (torch.tensor([[0, 0, 11, 12, 13, 14]]), 0, "left padding"),
    ]
    for token_ids, pad_id, description in settings:
        case = f"{description}: token_ids {_shape(token_ids)}, pad_id={pad_id}"
        got = _call(ex, padding_mask_fn, token_ids, pad_id, case=case)
        expected = padding_mask(token_ids, pad_id)  # (B, 1, 1, T)
        real = token_ids != pad_id  # (B, T)
        variants = [
            ("inverted mask: True = may attend, so True at real tokens and False at padding", ~expected),
            ("ignores pad_id: compare the ids with the pad_id argument, not with 0", (token_ids != 0)[:, None, None, :]),
            ("the mask must block keys, so T goes last: (B, 1, 1, T); yours puts T where the queries are",
             real[:, None, :, None]),
        ]  # fmt: skip
        shape_hint = "(B, 1, 1, T), so it broadcasts over heads and queries: (token_ids != pad_id)[:, None, None, :]"
        _compare(ex, got, expected, case=case, variants=variants, shape_hint=shape_hint)
    return f"correct on {len(settings)} cases (right and left padding, pad_id 0 and 3, a row of only padding)"


@_checker("04.3", "decoder_self_mask")
def check_decoder_self_mask(ex, decoder_self_mask_fn):
    """04.3: ``decoder_self_mask(tgt_ids (B, T), pad_id) -> bool (B, 1, T, T)``: causal AND padding (keys)."""
    settings = [
        (torch.tensor([[1, 5, 0, 6, 0], [1, 7, 0, 0, 0]]), 0),
        (torch.tensor([[1, 4, 4, 2], [1, 2, 2, 2], [1, 5, 6, 7]]), 2),
        (torch.tensor([[1, 3, 3]]), 0),
    ]
    for tgt_ids, pad_id in settings:
        B, T = tgt_ids.shape
        case = f"tgt_ids {_shape(tgt_ids)}, pad_id={pad_id}"
        got = _call(ex, decoder_self_mask_fn, tgt_ids, pad_id, case=case)
        causal = causal_mask(T)  # (T, T)
        keys = padding_mask(tgt_ids, pad_id)  # (B, 1, 1, T)
        queries = keys.transpose(-2, -1)  # (B, 1, T, 1)
        expected = combine_masks(causal, keys)  # (B, 1, T, T)
        variants = [
            ("forgot the padding part: combine the causal mask with the padding mask (logical and)",
             causal.expand(B, 1, T, T)),
            ("forgot the causal part: a target token must not see later tokens; combine with causal_mask(T)",
             keys.expand(B, 1, T, T)),
            ("combined with OR: a key must be allowed by both masks, so use & (logical and)", causal | keys),
            ("the padding was applied to the query rows instead of the key columns: padding_mask is (B, 1, 1, T)",
             causal & queries),
            ("you also blocked the padded query rows: the course's mask blocks padded keys (columns) only, "
             "padded query rows are ignored by the loss", causal & keys & queries),
            ("inverted mask: True = may attend", ~expected),
        ]  # fmt: skip
        shape_hint = "(B, 1, T, T): causal_mask(T) (T, T) & padding_mask(tgt_ids, pad_id) (B, 1, 1, T) broadcasts to it"
        _compare(ex, got, expected, case=case, variants=variants, shape_hint=shape_hint)
    return f"correct on {len(settings)} cases (causal AND padding of the keys; pad_id 0 and 2)"


# ---------------------------------------------------------------------------------------------
# Lesson 05: multi-head attention
# ---------------------------------------------------------------------------------------------


@_checker("05.1", "split_heads")
def check_split_heads(ex, split_heads_fn):
    """05.1: ``split_heads(x (B, T, d_model), n_heads) -> (B, n_heads, T, d_head)``, head h = features h*d_head..."""
    settings = [
        (2, 5, 12, 3, torch.float64),
        (1, 4, 8, 2, torch.float32),
        (3, 1, 16, 4, torch.float64),
        (2, 3, 6, 1, torch.float32),
    ]
    for B, T, d_model, n_heads, dtype in settings:
        x = ex.randn(B, T, d_model, dtype=dtype)  # (B, T, d_model)
        d_head = d_model // n_heads
        case = f"x {_shape(x)}, n_heads={n_heads} {_dtype_name(dtype)}"
        got = _call(ex, split_heads_fn, x, n_heads, case=case, default_dtype=dtype)
        expected = split_heads(x, n_heads)  # (B, n_heads, T, d_head)
        variants = [
            ("reshaped to (B, n_heads, T, d_head) without the transpose: view as (B, T, n_heads, d_head) first, "
             "then .transpose(1, 2)", x.reshape(B, n_heads, T, d_head)),
            ("the features were split as (d_head, n_heads): head h must take the contiguous slice "
             "h*d_head:(h+1)*d_head, so view as (B, T, n_heads, d_head)", x.view(B, T, d_head, n_heads).permute(0, 3, 1, 2)),
            ("forgot the transpose: (B, T, n_heads, d_head) must become (B, n_heads, T, d_head) with .transpose(1, 2)",
             x.view(B, T, n_heads, d_head)),
        ]  # fmt: skip
        shape_hint = f"(B, n_heads, T, d_head) with d_head = d_model // n_heads = {d_head}"
        _compare(ex, got, expected, case=case, variants=variants, shape_hint=shape_hint)
    return f"correct on {len(settings)} cases (several B, T, d_model, n_heads; float32 and float64)"


@_checker("05.2", "merge_heads")
def check_merge_heads(ex, merge_heads_fn):
    """05.2: ``merge_heads(x (B, n_heads, T, d_head)) -> (B, T, d_model)``, the heads concatenated per token."""
    settings = [
        (2, 3, 5, 4, torch.float64),
        (1, 2, 4, 4, torch.float32),
        (3, 4, 1, 2, torch.float64),
        (2, 2, 6, 3, torch.float32),
    ]
    for B, n_heads, T, d_head, dtype in settings:
        x = ex.randn(B, n_heads, T, d_head, dtype=dtype)  # (B, n_heads, T, d_head)
        case = f"x {_shape(x)} {_dtype_name(dtype)}"
        got = _call(
            ex, merge_heads_fn, x, case=case, default_dtype=dtype,
            error_hint="after a transpose the tensor is not contiguous: use .reshape, or .contiguous().view",
        )  # fmt: skip
        expected = merge_heads(x)  # (B, T, d_model)
        variants = [
            ("merged without the transpose: move the heads back next to d_head with .transpose(1, 2), then reshape",
             x.reshape(B, T, n_heads * d_head)),
            ("the heads are interleaved: the features of head h must stay together (transpose(1, 2), not a permute "
             "that puts heads last)", x.permute(0, 2, 3, 1).reshape(B, T, n_heads * d_head)),
        ]  # fmt: skip
        shape_hint = "(B, T, d_model) with d_model = n_heads * d_head: transpose(1, 2) then reshape(B, T, -1)"
        _compare(ex, got, expected, case=case, variants=variants, shape_hint=shape_hint)
        round_trip = split_heads(got, n_heads)  # (B, n_heads, T, d_head)
        if not torch.equal(round_trip, x):
            ex.fail("split_heads(merge_heads(x)) does not give x back", "merge_heads must undo split_heads", case)
    return f"correct on {len(settings)} cases (undoes split_heads; several B, n_heads, T, d_head)"


def _mha_variant(mha, query, key, value, mask, *, projection=True, transpose=True, scale_by_d_model=False,
                 keys_from_query=False, swap_key_value=False, ignore_mask=False):  # fmt: skip
    """What a common wrong multi-head attention gives, from the reference's own layers."""
    n_heads, d_model = mha.n_heads, mha.d_model
    d_head = d_model // n_heads
    if keys_from_query:
        key = value = query
    if swap_key_value:
        key, value = value, key

    def split(x):
        B, T, _ = x.shape
        return split_heads(x, n_heads) if transpose else x.reshape(B, n_heads, T, d_head)  # (B, n_heads, T, d_head)

    q = split(mha.w_q(query))  # (B, n_heads, T_q, d_head)
    k = split(mha.w_k(key))  # (B, n_heads, T_k, d_head)
    v = split(mha.w_v(value))  # (B, n_heads, T_k, d_head)
    if scale_by_d_model:
        q = q * math.sqrt(d_head / d_model)  # the attention then divides by sqrt(d_model) in effect
    heads, _ = scaled_dot_product_attention(q, k, v, None if ignore_mask else mask)  # (B, n_heads, T_q, d_head)
    B, _, T_q, _ = heads.shape
    merged = merge_heads(heads) if transpose else heads.reshape(B, T_q, d_model)  # (B, T_q, d_model)
    return mha.w_o(merged) if projection else merged  # (B, T_q, d_model)


_MHA_MISTAKES = [
    ("forgot the output projection: apply self.w_o to the merged heads", dict(projection=False)),
    ("split or merged the heads without the transpose: view as (B, T, n_heads, d_head), then transpose(1, 2)",
     dict(transpose=False)),
    ("scaled by sqrt(d_model) instead of sqrt(d_head): each head works in d_head = d_model // n_heads dimensions",
     dict(scale_by_d_model=True)),
    ("keys and values were computed from the query: use w_k(key) and w_v(value) (they differ in cross-attention)",
     dict(keys_from_query=True)),
    ("swapped key and value: keys come from w_k(key), values from w_v(value)", dict(swap_key_value=True)),
    ("the mask was ignored: pass it to the attention of every head", dict(ignore_mask=True)),
]  # fmt: skip


@_checker("05.3", "MultiHeadAttention", kind="class")
def check_multi_head_attention(ex, mha_class):
    """05.3: ``class MultiHeadAttention(nn.Module)``, built as ``MultiHeadAttention(d_model, n_heads)`` (and with
    ``bias=False``); linear layers ``w_q``, ``w_k``, ``w_v``, ``w_o``; ``forward(query, key, value, mask=None)``
    returns (B, T_q, d_model) and keeps the weights on ``.attention_weights`` (B, n_heads, T_q, T_k).
    """
    settings = [
        (8, 2, {}, (2, 5, 5), "self", causal_mask(5), torch.float64),
        (8, 4, {}, (2, 1, 7), "cross", None, torch.float32),
        (16, 4, {"bias": False}, (2, 3, 3), "self", None, torch.float64),
        (12, 3, {}, (3, 4, 6), "cross", padding_mask(torch.tensor([[5, 6, 0, 0, 0, 0], [1] * 6, [0] * 6]), 0),
         torch.float32),
    ]  # fmt: skip
    contract = "w_q, w_k, w_v, w_o (four nn.Linear(d_model, d_model))"
    hints = {"w_o": "did you forget the output projection w_o?"}
    for d_model, n_heads, kwargs, (B, T_q, T_k), kind, mask, dtype in settings:
        case = (
            f"MultiHeadAttention({_call_args_text((d_model, n_heads), kwargs)}), {kind}-attention, "
            f"B={B}, T_q={T_q}, T_k={T_k}"
            + (f", mask {_shape(mask)}" if mask is not None else "")
            + f" {_dtype_name(dtype)}"
        )
        reference = _reference_module(ex, MultiHeadAttention, (d_model, n_heads), kwargs, dtype)
        learner = _prepare_learner_module(
            ex,
            mha_class,
            (d_model, n_heads),
            kwargs,
            reference,
            ["w_q", "w_k", "w_v", "w_o"],
            contract,
            case,
            dtype,
            hints,
        )
        query = ex.randn(B, T_q, d_model, dtype=dtype)  # (B, T_q, d_model)
        key = query if kind == "self" else ex.randn(B, T_k, d_model, dtype=dtype)  # (B, T_k, d_model)
        value = query if kind == "self" else ex.randn(B, T_k, d_model, dtype=dtype)  # (B, T_k, d_model)
        args = (query, key, value) if mask is None else (query, key, value, mask)
        got = _call(ex, learner, *args, case=case, default_dtype=dtype)
        expected = reference(*args)  # (B, T_q, d_model)
        if isinstance(got, tuple):
            ex.fail(
                "forward returned a tuple",
                "forward returns only the output (B, T_q, d_model); keep the weights on self.attention_weights",
                case,
            )
        variants = [
            (hint, _attempt(_mha_variant, reference, query, key, value, mask, **flags)) for hint, flags in _MHA_MISTAKES
        ]
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="the output is (B, T_q, d_model)")
        weights = getattr(learner, "attention_weights", None)
        if weights is None:
            ex.fail(
                ".attention_weights not stored",
                "in forward, keep the weights of the last call: self.attention_weights = weights "
                "(B, n_heads, T_q, T_k); set it to None in __init__",
                case,
            )
        _compare(
            ex, weights, reference.attention_weights, case=case, what=".attention_weights",
            shape_hint="keep one map per head, before merging: (B, n_heads, T_q, T_k)",
        )  # fmt: skip
    return (
        f"correct on {len(settings)} cases (self- and cross-attention, causal and padding masks, bias=False, "
        "d_model 8 to 16 with 2 to 4 heads, .attention_weights kept)"
    )


@_checker("05.4", "mha_parameter_count")
def check_mha_parameter_count(ex, mha_parameter_count_fn):
    """05.4 (understanding): ``mha_parameter_count(d_model, bias=True) -> int``, the parameters of one
    ``MultiHeadAttention(d_model, n_heads, bias=bias)`` (the count does not depend on n_heads)."""
    settings = [(8, True), (8, False), (64, True), (512, True), (512, False), (768, True)]
    for d_model, bias in settings:
        kwargs = {} if bias else {"bias": False}
        case = f"mha_parameter_count({_call_args_text((d_model,), kwargs)})"
        got = _as_number(ex, _call(ex, mha_parameter_count_fn, d_model, case=case, **kwargs), "count", case)
        with _default_dtype(torch.float32):
            reference = MultiHeadAttention(d_model, 1, bias=bias)
        expected = sum(p.numel() for p in reference.parameters())
        if got == expected:
            continue
        d = d_model
        biases = 4 * d if bias else 0
        variants = [
            ("forgot the biases: each of the four layers also has d_model biases", 4 * d * d),
            ("counted biases although bias=False: then the layers have weights only", 4 * d * d + 4 * d),
            ("forgot the output projection w_o: there are four d_model x d_model layers (w_q, w_k, w_v, w_o)",
             3 * d * d + (3 * d if bias else 0)),
            ("one bias per layer: each layer has a bias vector of d_model numbers", 4 * d * d + (4 if bias else 0)),
            ("counted the weights per head: w_q, w_k, w_v are d_model x d_model in total, whatever the heads",
             4 * d * (d // 8) + biases),
        ]  # fmt: skip
        hint = _first_variant(got, expected, variants) or "count the weights and biases of w_q, w_k, w_v and w_o"
        ex.fail(f"got {got:g}, expected {expected}", hint, case)
    return f"correct on {len(settings)} cases (d_model 8, 64, 512, 768; with and without biases)"


# ---------------------------------------------------------------------------------------------
# Lesson 06: MLP, residual connections and layer norm
# ---------------------------------------------------------------------------------------------


@_checker("06.1", "layer_norm")
def check_layer_norm(ex, layer_norm_fn):
    """06.1: ``layer_norm(x (..., d), weight (d,), bias (d,), eps=1e-5) -> (..., d)``, over the last dimension,
    biased variance, eps inside the square root (like ``F.layer_norm``)."""
    settings = [
        ((5, 8), None, 1.0, torch.float64),
        ((2, 3, 6), None, 1.0, torch.float32),
        ((2, 2, 3, 16), 1e-2, 0.1, torch.float64),
        ((4, 5), 0.5, 1.0, torch.float32),
    ]
    for shape, eps, spread, dtype in settings:
        d = shape[-1]
        x = ex.randn(*shape, dtype=dtype, scale=spread) + 0.3  # (..., d)
        weight = 1.0 + ex.randn(d, dtype=dtype, scale=0.5)  # (d,)
        bias = ex.randn(d, dtype=dtype, scale=0.5)  # (d,)
        kwargs = {} if eps is None else {"eps": eps}
        e = 1e-5 if eps is None else eps
        case = f"x {_shape(x)}" + (f", eps={eps}" if eps is not None else "") + f" {_dtype_name(dtype)}"
        got = _call(ex, layer_norm_fn, x, weight, bias, case=case, default_dtype=dtype, **kwargs)
        expected = layer_norm(x, weight, bias, **kwargs)  # (..., d)
        mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
        biased = x.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1)
        unbiased = x.var(dim=-1, keepdim=True, unbiased=True)  # (..., 1)
        variants = [
            ("unbiased variance (divides by d - 1): layer norm uses the biased variance, x.var(dim=-1, "
             "unbiased=False) or ((x - mean)**2).mean(dim=-1)", (x - mean) / torch.sqrt(unbiased + e) * weight + bias),
            ("eps outside the square root: divide by sqrt(variance + eps), not by std + eps",
             (x - mean) / (torch.sqrt(biased) + e) * weight + bias),
            ("unbiased variance and eps outside the square root: use sqrt(biased variance + eps)",
             (x - mean) / (torch.sqrt(unbiased) + e) * weight + bias),
            ("normalised over the wrong dimension: each token is normalised over its features, the last dimension",
             F.layer_norm(x.transpose(0, -1), x.transpose(0, -1).shape[-1:], eps=e).transpose(0, -1) * weight + bias),
            ("forgot to scale by weight and shift by bias after normalising", F.layer_norm(x, (d,), eps=e)),
            ("weight and bias swapped: x_hat * weight + bias", F.layer_norm(x, (d,), eps=e) * bias + weight),
            ("ignores eps: use the eps argument", F.layer_norm(x, (d,), weight, bias, eps=1e-5)),
            ("eps left out: divide by sqrt(variance + eps)", (x - mean) / torch.sqrt(biased) * weight + bias),
        ]  # fmt: skip
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="same shape as x")
    return f"correct on {len(settings)} cases (2-D to 4-D inputs, default and given eps, float32 and float64)"


@_checker("06.2", "FeedForward", kind="class")
def check_feed_forward(ex, feed_forward_class):
    """06.2: ``class FeedForward(nn.Module)`` built as ``FeedForward(d_model, d_ff)`` (ReLU by default), layers
    ``linear1`` (d_model -> d_ff) and ``linear2`` (d_ff -> d_model); ``forward(x (B, T, d_model))``."""
    settings = [(8, 32, (2, 5), torch.float64), (6, 10, (3, 4), torch.float32), (16, 64, (1, 3), torch.float64)]
    for d_model, d_ff, (B, T), dtype in settings:
        case = f"FeedForward({d_model}, {d_ff}), x ({B}, {T}, {d_model}) {_dtype_name(dtype)}"
        reference = _reference_module(ex, FeedForward, (d_model, d_ff), {}, dtype)
        learner = _prepare_learner_module(
            ex, feed_forward_class, (d_model, d_ff), {}, reference, ["linear1", "linear2"],
            "linear1 (d_model -> d_ff) and linear2 (d_ff -> d_model)", case, dtype,
        )  # fmt: skip
        x = ex.randn(B, T, d_model, dtype=dtype)  # (B, T, d_model)
        got = _call(ex, learner, x, case=case, default_dtype=dtype)
        expected = reference(x)  # (B, T, d_model)
        first, second = reference.linear1, reference.linear2
        variants = [
            ("no activation between the layers: apply ReLU to linear1's output", second(first(x))),
            ("applied ReLU to the output too: the activation goes only between linear1 and linear2",
             torch.relu(expected)),
            ("used GELU: the default activation is ReLU", second(F.gelu(first(x)))),
            ("added the residual inside FeedForward: the residual belongs to the layer around it", x + expected),
            ("the activation is applied before linear1: it goes between linear1 and linear2",
             second(first(torch.relu(x)))),
        ]  # fmt: skip
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="the output is (B, T, d_model)")
    return f"correct on {len(settings)} cases (several d_model and d_ff; float32 and float64)"


_POST_PRE_HINT = (
    "post-norm and pre-norm confused: norm_first=False is the paper's post-norm, norm(x + sublayer(x)); "
    "norm_first=True is pre-norm, x + sublayer(norm(x))"
)


@_checker("06.3", "residual_sublayer")
def check_residual_sublayer(ex, residual_sublayer_fn):
    """06.3: ``residual_sublayer(x, sublayer, norm, norm_first) -> (B, T, d_model)``: post-norm
    ``norm(x + sublayer(x))`` when ``norm_first`` is False, pre-norm ``x + sublayer(norm(x))`` when True."""
    settings = [(2, 4, 8, False, torch.float64), (2, 4, 8, True, torch.float64), (1, 3, 6, False, torch.float32),
                (1, 3, 6, True, torch.float32)]  # fmt: skip
    for B, T, d_model, norm_first, dtype in settings:
        case = f"x ({B}, {T}, {d_model}), sublayer FeedForward({d_model}, {2 * d_model}), norm_first={norm_first}"
        case += f" {_dtype_name(dtype)}"
        sublayer = _reference_module(ex, FeedForward, (d_model, 2 * d_model), {}, dtype)
        norm = _reference_module(ex, LayerNorm, (d_model,), {}, dtype)
        x = ex.randn(B, T, d_model, dtype=dtype, scale=2.0) + 0.5  # (B, T, d_model)
        got = _call(ex, residual_sublayer_fn, x, sublayer, norm, norm_first, case=case, default_dtype=dtype)
        expected = _residual(x, sublayer, norm, norm_first=norm_first)  # (B, T, d_model)
        variants = [
            (_POST_PRE_HINT, _residual(x, sublayer, norm, norm_first=not norm_first)),
            ("forgot the residual: add x to the sublayer's output", _residual(x, sublayer, norm, norm_first=norm_first,
                                                                             residual=False)),
            ("the residual must add the un-normalised x: x + sublayer(norm(x))",
             _residual(x, sublayer, norm, norm_first=True, add_normalised=True)),
            ("normalised twice: pre-norm normalises only the sublayer's input, x + sublayer(norm(x))",
             norm(_residual(x, sublayer, norm, norm_first=True))),
            ("forgot the layer norm: post-norm is norm(x + sublayer(x))", x + sublayer(x)),
        ]  # fmt: skip
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="same shape as x: (B, T, d_model)")
    return f"correct on {len(settings)} cases (post-norm and pre-norm, float32 and float64)"


# ---------------------------------------------------------------------------------------------
# Lesson 07: encoder
# ---------------------------------------------------------------------------------------------


def _encoder_variant(layer, x, mask, *, norm_first, residual=True, ignore_mask=False, swap_norms=False,
                     add_normalised=False):  # fmt: skip
    """What a common wrong encoder layer gives, from the reference's own sublayers."""
    used_mask = None if ignore_mask else mask
    first_norm, second_norm = (layer.norm2, layer.norm1) if swap_norms else (layer.norm1, layer.norm2)

    def attention(h):
        return layer.self_attn(h, h, h, used_mask)  # (B, T, d_model)

    options = dict(norm_first=norm_first, residual=residual, add_normalised=add_normalised)
    x = _residual(x, attention, first_norm, **options)  # (B, T, d_model)
    return _residual(x, layer.ff, second_norm, **options)  # (B, T, d_model)


def _layer_mistakes(norm_first: bool):
    return [
        (_POST_PRE_HINT, dict(norm_first=not norm_first)),
        ("forgot the residual connections: each sublayer's output is added to its input", dict(residual=False)),
        ("the mask was ignored: pass it to the self-attention", dict(ignore_mask=True)),
        ("norm1 and norm2 swapped: norm1 goes with the self-attention, norm2 with the feed-forward",
         dict(swap_norms=True)),
        ("the residual must add the un-normalised x: x + sublayer(norm(x))", dict(add_normalised=True)),
    ]  # fmt: skip


@_checker("07.1", "EncoderLayer", kind="class")
def check_encoder_layer(ex, encoder_layer_class):
    """07.1: ``class EncoderLayer(nn.Module)``, built as ``EncoderLayer(d_model, n_heads, d_ff)`` (post-norm) and
    with ``norm_first=True``; submodules ``self_attn``, ``ff``, ``norm1``, ``norm2``; ``forward(x, mask=None)``."""
    ids = torch.tensor([[4, 5, 6, 0, 0], [7, 8, 9, 3, 0]])  # (B, T) with padding
    settings = [
        (8, 2, 16, {}, padding_mask(ids, 0), (2, 5), torch.float64),
        (8, 2, 16, {"norm_first": True}, causal_mask(4), (3, 4), torch.float32),
        (12, 3, 24, {}, None, (2, 3), torch.float32),
        (12, 3, 24, {"norm_first": True}, None, (1, 6), torch.float64),
    ]
    names = ["self_attn", "ff", "norm1", "norm2"]
    contract = "self_attn (MultiHeadAttention), ff (FeedForward), norm1 and norm2 (layer norms)"
    for d_model, n_heads, d_ff, kwargs, mask, (B, T), dtype in settings:
        norm_first = kwargs.get("norm_first", False)
        case = (
            f"EncoderLayer({_call_args_text((d_model, n_heads, d_ff), kwargs)}), x ({B}, {T}, {d_model})"
            + (f", mask {_shape(mask)}" if mask is not None else "")
            + f" {_dtype_name(dtype)}"
        )
        reference = _reference_module(ex, EncoderLayer, (d_model, n_heads, d_ff), kwargs, dtype)
        learner = _prepare_learner_module(
            ex, encoder_layer_class, (d_model, n_heads, d_ff), kwargs, reference, names, contract, case, dtype
        )
        x = ex.randn(B, T, d_model, dtype=dtype)  # (B, T, d_model)
        args = (x,) if mask is None else (x, mask)
        got = _call(ex, learner, *args, case=case, default_dtype=dtype)
        expected = reference(*args)  # (B, T, d_model)
        variants = [
            (hint, _encoder_variant(reference, x, mask, **{"norm_first": norm_first, **flags}))
            for hint, flags in _layer_mistakes(norm_first)
        ]
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="the output is (B, T, d_model)")
    return f"correct on {len(settings)} cases (post-norm and pre-norm, padding and causal masks, float32 and float64)"


@_checker("07.2", "encoder_layer_parameter_count")
def check_encoder_layer_parameter_count(ex, encoder_layer_parameter_count_fn):
    """07.2 (understanding): ``encoder_layer_parameter_count(d_model, d_ff) -> int``, the parameters of one
    ``EncoderLayer(d_model, n_heads, d_ff)`` (self-attention with biases, feed-forward, two layer norms)."""
    settings = [(64, 256), (512, 2048), (384, 1536), (8, 32)]
    for d_model, d_ff in settings:
        case = f"encoder_layer_parameter_count({d_model}, {d_ff})"
        got = _as_number(ex, _call(ex, encoder_layer_parameter_count_fn, d_model, d_ff, case=case), "count", case)
        with _default_dtype(torch.float32):
            reference = EncoderLayer(d_model, 1, d_ff)
        expected = sum(p.numel() for p in reference.parameters())
        if got == expected:
            continue
        d = d_model
        variants = [
            ("forgot the layer norms' parameters: each of the two has a weight and a bias of d_model numbers",
             expected - 4 * d),
            ("counted only one layer norm: there are two (norm1 and norm2), each 2 * d_model", expected - 2 * d),
            ("forgot the layer norms' biases: each norm has a weight and a bias", expected - 2 * d),
            ("forgot the biases of the linear layers (4 * d_model in attention, d_ff + d_model in the MLP)",
             expected - 4 * d - d_ff - d),
            ("forgot the output projection w_o of the attention (d_model * d_model + d_model)", expected - d * d - d),
            ("counted only one of the feed-forward's two linear layers", expected - (d_ff * d + d)),
            ("forgot the feed-forward's biases (d_ff + d_model)", expected - d_ff - d),
        ]  # fmt: skip
        hint = _first_variant(got, expected, variants) or (
            "add up the self-attention (4 linear layers with biases), the feed-forward (linear1 and linear2 with "
            "biases) and the two layer norms (weight and bias each)"
        )
        ex.fail(f"got {got:g}, expected {expected}", hint, case)
    return f"correct on {len(settings)} cases (d_model 8 to 512, d_ff = 4 * d_model)"


@_checker("07.3", "pad_batch")
def check_pad_batch(ex, pad_batch_fn):
    """07.3: ``pad_batch(sequences: list[list[int]], pad_id) -> int64 (B, T_max)``, right-padded with pad_id."""
    settings = [([[5, 6, 7], [8], [9, 10]], 0), ([[1, 0, 2, 4, 4], [0, 5]], 3), ([[7, 7, 7, 7]], 0),
                ([[2], [3], [4], [5, 6]], 1)]  # fmt: skip
    for sequences, pad_id in settings:
        case = f"pad_batch({sequences!r}, pad_id={pad_id})"
        got = _call(ex, pad_batch_fn, sequences, pad_id, case=case)
        T_max = max(len(s) for s in sequences)
        expected = torch.full((len(sequences), T_max), pad_id, dtype=torch.long)  # (B, T_max)
        left = expected.clone()  # (B, T_max)
        zero_padded = torch.zeros_like(expected)  # (B, T_max)
        for row, sequence in enumerate(sequences):
            expected[row, : len(sequence)] = torch.tensor(sequence)
            left[row, T_max - len(sequence) :] = torch.tensor(sequence)
            zero_padded[row, : len(sequence)] = torch.tensor(sequence)
        variants = [
            ("padded on the left: pad on the right, after each sequence's tokens", left),
            ("ignores pad_id: fill with the pad_id argument, not 0", zero_padded),
            ("transposed (T_max, B): one row per sequence; with pad_sequence pass batch_first=True", expected.T),
        ]
        _compare(
            ex, got, expected, case=case, variants=variants,
            shape_hint=f"(B, T_max) = ({len(sequences)}, {T_max}): one row per sequence, as long as the longest",
        )  # fmt: skip
    return f"correct on {len(settings)} cases (right padding with pad_id 0, 1 and 3; int64)"


# ---------------------------------------------------------------------------------------------
# Lesson 08: decoder
# ---------------------------------------------------------------------------------------------


def _decoder_variant(layer, x, memory, self_mask, memory_mask, *, norm_first, residual=True, ignore_self_mask=False,
                     ignore_memory_mask=False, cross_to_self=False, cross_first=False, add_normalised=False):  # fmt: skip
    """What a common wrong decoder layer gives, from the reference's own sublayers."""
    used_self_mask = None if ignore_self_mask else self_mask
    used_memory_mask = None if ignore_memory_mask else memory_mask

    def self_attention(h):
        return layer.self_attn(h, h, h, used_self_mask)  # (B, T, d_model)

    def cross_attention(h):
        if cross_to_self:
            return layer.cross_attn(h, h, h, used_self_mask)  # (B, T, d_model)
        return layer.cross_attn(h, memory, memory, used_memory_mask)  # (B, T, d_model)

    options = dict(norm_first=norm_first, residual=residual, add_normalised=add_normalised)
    first, second = (cross_attention, self_attention) if cross_first else (self_attention, cross_attention)
    x = _residual(x, first, layer.norm1, **options)  # (B, T, d_model)
    x = _residual(x, second, layer.norm2, **options)  # (B, T, d_model)
    return _residual(x, layer.ff, layer.norm3, **options)  # (B, T, d_model)


@_checker("08.1", "DecoderLayer", kind="class")
def check_decoder_layer(ex, decoder_layer_class):
    """08.1: ``class DecoderLayer(nn.Module)``, built as ``DecoderLayer(d_model, n_heads, d_ff)`` (post-norm) and
    with ``norm_first=True``; submodules ``self_attn``, ``cross_attn``, ``ff``, ``norm1``, ``norm2``, ``norm3``;
    ``forward(x, memory, self_mask=None, memory_mask=None)``."""
    src_ids = torch.tensor([[4, 5, 6, 0, 0, 0], [7, 8, 9, 3, 2, 0]])  # (B, S)
    settings = [
        (8, 2, 16, {}, (2, 4, 6), causal_mask(4), padding_mask(src_ids, 0), torch.float64),
        (8, 2, 16, {"norm_first": True}, (2, 5, 6), causal_mask(5), padding_mask(src_ids, 0), torch.float32),
        (12, 3, 24, {}, (3, 3, 2), None, None, torch.float32),
        (12, 3, 24, {"norm_first": True}, (1, 2, 5), causal_mask(2), None, torch.float64),
    ]
    names = ["self_attn", "cross_attn", "ff", "norm1", "norm2", "norm3"]
    contract = "self_attn and cross_attn (MultiHeadAttention), ff (FeedForward), norm1, norm2, norm3"
    mistakes = [
        ("cross-attention must attend to the encoder output: cross_attn(x, memory, memory, memory_mask)",
         dict(cross_to_self=True)),
        ("cross-attention must attend to the encoder output: cross_attn(x, memory, memory, memory_mask)",
         dict(cross_to_self=True, ignore_self_mask=True)),
        ("the self_mask was ignored: the decoder's self-attention needs it (causal)", dict(ignore_self_mask=True)),
        ("the memory_mask was ignored: pass it to the cross-attention", dict(ignore_memory_mask=True)),
        ("the sublayers are in the wrong order: masked self-attention first, then cross-attention, then feed-forward",
         dict(cross_first=True)),
        ("forgot the residual connections: each sublayer's output is added to its input", dict(residual=False)),
        ("the residual must add the un-normalised x: x + sublayer(norm(x))", dict(add_normalised=True)),
    ]  # fmt: skip
    for d_model, n_heads, d_ff, kwargs, (B, T, S), self_mask, memory_mask, dtype in settings:
        norm_first = kwargs.get("norm_first", False)
        memory_mask = memory_mask[:B] if memory_mask is not None else None
        case = (
            f"DecoderLayer({_call_args_text((d_model, n_heads, d_ff), kwargs)}), x ({B}, {T}, {d_model}), "
            f"memory ({B}, {S}, {d_model})"
            + (f", self_mask {_shape(self_mask)}" if self_mask is not None else "")
            + (f", memory_mask {_shape(memory_mask)}" if memory_mask is not None else "")
            + f" {_dtype_name(dtype)}"
        )
        reference = _reference_module(ex, DecoderLayer, (d_model, n_heads, d_ff), kwargs, dtype)
        learner = _prepare_learner_module(
            ex, decoder_layer_class, (d_model, n_heads, d_ff), kwargs, reference, names, contract, case, dtype
        )
        x = ex.randn(B, T, d_model, dtype=dtype)  # (B, T, d_model)
        memory = ex.randn(B, S, d_model, dtype=dtype)  # (B, S, d_model)
        got = _call(ex, learner, x, memory, self_mask, memory_mask, case=case, default_dtype=dtype)
        expected = reference(x, memory, self_mask, memory_mask)  # (B, T, d_model)
        all_mistakes = [(_POST_PRE_HINT, dict(norm_first=not norm_first))] + mistakes
        variants = [
            (
                hint,
                _decoder_variant(reference, x, memory, self_mask, memory_mask, **{"norm_first": norm_first, **flags}),
            )
            for hint, flags in all_mistakes
        ]
        _compare(
            ex, got, expected, case=case, variants=variants,
            shape_hint="the output is (B, T, d_model): queries come from x (the decoder), keys and values from memory",
        )  # fmt: skip
    return (
        f"correct on {len(settings)} cases (post-norm and pre-norm, causal self_mask and padding memory_mask, "
        "T != S, float32 and float64)"
    )


@_checker("08.2", "cross_attention_weights_shape")
def check_cross_attention_weights_shape(ex, cross_attention_weights_shape_fn):
    """08.2 (understanding): ``cross_attention_weights_shape(B, T, S, n_heads) -> tuple``, the shape of the
    decoder's cross-attention weights for a target of T tokens and a source of S tokens."""
    settings = [(2, 5, 7, 4), (3, 1, 4, 2), (1, 6, 3, 8)]
    for B, T, S, n_heads in settings:
        case = f"cross_attention_weights_shape(B={B}, T={T}, S={S}, n_heads={n_heads})"
        got = _call(ex, cross_attention_weights_shape_fn, B, T, S, n_heads, case=case)
        if isinstance(got, torch.Size | list):
            got = tuple(got)
        if not isinstance(got, tuple) or not all(isinstance(n, int) and not isinstance(n, bool) for n in got):
            ex.fail(f"returned {got!r}", "return a tuple of ints, such as (B, n_heads, ..., ...)", case)
        expected = (B, n_heads, T, S)
        if got == expected:
            continue
        variants = [
            ("swapped T and S: the queries come from the decoder (T rows), the keys from the encoder (S columns)",
             (B, n_heads, S, T)),
            ("forgot the heads dimension: each head has its own weights", (B, T, S)),
            ("the heads come right after the batch: (B, n_heads, T, S)", (B, T, n_heads, S)),
            ("that is the decoder's self-attention shape (T, T); cross-attention's keys are the S source tokens",
             (B, n_heads, T, T)),
            ("that is the encoder's self-attention shape (S, S); cross-attention's queries are the T target tokens",
             (B, n_heads, S, S)),
        ]  # fmt: skip
        hint = next((h for h, wrong in variants if got == wrong), "one weight per head, query (T) and key (S)")
        ex.fail(f"got {got}, expected {expected}", hint, case)
    return f"correct on {len(settings)} cases (B, n_heads, T, S)"


@_checker("08.3", "shift_right")
def check_shift_right(ex, shift_right_fn):
    """08.3: ``shift_right(tgt_ids (B, T), bos_id) -> (B, T)``: bos_id, then the target without its last token."""
    settings = [(torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]]), 1), (torch.tensor([[3, 4, 5, 6, 7]]), 9),
                (torch.tensor([[4], [5], [6]]), 1)]  # fmt: skip
    for tgt_ids, bos_id in settings:
        B, T = tgt_ids.shape
        case = f"tgt_ids {tgt_ids.tolist()}, bos_id={bos_id}"
        got = _call(ex, shift_right_fn, tgt_ids, bos_id, case=case)
        bos = torch.full((B, 1), bos_id, dtype=torch.long)  # (B, 1)
        expected = torch.cat([bos, tgt_ids[:, :-1]], dim=1)  # (B, T)
        variants = [
            ("dropped the first token instead of the last: bos_id followed by tgt_ids[:, :-1]",
             torch.cat([bos, tgt_ids[:, 1:]], dim=1)),
            ("rolled the tokens: the first position must be bos_id, not the last target token",
             torch.roll(tgt_ids, 1, dims=1)),
            ("shifted left: the decoder input is shifted right, bos_id first", torch.cat([tgt_ids[:, 1:], bos], dim=1)),
            ("kept every target token: drop the last one so the length stays T", torch.cat([bos, tgt_ids], dim=1)),
        ]  # fmt: skip
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="(B, T), the same shape as tgt_ids")
    return f"correct on {len(settings)} cases (bos first, last token dropped; T = 1 included)"


# ---------------------------------------------------------------------------------------------
# Lesson 09: output layer and generation
# ---------------------------------------------------------------------------------------------


def _probs_variant(logits, temperature=1.0, top_k=None, top_p=None, *, temperature_mode="divide", k_shift=0,
                   p_mode="keep_crossing", renormalise=True):  # fmt: skip
    """What a common wrong next_token_probs gives."""
    if temperature_mode == "multiply":
        scaled = logits * temperature  # (..., V)
    elif temperature_mode == "ignore":
        scaled = logits  # (..., V)
    else:
        scaled = logits / temperature  # (..., V)
    keep = torch.ones_like(scaled, dtype=torch.bool)  # (..., V)
    V = scaled.shape[-1]
    if top_k is not None:
        k = min(max(top_k + k_shift, 1), V)
        kth = scaled.topk(k, dim=-1).values[..., -1:]  # (..., 1)
        keep &= scaled >= kth
    if top_p is not None:
        probs = torch.softmax(scaled.masked_fill(~keep, -math.inf), dim=-1)  # (..., V)
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # (..., V)
        cumulative = sorted_probs.cumsum(dim=-1)  # (..., V)
        if p_mode == "keep_crossing":
            keep_sorted = cumulative - sorted_probs < top_p
        else:
            keep_sorted = cumulative <= top_p
            if p_mode == "drop_crossing_keep_first":
                keep_sorted[..., 0] = True
        keep &= torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    if renormalise:
        return torch.softmax(scaled.masked_fill(~keep, -math.inf), dim=-1)  # (..., V)
    return torch.softmax(scaled, dim=-1) * keep  # (..., V), not renormalised


_TEMPERATURE_HINT = "temperature applied the wrong way: divide the logits by the temperature (logits / temperature)"
_RENORMALISE_HINT = (
    "probabilities not renormalised: after dropping tokens the kept ones must sum to 1; fill dropped logits with "
    "-inf before the softmax (or divide by the new row sum)"
)


@_checker("09.1", "next_token_probs")
def check_next_token_probs(ex, next_token_probs_fn):
    """09.1: ``next_token_probs(logits (..., V), temperature=1.0, top_k=None, top_p=None) -> (..., V)``:
    divide by temperature, keep the top_k largest logits, keep the smallest set of most likely tokens whose mass
    reaches top_p (the token that crosses p is kept), then softmax over what is left."""
    settings = [
        ((2, 10), {}, torch.float64),
        ((3, 8), {"temperature": 0.5}, torch.float32),
        ((2, 3, 12), {"temperature": 2.0}, torch.float64),
        ((4, 10), {"top_k": 3}, torch.float64),
        ((4, 10), {"top_p": 0.6}, torch.float32),
        ((3, 12), {"temperature": 0.8, "top_k": 6, "top_p": 0.7}, torch.float64),
    ]
    for shape, kwargs, dtype in settings:
        logits = ex.randn(*shape, dtype=dtype, scale=2.0)  # (..., V)
        case = (
            f"logits {_shape(logits)}"
            + (f", {_call_args_text((), kwargs)}" if kwargs else "")
            + f" {_dtype_name(dtype)}"
        )
        got = _call(ex, next_token_probs_fn, logits, case=case, default_dtype=dtype, **kwargs)
        expected = next_token_probs(logits, **kwargs)  # (..., V)
        t, k, p = kwargs.get("temperature", 1.0), kwargs.get("top_k"), kwargs.get("top_p")
        variants = [
            ("softmax over the wrong dimension: the probabilities of one position sum to 1 over the vocabulary "
             "(dim=-1)", torch.softmax(logits / t, dim=0)),
            ("returned log-probabilities: return softmax(...), the probabilities themselves",
             torch.log_softmax(logits / t, dim=-1)),
            (_TEMPERATURE_HINT, _probs_variant(logits, t, k, p, temperature_mode="multiply")),
            ("ignores temperature: divide the logits by it", _probs_variant(logits, t, k, p, temperature_mode="ignore")),
        ]  # fmt: skip
        if k is not None:
            variants += [
                ("top-k off by one: keep exactly top_k tokens (the k largest logits)",
                 _probs_variant(logits, t, k, p, k_shift=1)),
                ("top-k off by one: keep exactly top_k tokens (the k largest logits)",
                 _probs_variant(logits, t, k, p, k_shift=-1)),
                ("ignores top_k: keep only the top_k largest logits", _probs_variant(logits, t, None, p)),
            ]  # fmt: skip
        if p is not None:
            variants += [
                ("the top-p nucleus drops the token that crosses p: keep tokens while the mass *before* them is "
                 "below p, so the token that reaches p is kept", _probs_variant(logits, t, k, p, p_mode="drop_crossing")),
                ("the top-p nucleus drops the token that crosses p: keep tokens while the mass *before* them is "
                 "below p, so the token that reaches p is kept",
                 _probs_variant(logits, t, k, p, p_mode="drop_crossing_keep_first")),
                ("ignores top_p: keep the smallest set of most likely tokens whose mass reaches p",
                 _probs_variant(logits, t, k, None)),
            ]  # fmt: skip
        if k is not None or p is not None:
            variants.append((_RENORMALISE_HINT, _probs_variant(logits, t, k, p, renormalise=False)))
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and got.is_floating_point():
            sums = got.double().sum(dim=-1)  # (...,)
            tol = _tolerance(got, expected)
            if not _close(got, expected, tol) and not any(_close(got, w, tol, equal_nan=True) for _, w in variants):
                if not torch.isnan(sums).any() and not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
                    ex.fail("the probabilities of a position do not sum to 1", _RENORMALISE_HINT, case)
        _compare(
            ex, got, expected, case=case, variants=variants,
            shape_hint="same shape as logits: one probability per vocabulary entry",
            nan_hint="a row became all -inf before the softmax: always keep at least the most likely token",
            generic_hint="apply the steps in this order: divide by temperature, keep the top_k largest logits, "
            "then keep the top-p nucleus of what is left (renormalised), then softmax over the kept tokens",
        )  # fmt: skip
    return (
        f"correct on {len(settings)} cases (temperature 0.5, 0.8, 2; top-k; top-p keeps the crossing token; combined)"
    )


def _translation_model(ex: _Exercise, dtype: torch.dtype) -> Transformer:
    """A tiny random encoder-decoder whose greedy outputs vary between sources (untied output, random weights).

    The output row of the pad id is zero, so the model (almost) never predicts padding as a real token.
    """
    config = TransformerConfig(
        src_vocab_size=12, tgt_vocab_size=12, d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1,
        d_ff=32, dropout=0.0, tie_output=False, norm_first=True,
    )  # fmt: skip
    with _default_dtype(dtype):
        model = Transformer(config)
    _randomize_parameters(ex, model)
    model.output.weight[config.pad_id] = 0.0
    return model.to(dtype).eval()


def _varied_eos(generated: torch.Tensor, bos_id: int, pad_id: int) -> int:
    """The token whose first appearance differs most between rows, so rows stop at different steps."""
    best_token, best_spread = -1, -1
    for token in sorted(set(generated.flatten().tolist()) - {bos_id, pad_id}):
        first_steps = set()
        for row in generated.tolist():
            first_steps.add(row.index(token) if token in row else len(row))
        if len(first_steps) > best_spread:
            best_token, best_spread = token, len(first_steps)
    return best_token


@_checker("09.2", "greedy_decode")
def check_greedy_decode(ex, greedy_decode_fn):
    """09.2: ``greedy_decode(model, src_ids (B, S), bos_id, eos_id, max_len) -> (B, 1 + L)`` for a course_lib
    ``Transformer``: start with bos_id, append the most likely token until every row has produced eos_id or
    max_len tokens were added; a row that finished is filled with ``model.config.pad_id`` (like
    ``course_lib.generation.greedy_decode``; no cache needed)."""
    settings = [((1, 5), 6, "stops at max_len", torch.float64), ((4, 5), 8, "rows stop at eos", torch.float32),
                ((3, 6), 7, "source with padding, rows stop at eos", torch.float32)]  # fmt: skip
    bos_id = 1
    for (B, S), max_len, description, dtype in settings:
        model = _translation_model(ex, dtype)
        pad_id = model.config.pad_id
        src_ids = ex.randint(2, 12, (B, S))  # (B, S)
        if "padding" in description:
            src_ids[1:, -2:] = pad_id
        never_stops = greedy_decode(model, src_ids, bos_id, -1, max_len + 1, use_cache=False)  # (B, 2 + max_len)
        eos_id = (
            -1 if description == "stops at max_len" else _varied_eos(never_stops[:, 1 : 1 + max_len], bos_id, pad_id)
        )
        case = f"{description}: src_ids {_shape(src_ids)}, bos_id={bos_id}, eos_id={eos_id}, max_len={max_len}"
        case += f", pad_id={pad_id} {_dtype_name(dtype)}"
        error_hint = (
            "the checker decodes a batch of sources (B rows at once): keep one row of ids per source, and call "
            "model.encode(src_ids) / model.decode(ids, memory, src_mask) or model(src_ids, ids)"
        )
        got = _call(ex, greedy_decode_fn, model, src_ids, bos_id, eos_id, max_len, case=case, error_hint=error_hint)
        expected = greedy_decode(model, src_ids, bos_id, eos_id, max_len, use_cache=False)  # (B, 1 + L)
        L = expected.shape[1]
        filled_with_eos = expected.clone()  # (B, 1 + L)
        for row in range(B):
            ended = (expected[row, 1:] == eos_id).nonzero()
            if len(ended):
                filled_with_eos[row, 2 + int(ended[0]) :] = eos_id
        variants = [
            ("the output must start with bos_id: begin with ids = [[bos_id]] and append each new token",
             expected[:, 1:]),
            ("did not stop at eos: stop once every row has produced eos_id", never_stops[:, : 1 + max_len]),
            ("a row that finished must be filled with the pad id (model.config.pad_id), not keep generating",
             never_stops[:, :L]),
            ("a row that finished must be filled with the pad id (model.config.pad_id), not with eos_id",
             filled_with_eos),
            ("one token too many: add at most max_len tokens after bos_id", never_stops),
            ("one token too few: add up to max_len tokens after bos_id", never_stops[:, :max_len]),
        ]  # fmt: skip
        _compare(
            ex, got, expected, case=case, variants=variants,
            shape_hint=f"(B, 1 + L): bos_id, then at most max_len={max_len} tokens, stopping once every row hit eos_id",
            generic_hint="at each step take the argmax of the logits of the last position and append it",
        )  # fmt: skip
    return f"correct on {len(settings)} cases (a batch of sources, stopping at eos_id or max_len, pad after eos)"


@_checker("09.3", "sequence_log_prob")
def check_sequence_log_prob(ex, sequence_log_prob_fn):
    """09.3: ``sequence_log_prob(logits (B, T, V), target_ids (B, T)) -> (B,)``: sum over t of
    ``log softmax(logits[b, t])[target_ids[b, t]]``."""
    settings = [(2, 5, 7, torch.float64), (3, 4, 10, torch.float32), (1, 1, 3, torch.float64), (4, 3, 6, torch.float32)]
    for B, T, V, dtype in settings:
        logits = ex.randn(B, T, V, dtype=dtype, scale=2.0)  # (B, T, V)
        target_ids = ex.randint(0, V, (B, T))  # (B, T)
        case = f"logits {_shape(logits)}, target_ids {_shape(target_ids)} {_dtype_name(dtype)}"
        got = _call(ex, sequence_log_prob_fn, logits, target_ids, case=case, default_dtype=dtype)
        token_log_probs = -F.cross_entropy(logits.transpose(1, 2), target_ids, reduction="none")  # (B, T)
        expected = token_log_probs.sum(dim=-1)  # (B,)

        def picked(values, target_ids=target_ids):
            return values.gather(-1, target_ids[..., None]).squeeze(-1)  # (B, T)

        variants = [
            ("summed probabilities: sum the log-probabilities (log_softmax), not the probabilities",
             picked(torch.softmax(logits, dim=-1)).sum(-1)),
            ("forgot log_softmax: raw logits are not log-probabilities", picked(logits).sum(-1)),
            ("averaged over positions: sum the log-probabilities instead of taking the mean",
             token_log_probs.mean(dim=-1)),
            ("log_softmax over the wrong dimension: normalise over the vocabulary (dim=-1)",
             picked(torch.log_softmax(logits, dim=1)).sum(-1)),
            ("returned the probability of the sequence: return its log (the sum of log-probabilities)",
             expected.exp()),
            ("returned the negative log-likelihood: the log-probability is its negative", -expected),
        ]  # fmt: skip
        _compare(
            ex, got, expected, case=case, variants=variants,
            shape_hint="one number per sequence: (B,); sum over the T positions only",
        )  # fmt: skip
    return f"correct on {len(settings)} cases (several B, T, V; float32 and float64)"
