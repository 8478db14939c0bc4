"""Checkers of exercises 03: self-attention."""

from __future__ import annotations

import math

import torch

from course_lib.attention import scaled_dot_product_attention
from course_lib.checks._machinery import (
    SATURATION_KEYS,
    SATURATION_SEED,
    _call,
    _checker,
    _close,
    _compare,
    _dtype_name,
    _Exercise,
    _name_tensor_mistake,
    _require_float,
    _require_tensor,
    _shape,
    _tolerance,
)
from course_lib.masks import causal_mask, combine_masks, padding_mask

# ---------------------------------------------------------------------------------------------
# Lesson 03: self-attention
# ---------------------------------------------------------------------------------------------

_K_TRANSPOSE_HINT = (
    "print q.shape and k.shape; k.T reverses every dimension of a batched tensor, so use k.transpose(-2, -1) "
    "(and q @ ... rather than torch.mm, which only takes 2-D matrices)"
)


_SEQUENCE_LENGTH_HINT = (
    "divided by sqrt(T_k), the square root of a sequence length (the number of keys k.shape[-2], or of "
    "queries): the scale is sqrt(d_k), the size of each query and key vector, d_k = q.shape[-1]"
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
            (_SEQUENCE_LENGTH_HINT, dots / math.sqrt(T_k)),
            (_SEQUENCE_LENGTH_HINT, dots / math.sqrt(T_q)),
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
    divisors = {"sqrt_dk": math.sqrt(d_k), "none": 1.0, "dk": d_k, "sqrt_dv": math.sqrt(d_v), "dv": d_v,
                "sqrt_tk": math.sqrt(k.shape[-2])}  # fmt: skip
    divisor = divisors[scale]
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
        (_SEQUENCE_LENGTH_HINT, dict(scale="sqrt_tk")),
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
        if _name_tensor_mistake(ex, weights, expected, variants, tol, "the attention weights are not right", case):
            return  # several mistakes give these weights: the later cases decide
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

    The mask part is optional until lesson 04 (masking): a function that is right without a mask and still
    raises ``NotImplementedError`` when given one (the exercise's stub for that part) passes the cases without
    a mask, and the success line says that the mask part is still to do.
    """
    cases = _attention_cases(ex)
    checked, mask_part_missing = 0, False
    for q, k, v, mask, description in cases:
        case = f"{description}: q {_shape(q)}, k {_shape(k)}, v {_shape(v)}"
        if mask is not None:
            case += f", mask {_shape(mask)}"
        case += f" {_dtype_name(q.dtype)}"
        args = (q, k, v) if mask is None else (q, k, v, mask)
        try:
            result = _call(ex, attention_fn, *args, case=case, default_dtype=q.dtype, error_hint=_K_TRANSPOSE_HINT)
        except NotImplementedError:
            if mask is None or checked == 0 or any(m is not None for *_, m, _ in cases[:checked]):
                raise
            ex.raise_pending()
            mask_part_missing = True  # the optional mask part is still the stub: the unmasked cases passed
            break
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
        checked += 1
    if mask_part_missing:
        return (
            f"correct on the {checked} cases without a mask (batch and head dims, d_v != d_k, float32 and "
            "float64); the mask part, optional until lesson 04, is still to do"
        )
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
        return the largest weight of softmax(scores) and of softmax(scores / sqrt(d)), as a tuple of two
        Python floats (.item())

    (float32 draws are accepted too; tensors and lists are not.) The unscaled softmax saturates: its largest weight tends to 1 as d grows.
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
        if not isinstance(result, tuple):
            ex.fail(
                f"returned a {type(result).__name__}",
                "return a tuple of two floats, return unscaled, scaled (not a list)",
                case,
            )
        unscaled = _require_float(ex, result[0], "first number (max weight unscaled)", case)
        scaled = _require_float(ex, result[1], "second number (max weight scaled)", case)
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
