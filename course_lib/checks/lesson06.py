"""Checkers of exercises 06: MLP, residual connections and layer norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.checks._machinery import (
    _attempt,
    _call,
    _call_args_text,
    _checker,
    _close,
    _compare,
    _dropout_pattern,
    _dtype_name,
    _linear_input,
    _prepare_learner_module,
    _reference_module,
    _require_tensor,
    _residual,
    _shape,
)
from course_lib.feedforward import FeedForward
from course_lib.normalization import LayerNorm, layer_norm

# ---------------------------------------------------------------------------------------------
# Lesson 06: MLP, residual connections and layer norm
# ---------------------------------------------------------------------------------------------


_GLOBAL_MEAN_HINT = (
    "a global mean (or variance) over the whole tensor instead of one per row: each vector is normalised with "
    "its own statistics, so take the mean and the variance over the last dimension only, "
    "x.mean(dim=-1, keepdim=True)"
)


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
            (_GLOBAL_MEAN_HINT, (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + e) * weight + bias),
            (_GLOBAL_MEAN_HINT, (x - x.mean()) / torch.sqrt(biased + e) * weight + bias),
            (_GLOBAL_MEAN_HINT, (x - x.mean()) / torch.sqrt(((x - x.mean()) ** 2).mean(dim=-1, keepdim=True) + e)
             * weight + bias),
            (_GLOBAL_MEAN_HINT, (x - x.mean()) / torch.sqrt(unbiased + e) * weight + bias),
            (_GLOBAL_MEAN_HINT, (x - x.mean()) / torch.sqrt(x.var() + e) * weight + bias),
        ]  # fmt: skip
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="same shape as x")
    return f"correct on {len(settings)} cases (2-D to 4-D inputs, default and given eps, float32 and float64)"


_ACTIVATION_IGNORED_HINT = (
    'the activation argument is ignored: FeedForward(..., activation="gelu") must use F.gelu (exact GELU) '
    'between the layers, activation="relu" F.relu; choose the function from the argument in __init__'
)
_FF_DROPOUT_WHERE = (
    "dropout goes on the hidden activations, after the activation and before linear2: "
    "linear2(dropout(activation(linear1(x))))"
)


def _activation(name: str):
    return {"relu": F.relu, "gelu": F.gelu}[name]


@_checker("06.2", "FeedForward", kind="class")
def check_feed_forward(ex, feed_forward_class):
    """06.2: ``class FeedForward(nn.Module)`` built as ``FeedForward(d_model, d_ff)`` (ReLU by default) and with
    ``activation="gelu"`` (exact GELU); layers ``linear1`` (d_model -> d_ff) and ``linear2`` (d_ff -> d_model);
    ``forward(x (B, T, d_model))``, keeping the hidden activations (after the activation) on ``.last_hidden``;
    with ``dropout`` > 0, dropout on the hidden activations in training mode only."""
    settings = [
        (8, 32, {}, (2, 5), torch.float64),
        (6, 10, {"activation": "gelu"}, (3, 4), torch.float32),
        (16, 64, {}, (1, 3), torch.float64),
        (8, 24, {"activation": "gelu"}, (2, 3), torch.float64),
    ]
    for d_model, d_ff, kwargs, (B, T), dtype in settings:
        case = f"FeedForward({_call_args_text((d_model, d_ff), kwargs)}), x ({B}, {T}, {d_model}) {_dtype_name(dtype)}"
        learner, reference = _feed_forward_pair(ex, feed_forward_class, d_model, d_ff, kwargs, case, dtype)
        x = ex.randn(B, T, d_model, dtype=dtype)  # (B, T, d_model)
        got = _call(ex, learner, x, case=case, default_dtype=dtype)
        expected = reference(x)  # (B, T, d_model)
        first, second = reference.linear1, reference.linear2
        activation = kwargs.get("activation", "relu")
        variants = [
            (f"no activation between the layers: apply {'GELU' if activation == 'gelu' else 'ReLU'} to linear1's "
             "output", second(first(x))),
            (f"applied {'GELU' if activation == 'gelu' else 'ReLU'} to the output too: the activation goes only "
             "between linear1 and linear2", _activation(activation)(expected)),
            ("added the residual inside FeedForward: the residual belongs to the layer around it", x + expected),
            ("the activation is applied before linear1: it goes between linear1 and linear2",
             second(first(_activation(activation)(x)))),
        ]  # fmt: skip
        if activation == "relu":
            variants.append(("used GELU: the default activation is ReLU", second(F.gelu(first(x)))))
        else:
            variants += [
                (_ACTIVATION_IGNORED_HINT, second(F.relu(first(x)))),
                ("the tanh approximation of GELU: the course's \"gelu\" is the exact one, F.gelu(x) "
                 "(nn.GELU()), not approximate=\"tanh\"", second(F.gelu(first(x), approximate="tanh"))),
            ]  # fmt: skip
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="the output is (B, T, d_model)")
        _check_last_hidden(ex, learner, reference, x, case)
    _check_feed_forward_dropout(ex, feed_forward_class)
    return (
        f"correct on {len(settings)} cases (several d_model and d_ff; ReLU and GELU; float32 and float64; "
        ".last_hidden kept) and with dropout=0.5 (training and eval)"
    )


def _feed_forward_pair(ex, feed_forward_class, d_model, d_ff, kwargs, case, dtype):
    reference = _reference_module(ex, FeedForward, (d_model, d_ff), kwargs, dtype)
    learner = _prepare_learner_module(
        ex, feed_forward_class, (d_model, d_ff), kwargs, reference, ["linear1", "linear2"],
        "linear1 (d_model -> d_ff) and linear2 (d_ff -> d_model)", case, dtype,
    )  # fmt: skip
    return learner, reference


def _check_last_hidden(ex, learner, reference, x, case):
    hidden = getattr(learner, "last_hidden", None)
    if hidden is None:
        ex.fail(
            ".last_hidden not kept",
            "in forward, keep the hidden activations (B, T, d_ff), after the activation: "
            "self.last_hidden = hidden (set it to None in __init__)",
            case,
        )
    pre_activation = reference.linear1(x)  # (B, T, d_ff)
    _compare(
        ex, hidden, reference.last_hidden, case=case, what=".last_hidden",
        variants=[
            ("last_hidden is taken before the activation: keep the hidden activations after it, "
             "activation(linear1(x))", pre_activation),
            ("last_hidden is the layer's output: keep the hidden activations (B, T, d_ff), between the two layers",
             reference(x)),
        ],
        shape_hint="the hidden activations are (B, T, d_ff): activation(linear1(x))",
    )  # fmt: skip


def _check_feed_forward_dropout(ex, feed_forward_class):
    """FeedForward(8, 6, activation="gelu", dropout=0.5): off in eval mode; in training mode each hidden
    activation is dropped or scaled by 1 / (1 - p). Any random draw passes, as long as the dropout is in that
    place (d_ff <= d_model, so the hidden activations can be recovered from the output)."""
    d_model, d_ff, p, (B, T), dtype = 8, 6, 0.5, (2, 5), torch.float64
    kwargs = {"activation": "gelu", "dropout": p}
    case = f"FeedForward({_call_args_text((d_model, d_ff), kwargs)}), x ({B}, {T}, {d_model}) {_dtype_name(dtype)}"
    learner, reference = _feed_forward_pair(ex, feed_forward_class, d_model, d_ff, kwargs, case, dtype)
    x = ex.randn(B, T, d_model, dtype=dtype)  # (B, T, d_model)
    without_dropout = reference(x)  # (B, T, d_model), eval mode
    hidden = reference.last_hidden  # (B, T, d_ff)
    got = _call(ex, learner, x, case=case + ", eval mode", default_dtype=dtype)
    _compare(
        ex, got, without_dropout, case=case + ", eval mode", shape_hint="the output is (B, T, d_model)",
        generic_hint="dropout must do nothing in eval mode (after .eval()): use an nn.Dropout module, or "
        "F.dropout(hidden, p, training=self.training)",
    )  # fmt: skip
    case += ", training mode (learner.train())"
    learner.train()
    torch.manual_seed(1)
    got = _call(ex, learner, x, case=case, default_dtype=dtype)
    _require_tensor(ex, got, "output", case)
    first, second, dropout = reference.linear1, reference.linear2, torch.nn.Dropout(p)

    def same_draw(compute):
        torch.manual_seed(1)  # the draw nn.Dropout makes in the learner's module
        return _attempt(compute)

    variants = [
        (_FF_DROPOUT_WHERE, same_draw(lambda: second(dropout(F.gelu(first(x)))))),
        ("dropout on the input x: " + _FF_DROPOUT_WHERE, same_draw(lambda: second(F.gelu(first(dropout(x)))))),
        ("dropout before the activation: " + _FF_DROPOUT_WHERE, same_draw(lambda: second(F.gelu(dropout(first(x)))))),
        ("dropout on the output: " + _FF_DROPOUT_WHERE, same_draw(lambda: dropout(without_dropout))),
    ]
    expected = variants[0][1]  # (B, T, d_model), nn.Dropout on the hidden activations
    if _close(got, expected, 1e-8):
        return
    if _close(got, without_dropout, 1e-8):
        ex.fail(
            "with dropout=0.5 in training mode the output is the same as without dropout",
            "no dropout: create self.dropout = nn.Dropout(dropout) in __init__ and apply it in forward, "
            "after the activation and before linear2",
            case,
        )
    dropped = _linear_input(reference.linear2, got)  # (B, T, d_ff) before linear2, None if no input gives got
    if _dropout_pattern(dropped, hidden, p):
        return  # another random draw, in the right place
    if _dropout_pattern(dropped, hidden, 0.0):
        ex.fail(
            "the kept activations are not rescaled",
            "dropout scales what it keeps by 1 / (1 - p): use nn.Dropout (or F.dropout) rather than multiplying "
            "by a 0/1 mask yourself",
            case,
        )
    if _dropout_pattern(got, without_dropout, p):
        ex.fail("dropout was applied to the output", _FF_DROPOUT_WHERE, case)
    _compare(
        ex, got, expected, case=case, variants=variants[1:], tol=1e-8, generic_hint=_FF_DROPOUT_WHERE,
        shape_hint="the output is (B, T, d_model)",
    )  # fmt: skip


_NORM_ON_BRANCH_HINT = (
    "the layer norm is on the sublayer's branch, x + norm(sublayer(x)): post-norm normalises the sum, "
    "norm(x + sublayer(x)), and pre-norm normalises the sublayer's input, x + sublayer(norm(x))"
)
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
            (_NORM_ON_BRANCH_HINT, _residual(x, sublayer, norm, norm_first=norm_first, norm_sublayer=True)),
        ]  # fmt: skip
        _compare(ex, got, expected, case=case, variants=variants, shape_hint="same shape as x: (B, T, d_model)")
    return f"correct on {len(settings)} cases (post-norm and pre-norm, float32 and float64)"
