"""Checkers of exercises 00: the PyTorch primer (tensors, modules, gradients)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from course_lib.checks._machinery import (
    _call,
    _call_args_text,
    _checker,
    _close,
    _compare,
    _dtype_name,
    _load_reference_weights,
    _randomize_parameters,
    _require_float,
    _require_tensor,
    _shape,
)

# ---------------------------------------------------------------------------------------------
# 00.1: broadcasting, from numpy to torch
# ---------------------------------------------------------------------------------------------

_NONE_HINT = (
    "give a and b new axes with None so that every row of a meets every row of b: "
    "a[:, None, :] - b[None, :, :] is (N, M, d)"
)


def _broadcast_error_hint(error: Exception) -> str:
    text = str(error)
    if "must match the size" in text or "broadcast" in text:
        return "a - b needs shapes that broadcast: " + _NONE_HINT
    if "axis" in text or "keepdims" in text:
        return "torch names the axis `dim` (and `keepdims` is `keepdim`): x.sum(dim=-1)"
    return "read the error message, then print the shape after each line of your code"


@_checker("00.1", "pairwise_squared_distances")
def check_pairwise_squared_distances(ex, pairwise_fn):
    """00.1: ``pairwise_squared_distances(a (N, d), b (M, d)) -> (N, M)``: entry [i, j] is the sum over the
    features of (a[i] - b[j]) ** 2, in torch (a tensor of the inputs' dtype)."""
    settings = [(4, 3, 2, torch.float64), (5, 5, 3, torch.float32), (1, 6, 4, torch.float64), (3, 2, 8, torch.float32)]
    for N, M, d, dtype in settings:
        a = ex.randn(N, d, dtype=dtype)  # (N, d)
        b = ex.randn(M, d, dtype=dtype) + 0.5  # (M, d)
        case = f"a {_shape(a)}, b {_shape(b)} {_dtype_name(dtype)}"
        got = _call(ex, pairwise_fn, a, b, case=case, default_dtype=dtype, error_hint=_broadcast_error_hint)
        if type(got).__module__ == "numpy":
            ex.fail(
                f"returned a numpy {type(got).__name__}, not a torch.Tensor",
                "stay in torch: the same operations exist on tensors (torch.sum, x.sum(dim=...), None indexing); "
                "if you go through numpy, convert back with torch.from_numpy(...)",
                case,
            )
        differences = a[:, None, :] - b[None, :, :]  # (N, M, d)
        expected = (differences**2).sum(dim=-1)  # (N, M)
        _require_tensor(ex, got, "output", case, f"of shape {_shape(expected)}")
        if got.shape != expected.shape:
            _fail_on_distance_shape(ex, got, a, b, case)
        variants = [
            ("returned distances, not squared distances: leave out the square root", expected.sqrt()),
            ("averaged over the features: sum the squared differences over the last dimension (dim=-1)",
             (differences**2).mean(dim=-1)),
            ("absolute differences: square each difference, (a_i - b_j) ** 2", differences.abs().sum(dim=-1)),
            ("rows and columns swapped: entry [i, j] compares row i of a with row j of b", expected.T),
            ("squared the sum of the differences: square each difference first, then sum",
             differences.sum(dim=-1) ** 2),
        ]  # fmt: skip
        tol = 1e-4 if dtype == torch.float32 else 1e-9  # a**2 + b**2 - 2ab rounds more than (a - b)**2
        _compare(
            ex, got, expected, case=case, variants=variants, tol=tol,
            shape_hint=f"one number per pair of rows: (N, M) = {_shape(expected)}",
        )  # fmt: skip
    return f"correct on {len(settings)} cases (N = M and N != M, several d, float32 and float64)"


def _fail_on_distance_shape(ex, got, a, b, case):
    N, M, d = a.shape[0], b.shape[0], a.shape[1]
    expected_text = f"expected (N, M) = ({N}, {M}), got {_shape(got)}"
    if tuple(got.shape) == (M, N):
        ex.fail(f"wrong output shape: {expected_text}", "rows and columns swapped: entry [i, j] compares row i of a "
                "with row j of b, so a gets the new axis in the middle: a[:, None, :] - b[None, :, :]", case)  # fmt: skip
    if tuple(got.shape) == (N, M, d):
        ex.fail(f"wrong output shape: {expected_text}", "sum the squared differences over the features: "
                ".sum(dim=-1) turns (N, M, d) into (N, M)", case)  # fmt: skip
    if N == M and tuple(got.shape) == (N,):
        ex.fail(
            f"wrong output shape: {expected_text}",
            "a - b subtracted row i of b from row i of a only (the shapes happened to match): " + _NONE_HINT,
            case,
        )
    if got.dim() == 2 and got.shape[-1] == d:
        ex.fail(f"wrong output shape: {expected_text}", "summed over the wrong dimension: the features are the last "
                "dimension, so sum with dim=-1 (numpy's axis is torch's dim)", case)  # fmt: skip
    ex.fail(f"wrong output shape: {expected_text}", "print the shape after each line: " + _NONE_HINT, case)


# ---------------------------------------------------------------------------------------------
# 00.2: a Linear layer as an nn.Module
# ---------------------------------------------------------------------------------------------

_LINEAR_CONSTRUCTOR = "Linear(in_features, out_features, bias=True)"
_PARAMETER_HINT = (
    "wrap the tensor in nn.Parameter(...) and assign it to self.weight (and self.bias): only parameters are "
    "registered, so that .parameters() lists them and an optimiser trains them"
)


@_checker("00.2", "Linear", kind="class")
def check_linear(ex, linear_class):
    """00.2: ``class Linear(nn.Module)`` built as ``Linear(in_features, out_features, bias=True)``, with the
    parameters ``weight`` (out_features, in_features) and ``bias`` (out_features,) (no bias when ``bias=False``);
    ``forward(x (..., in_features)) -> x @ weight.T + bias``, gradients reaching both parameters."""
    settings = [
        (3, 5, {}, (4,), torch.float64),
        (4, 2, {"bias": False}, (2, 3), torch.float32),
        (6, 6, {}, (2, 3), torch.float64),
        (5, 3, {"bias": False}, (7,), torch.float64),
    ]
    for in_features, out_features, kwargs, batch, dtype in settings:
        bias = kwargs.get("bias", True)
        case = f"Linear({_call_args_text((in_features, out_features), kwargs)}), x {(*batch, in_features)}"
        case += f" {_dtype_name(dtype)}"
        learner = _call(
            ex, linear_class, in_features, out_features, case=case, default_dtype=dtype, **kwargs,
            error_hint=f"the constructor must accept the arguments of nn.Linear: {_LINEAR_CONSTRUCTOR}",
        )  # fmt: skip
        if not isinstance(learner, nn.Module):
            ex.fail(f"{linear_class.__name__}(...) is not an nn.Module", "subclass nn.Module and call "
                    "super().__init__() first in __init__", case)  # fmt: skip
        _check_linear_parameters(ex, learner, in_features, out_features, bias, case)
        reference = nn.Linear(in_features, out_features, bias=bias, dtype=dtype)
        _randomize_parameters(ex, reference)
        learner = learner.to(dtype)
        _load_reference_weights(ex, learner, reference, case)
        x = ex.randn(*batch, in_features, dtype=dtype)  # (..., in_features)
        with torch.enable_grad():
            got = _call(ex, learner, x, case=case, default_dtype=dtype, error_hint=_linear_forward_error)
            expected = reference(x)  # (..., out_features)
            weight = reference.weight.detach()  # (out, in)
            variants = [("forgot to add the bias: return x @ self.weight.T + self.bias", x @ weight.T)] if bias else []
            if in_features == out_features:
                variants.append((
                    "forgot the transpose: the weight is (out_features, in_features), so multiply by its transpose, "
                    "x @ self.weight.T", x @ weight + (reference.bias.detach() if bias else 0.0),
                ))  # fmt: skip
            _compare(
                ex, got.detach() if isinstance(got, torch.Tensor) else got, expected.detach(), case=case,
                variants=variants, shape_hint="the output is (..., out_features): x @ self.weight.T + self.bias",
            )  # fmt: skip
            _check_linear_gradients(ex, learner, reference, got, expected, case)
    return f"correct on {len(settings)} cases (several sizes, with and without bias, float32 and float64, gradients)"


def _linear_forward_error(error: Exception) -> str:
    if "NoneType" in str(error):
        return "with bias=False, self.bias is None: add the bias only when there is one"
    if "cannot be multiplied" in str(error) or "size mismatch" in str(error) or "must match" in str(error):
        return "self.weight is (out_features, in_features): multiply x by its transpose, x @ self.weight.T"
    return "read the error message; forward computes x @ self.weight.T + self.bias"


def _check_linear_parameters(ex, learner, in_features, out_features, bias, case):
    parameters = dict(learner.named_parameters())
    for name in ("weight", "bias") if bias else ("weight",):
        if name not in parameters:
            value = getattr(learner, name, None)
            if isinstance(value, torch.Tensor):
                ex.fail(f"self.{name} is a plain tensor, not a parameter", _PARAMETER_HINT, case)
            ex.fail(
                f"no parameter named {name!r} (your module has: {', '.join(parameters) or 'no parameters'})",
                "name the parameters like nn.Linear does, self.weight and self.bias, so the checker (and "
                "load_state_dict) can find them",
                case,
            )
    if not bias and "bias" in parameters:
        ex.fail("bias=False, but the module has a bias parameter", "with bias=False create no bias: set "
                "self.bias = None (and skip adding it in forward)", case)  # fmt: skip
    weight = parameters["weight"]
    if tuple(weight.shape) != (out_features, in_features):
        if tuple(weight.shape) == (in_features, out_features):
            hint = ("PyTorch stores the weight (out_features, in_features): one row per output unit; "
                    "then forward multiplies by its transpose, x @ self.weight.T")  # fmt: skip
        else:
            hint = "the weight is (out_features, in_features)"
        ex.fail(f"self.weight is {_shape(weight)}, expected (out_features, in_features) = "
                f"({out_features}, {in_features})", hint, case)  # fmt: skip
    if bias and tuple(parameters["bias"].shape) != (out_features,):
        ex.fail(f"self.bias is {_shape(parameters['bias'])}, expected (out_features,) = ({out_features},)",
                "one bias per output unit: nn.Parameter(torch.zeros(out_features))", case)  # fmt: skip
    if not bool(torch.isfinite(weight).all()) or (weight.numel() > 1 and bool((weight == weight.flatten()[0]).all())):
        ex.fail(
            "the new module's weight is all the same number (or not even finite)",
            "start the weight with small random numbers, e.g. torch.randn(out_features, in_features) / "
            "in_features ** 0.5: with equal weights every output unit computes the same thing and gets the same "
            "gradient (torch.empty leaves whatever was in memory)",
            case,
        )


def _check_linear_gradients(ex, learner, reference, got, expected, case):
    upstream = ex.randn(*expected.shape, dtype=expected.dtype)  # (..., out_features)
    reference.zero_grad()
    (expected * upstream).sum().backward()
    if not got.requires_grad:
        ex.fail("the output is not connected to the parameters (no gradient can flow back)",
                "use self.weight and self.bias themselves in forward: no .data, .detach(), .numpy() or "
                "torch.tensor(...) copies", case)  # fmt: skip
    learner.zero_grad()
    (got * upstream).sum().backward()
    for name, parameter in reference.named_parameters():
        mine = dict(learner.named_parameters())[name].grad
        if mine is None or not _close(mine, parameter.grad, 1e-5):
            ex.fail(f"the gradient of {name} is not right", f"use self.{name} itself in forward (no .data or "
                    ".detach()), exactly as x @ self.weight.T + self.bias", case)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 00.3: one step of gradient descent by hand
# ---------------------------------------------------------------------------------------------

_ZERO_GRAD_HINT = (
    "gradients add up in .grad: the model arrived with gradients left from earlier, and yours were added to "
    "them; call model.zero_grad() before loss.backward()"
)
_REBIND_HINT = (
    "the parameters did not change: p = p - lr * p.grad makes a new tensor and only rebinds the name p; "
    "update each parameter in place, p -= lr * p.grad, inside `with torch.no_grad():`"
)
_WIPED_HINT = (
    "the parameters did not change and the gradients are gone: zero_grad() after backward() wipes the "
    "gradients you just computed; clear them before loss.backward(), update after it"
)


def _step_error_hint(error: Exception) -> str:
    text = str(error)
    if "leaf Variable that requires grad" in text or "in-place operation" in text:
        return ("PyTorch refuses to record an in-place change of a parameter: do the update inside "
                "`with torch.no_grad():`")  # fmt: skip
    if "does not require grad" in text:
        return ("the loss has no gradient: compute the forward pass and the loss outside torch.no_grad(); "
                "only the update goes inside it")  # fmt: skip
    if "NoneType" in text:
        return "p.grad is None until loss.backward() has run: call backward before the update"
    if "backward through the graph a second time" in text:
        return "call loss.backward() once per step, on a loss computed in this call"
    return "read the error message; the steps are: forward, loss, zero_grad, backward, update under no_grad"


def _flat_parameters(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])  # (n_parameters,)


