"""Checkers of exercises 06: MLP, residual connections and layer norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.checks._machinery import (
    _call,
    _checker,
    _compare,
    _dtype_name,
    _prepare_learner_module,
    _reference_module,
    _residual,
    _shape,
)
from course_lib.feedforward import FeedForward
from course_lib.normalization import LayerNorm, layer_norm

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
