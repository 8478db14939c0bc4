"""Checkers of exercises 07: encoder."""

from __future__ import annotations

import torch

from course_lib.checks._machinery import (
    _as_number,
    _call,
    _call_args_text,
    _checker,
    _compare,
    _compare_number,
    _default_dtype,
    _dtype_name,
    _prepare_learner_module,
    _reference_module,
    _residual,
    _shape,
)
from course_lib.checks.lesson06 import _NORM_ON_BRANCH_HINT, _POST_PRE_HINT
from course_lib.encoder import EncoderLayer
from course_lib.masks import causal_mask, padding_mask

# ---------------------------------------------------------------------------------------------
# Lesson 07: encoder
# ---------------------------------------------------------------------------------------------


def _encoder_variant(layer, x, mask, *, norm_first, residual=True, ignore_mask=False, swap_norms=False,
                     add_normalised=False, norm_sublayer=False):  # fmt: skip
    """What a common wrong encoder layer gives, from the reference's own sublayers."""
    used_mask = None if ignore_mask else mask
    first_norm, second_norm = (layer.norm2, layer.norm1) if swap_norms else (layer.norm1, layer.norm2)

    def attention(h):
        return layer.self_attn(h, h, h, used_mask)  # (B, T, d_model)

    options = dict(norm_first=norm_first, residual=residual, add_normalised=add_normalised, norm_sublayer=norm_sublayer)
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
        (_NORM_ON_BRANCH_HINT, dict(norm_sublayer=True)),
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
        d = d_model
        variants = [
            ("forgot the layer norms' parameters: each of the two has a weight and a bias of d_model numbers",
             expected - 4 * d),
            ("forgot the attention's biases: w_q, w_k, w_v and w_o each have d_model biases", expected - 4 * d),
            ("counted only one layer norm: there are two (norm1 and norm2), each 2 * d_model", expected - 2 * d),
            ("forgot the layer norms' biases: each norm has a weight and a bias", expected - 2 * d),
            ("forgot the biases of the linear layers (4 * d_model in attention, d_ff + d_model in the MLP)",
             expected - 4 * d - d_ff - d),
            ("forgot the output projection w_o of the attention (d_model * d_model + d_model)", expected - d * d - d),
            ("counted only one of the feed-forward's two linear layers", expected - (d_ff * d + d)),
            ("forgot the feed-forward's biases (d_ff + d_model)", expected - d_ff - d),
        ]  # fmt: skip
        _compare_number(
            ex, got, expected, variants, problem=f"got {got:g}, expected {expected}", case=case, rel=0.0,
            generic_hint="add up the self-attention (4 linear layers with biases), the feed-forward (linear1 and "
            "linear2 with biases) and the two layer norms (weight and bias each)",
        )  # fmt: skip
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
