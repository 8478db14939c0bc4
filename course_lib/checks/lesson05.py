"""Checkers of exercises 05: multi-head attention."""

from __future__ import annotations

import math

import torch

from course_lib.attention import scaled_dot_product_attention
from course_lib.checks._machinery import (
    _attempt,
    _attention_probabilities,
    _call,
    _call_args_text,
    _checker,
    _close,
    _compare,
    _compare_number,
    _default_dtype,
    _dropout_pattern,
    _dtype_name,
    _linear_input,
    _prepare_learner_module,
    _reference_module,
    _require_int,
    _shape,
)
from course_lib.masks import causal_mask, padding_mask
from course_lib.multihead import MultiHeadAttention, merge_heads, split_heads

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
                 keys_from_query=False, swap_key_value=False, ignore_mask=False, invert_mask=False,
                 scale_twice=False):  # fmt: skip
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
    if scale_twice:
        q = q / math.sqrt(d_head)  # the attention divides by sqrt(d_head) once more
    used_mask = None if ignore_mask or mask is None else ~mask if invert_mask else mask
    if invert_mask == "nan" and mask is not None:  # masked_fill(mask, -inf) in the learner's own attention
        scores = (q @ k.transpose(-2, -1) / math.sqrt(d_head)).masked_fill(mask, float("-inf"))
        heads = torch.softmax(scores, dim=-1) @ v  # (B, n_heads, T_q, d_head), NaN on fully blocked rows
    else:
        heads, _ = scaled_dot_product_attention(q, k, v, used_mask)  # (B, n_heads, T_q, d_head)
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
    ("inverted mask: True means may attend, so pass the mask itself (not ~mask), or block where it is False "
     "with masked_fill(~mask, float('-inf'))", dict(invert_mask=True)),
    ("inverted mask: True means may attend, so block where the mask is False, masked_fill(~mask, float('-inf')) "
     "(not masked_fill(mask, ...))", dict(invert_mask="nan")),
    ("scaled twice (double scaling): the attention already divides the scores by sqrt(d_head), so do not "
     "scale q (or the scores) again yourself", dict(scale_twice=True)),
]  # fmt: skip