def _flat_gradients(model: nn.Module) -> torch.Tensor | None:
    grads = [p.grad for p in model.parameters()]
    if any(g is None for g in grads):
        return None
    return torch.cat([g.detach().flatten() for g in grads])  # (n_parameters,)


def _mse(model, x, y, reduction="mean"):
    squared = (model(x) - y) ** 2  # (N, out)
    return squared.mean() if reduction == "mean" else squared.sum()


@_checker("00.3", "gradient_descent_step")
def check_gradient_descent_step(ex, step_fn):
    """00.3: ``gradient_descent_step(model, x, y, lr) -> float``: the mean squared error of ``model(x)`` against
    ``y``; clear the gradients the model arrives with; backward; ``p -= lr * p.grad`` for every parameter without
    recording it (``torch.no_grad()``); return the loss before the update as a Python float."""
    settings = [
        ("nn.Linear(3, 2)", lambda: nn.Linear(3, 2), (8, 3), (8, 2), 0.1, torch.float64),
        ("nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1))",
         lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1)), (6, 4), (6, 1), 0.05, torch.float32),
        ("nn.Linear(2, 2)", lambda: nn.Linear(2, 2), (5, 2), (5, 2), 0.3, torch.float64),
    ]  # fmt: skip
    for description, build, x_shape, y_shape, lr, dtype in settings:
        torch.manual_seed(0)
        model = build().to(dtype)
        _randomize_parameters(ex, model)
        x = ex.randn(*x_shape, dtype=dtype)  # (N, in)
        y = ex.randn(*y_shape, dtype=dtype)  # (N, out)
        case = f"model {description}, x {_shape(x)}, y {_shape(y)}, lr={lr} {_dtype_name(dtype)}, stale .grad"
        learner_model = copy.deepcopy(model)
        for parameter in learner_model.parameters():
            parameter.grad = ex.randn(*parameter.shape, dtype=dtype)  # left over from "earlier work"
        stale = _flat_gradients(learner_model)  # (n_parameters,)
        with torch.enable_grad():
            got = _call(ex, step_fn, learner_model, x, y, lr, case=case, default_dtype=dtype,
                        error_hint=_step_error_hint)  # fmt: skip
            loss = _mse(model, x, y)
            gradient = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])
            summed = _mse(model, x, y, reduction="sum")
            sum_gradient = torch.cat([g.flatten() for g in torch.autograd.grad(summed, list(model.parameters()))])
        before = _flat_parameters(model)  # (n_parameters,)
        expected = before - lr * gradient  # (n_parameters,)
        after = _flat_parameters(learner_model)
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        if _close(after, before, tol) and not _close(expected, before, tol):
            left = _flat_gradients(learner_model)
            wiped = left is None or bool((left == 0).all())
            ex.fail("the parameters are unchanged after the step", _WIPED_HINT if wiped else _REBIND_HINT, case)
        variants = [
            (_ZERO_GRAD_HINT, before - lr * (gradient + stale)),
            ("moved up the gradient: gradient descent subtracts it, p -= lr * p.grad", before + lr * gradient),
            ("forgot the learning rate: the step is lr * p.grad", before - gradient),
            ("the loss must be the mean of the squared errors (.mean()), not their sum", before - lr * sum_gradient),
        ]
        _compare(
            ex, after, expected, case=case, what="parameter vector after the step", variants=variants, tol=tol,
            generic_hint="for every parameter p: p -= lr * p.grad, with p.grad from loss.backward() on this loss",
        )  # fmt: skip
        value = _require_float(ex, got, "returned loss", case)
        if not _close(torch.tensor(value, dtype=torch.float64), loss.detach().double(), tol):
            hint = "return the loss computed before the update, as loss.item()"
            if _close(torch.tensor(value, dtype=torch.float64), summed.detach().double(), tol):
                hint = "the loss is the mean of the squared errors (.mean()), not their sum"
            ex.fail(f"returned loss {value:.6g}, expected {loss.item():.6g}", hint, case)
    return f"correct on {len(settings)} cases (a linear layer and a small MLP, stale gradients cleared, float32 and float64)"
