"""Checkers of exercises 08: decoder."""

from __future__ import annotations

import torch

from course_lib.checks._machinery import (
    _call,
    _call_args_text,
    _checker,
    _close,
    _compare,
    _dtype_name,
    _prepare_learner_module,
    _reference_module,
    _residual,
    _shape,
    _tolerance,
)
from course_lib.checks.lesson06 import _NORM_ON_BRANCH_HINT, _POST_PRE_HINT
from course_lib.decoder import DecoderLayer
from course_lib.masks import causal_mask, padding_mask

# ---------------------------------------------------------------------------------------------
# Lesson 08: decoder
# ---------------------------------------------------------------------------------------------


def _decoder_variant(layer, x, memory, self_mask, memory_mask, *, norm_first, residual=True, ignore_self_mask=False,
                     ignore_memory_mask=False, cross_to_self=False, cross_first=False, add_normalised=False,
                     norm_sublayer=False):  # fmt: skip
    """What a common wrong decoder layer gives, from the reference's own sublayers."""
    used_self_mask = None if ignore_self_mask else self_mask
    used_memory_mask = None if ignore_memory_mask else memory_mask

    def self_attention(h):
        return layer.self_attn(h, h, h, used_self_mask)  # (B, T, d_model)

    def cross_attention(h):
        if cross_to_self:
            return layer.cross_attn(h, h, h, used_self_mask)  # (B, T, d_model)
        return layer.cross_attn(h, memory, memory, used_memory_mask)  # (B, T, d_model)

    options = dict(norm_first=norm_first, residual=residual, add_normalised=add_normalised, norm_sublayer=norm_sublayer)
    first, second = (cross_attention, self_attention) if cross_first else (self_attention, cross_attention)
    x = _residual(x, first, layer.norm1, **options)  # (B, T, d_model)
    x = _residual(x, second, layer.norm2, **options)  # (B, T, d_model)
    return _residual(x, layer.ff, layer.norm3, **options)  # (B, T, d_model)


_CROSS_INPUTS_HINT = "cross-attention must attend to the encoder output: cross_attn(x, memory, memory, memory_mask)"


def _attention_arguments(args: tuple, kwargs: dict) -> dict:
    """query, key, value and mask of one call of an attention module, however they were passed."""
    found = dict(zip(("query", "key", "value", "mask"), args, strict=False))
    aliases = {"query": ("query", "q", "x"), "key": ("key", "k"), "value": ("value", "v"),
               "mask": ("mask", "attn_mask", "memory_mask", "self_mask")}  # fmt: skip
    for name, options in aliases.items():
        for option in options:
            if option in kwargs:
                found[name] = kwargs[option]
    return found


class _CallRecorder:
    """Records the arguments of every call of the learner's self_attn and cross_attn (forward pre-hooks)."""

    def __init__(self, learner):
        self.calls = {"self_attn": [], "cross_attn": []}
        self.handles = []
        for name, calls in self.calls.items():
            module = getattr(learner, name, None)
            if isinstance(module, torch.nn.Module):

                def hook(_module, args, kwargs, calls=calls):
                    calls.append(_attention_arguments(args, kwargs))

                self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _same(a, b) -> bool:
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)


def _attention_inputs_problem(recorder: _CallRecorder, memory, self_mask, memory_mask) -> str | None:
    """What the learner passed to cross_attn (and self_attn) that is not what they need, or None."""
    cross = recorder.calls["cross_attn"]
    if cross:
        call = cross[0]
        query, key, value, mask = (call.get(name) for name in ("query", "key", "value", "mask"))
        if _same(query, memory):
            return (
                "the cross-attention's queries come from memory: the queries come from the decoder (x), the keys "
                "and values from the encoder output: cross_attn(x, memory, memory, memory_mask)"
            )
        if not _same(key, memory) or not _same(value, memory):
            if _same(key, memory) or _same(value, memory):
                return (
                    "cross-attention must attend to the encoder output: its keys and values must both be memory, "
                    "cross_attn(x, memory, memory, memory_mask)"
                )
            return _CROSS_INPUTS_HINT + " (the keys and values come from memory)"
        if memory_mask is not None and mask is None:
            return "the memory_mask was ignored: pass it to the cross-attention, cross_attn(x, memory, memory, memory_mask)"
        if memory_mask is not None and self_mask is not None and mask is self_mask:
            return "the cross-attention got self_mask: pass memory_mask to it (self_mask belongs to the self-attention)"
    own = recorder.calls["self_attn"]
    if own:
        call = own[0]
        if _same(call.get("key"), memory) or _same(call.get("value"), memory):
            return (
                "the self-attention attends to memory: it attends to the decoder's own tokens, "
                "self_attn(x, x, x, self_mask); memory goes to the cross-attention"
            )
        if self_mask is not None and call.get("mask") is memory_mask and memory_mask is not None:
            return (
                "the self-attention got memory_mask: pass self_mask to it (memory_mask belongs to the cross-attention)"
            )
    return None


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
        (_NORM_ON_BRANCH_HINT, dict(norm_sublayer=True)),
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
        recorder = _CallRecorder(learner)

        def error_hint(error, recorder=recorder, memory=memory, self_mask=self_mask, memory_mask=memory_mask):
            return _attention_inputs_problem(recorder, memory, self_mask, memory_mask) or ""

        try:
            got = _call(
                ex, learner, x, memory, self_mask, memory_mask, case=case, default_dtype=dtype, error_hint=error_hint
            )
        finally:
            recorder.remove()
        expected = reference(x, memory, self_mask, memory_mask)  # (B, T, d_model)
        if not _close(got, expected, _tolerance(expected)):
            problem = _attention_inputs_problem(recorder, memory, self_mask, memory_mask)
            if problem is not None:
                ex.fail("the output is not right", problem, case)
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