@_checker("05.3", "MultiHeadAttention", kind="class")
def check_multi_head_attention(ex, mha_class):
    """05.3: ``class MultiHeadAttention(nn.Module)``, built as ``MultiHeadAttention(d_model, n_heads)`` (and with
    ``bias=False``); linear layers ``w_q``, ``w_k``, ``w_v``, ``w_o``; ``forward(query, key, value, mask=None)``
    returns (B, T_q, d_model) and keeps the weights on ``.attention_weights`` (B, n_heads, T_q, T_k).
    Built with ``dropout=0.5``, it must drop attention weights (and rescale the kept ones) in training mode only:
    any random draw passes, as long as the dropout acts on the weights, after the softmax and before ``@ v``.
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
    _check_mha_dropout(ex, mha_class, contract, hints)
    return (
        f"correct on {len(settings)} cases (self- and cross-attention, causal and padding masks, bias=False, "
        "d_model 8 to 16 with 2 to 4 heads, .attention_weights kept) and with dropout=0.5 on the weights "
        "(training and eval)"
    )


_MHA_DROPOUT_WHERE = (
    "dropout belongs on the attention weights: after the softmax, before multiplying by v, "
    "heads = self.dropout(weights) @ v (keep self.attention_weights from before the dropout)"
)


def _check_mha_dropout(ex, mha_class, contract, hints):
    """MultiHeadAttention(16, 2, dropout=0.5): off in eval mode; in training mode each attention weight is
    either dropped or scaled by 1 / (1 - p). Any random draw passes, as long as the dropout is in that place."""
    d_model, n_heads, p, (B, T_q, T_k), dtype = 16, 2, 0.5, (2, 4, 5), torch.float64
    kwargs = {"dropout": p}
    case = (
        f"MultiHeadAttention({_call_args_text((d_model, n_heads), kwargs)}), cross-attention, B={B}, T_q={T_q}, "
        f"T_k={T_k} {_dtype_name(dtype)}"
    )
    reference = _reference_module(ex, MultiHeadAttention, (d_model, n_heads), kwargs, dtype)
    learner = _prepare_learner_module(
        ex, mha_class, (d_model, n_heads), kwargs, reference, ["w_q", "w_k", "w_v", "w_o"], contract, case, dtype,
        hints,
    )  # fmt: skip
    query = ex.randn(B, T_q, d_model, dtype=dtype)  # (B, T_q, d_model)
    key = ex.randn(B, T_k, d_model, dtype=dtype)  # (B, T_k, d_model)
    value = ex.randn(B, T_k, d_model, dtype=dtype)  # (B, T_k, d_model)
    without_dropout = reference(query, key, value)  # (B, T_q, d_model), eval mode
    got = _call(ex, learner, query, key, value, case=case + ", eval mode", default_dtype=dtype)
    _compare(
        ex, got, without_dropout, case=case + ", eval mode", shape_hint="the output is (B, T_q, d_model)",
        generic_hint="dropout must do nothing in eval mode (after .eval()): use an nn.Dropout module, or "
        "F.dropout(weights, p, training=self.training)",
    )  # fmt: skip
    case += ", training mode (learner.train())"
    learner.train()
    reference.train()
    torch.manual_seed(1)
    got = _call(ex, learner, query, key, value, case=case, default_dtype=dtype)
    torch.manual_seed(1)
    expected = reference(query, key, value)  # (B, T_q, d_model), the same draw as nn.Dropout on the weights
    weights = reference.attention_weights  # (B, n_heads, T_q, T_k), before dropout
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        _compare(ex, got, expected, case=case, shape_hint="the output is (B, T_q, d_model)")
    if _close(got, expected, 1e-8):
        return
    if _close(got, without_dropout, 1e-8):
        ex.fail(
            "with dropout=0.5 in training mode the output is the same as without dropout",
            "no dropout on the attention weights: create self.dropout = nn.Dropout(dropout) in __init__ and in "
            "forward apply it to the weights (after the softmax) before multiplying by v",
            case,
        )
    merged = _linear_input(reference.w_o, got)  # (B, T_q, d_model) before w_o, None if no input gives got
    if merged is not None:
        heads = split_heads(merged, n_heads)  # (B, n_heads, T_q, d_head)
        v = split_heads(reference.w_v(value), n_heads)  # (B, n_heads, T_k, d_head)
        dropped = _attention_probabilities(weights, heads, v)  # (B, n_heads, T_q, T_k)
        if _dropout_pattern(dropped, weights, p):
            return  # another random draw, in the right place
        if _dropout_pattern(dropped, weights, 0.0):
            ex.fail(
                "the kept attention weights are not rescaled",
                "dropout scales what it keeps by 1 / (1 - p): use nn.Dropout (or F.dropout) rather than "
                "multiplying by a 0/1 mask yourself",
                case,
            )
        merged_without = merge_heads(weights @ v)  # (B, T_q, d_model)
        if _dropout_pattern(merged, merged_without, p):
            ex.fail(
                "dropout was applied to the merged heads (before w_o), not to the attention weights",
                _MHA_DROPOUT_WHERE, case,
            )  # fmt: skip
    if _dropout_pattern(got, without_dropout, p):
        ex.fail("dropout was applied to the layer's output, not to the attention weights", _MHA_DROPOUT_WHERE, case)
    ex.fail(
        "in training mode with dropout=0.5 the output is not what dropout on the attention weights gives",
        _MHA_DROPOUT_WHERE,
        case,
    )


@_checker("05.4", "mha_parameter_count")
def check_mha_parameter_count(ex, mha_parameter_count_fn):
    """05.4 (understanding): ``mha_parameter_count(d_model, bias=True) -> int``, the parameters of one
    ``MultiHeadAttention(d_model, n_heads, bias=bias)`` (the count does not depend on n_heads), as an ``int``
    (a float or a tensor fails, even with the right value)."""
    settings = [(8, True), (8, False), (64, True), (512, True), (512, False), (768, True)]
    for d_model, bias in settings:
        kwargs = {} if bias else {"bias": False}
        case = f"mha_parameter_count({_call_args_text((d_model,), kwargs)})"
        got = _require_int(ex, _call(ex, mha_parameter_count_fn, d_model, case=case, **kwargs), "count", case)
        with _default_dtype(torch.float32):
            reference = MultiHeadAttention(d_model, 1, bias=bias)
        expected = sum(p.numel() for p in reference.parameters())
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
        _compare_number(
            ex, got, expected, variants, problem=f"got {got}, expected {expected}", case=case, rel=0.0,
            generic_hint="count the weights and biases of w_q, w_k, w_v and w_o",
        )  # fmt: skip
    return f"correct on {len(settings)} cases (d_model 8, 64, 512, 768; with and without biases; an int)"
