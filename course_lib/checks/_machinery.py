"""What every checker shares: the exercise record, calling the learner's code safely, comparing
with the reference, and naming the mistake.

Naming the mistake: a checker lists, per case, what common wrong versions would return. When the
learner's result equals exactly one of them, the hint names that mistake. When it equals several
(two mistakes can give the same result on a case), the checker does not pick the first listed:
it keeps every candidate, runs the remaining cases, drops each candidate whose result differs from
the learner's on some case, and names the one left (or, if the cases cannot tell them apart, all of
them).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn

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


class _Pending:
    """A failure whose result matched several known mistakes: the later cases decide which one it was."""

    def __init__(self, message_start: str, candidates: list[str]):
        self.message_start = message_start
        self.candidates = candidates


class _Exercise:
    """One exercise being checked: its id and name, the seeded random numbers of its cases, and what
    the learner's results so far say about the known mistakes."""

    def __init__(self, exercise_id: str, name: str):
        self.id = exercise_id
        self.name = name
        self.generator = torch.Generator().manual_seed(SEED)
        self.ruled_out: set[str] = set()  # hints of mistakes whose result differed from the learner's on a case
        self.pending: _Pending | None = None

    def randn(self, *shape: int, dtype: torch.dtype = torch.float64, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator, dtype=dtype) * scale

    def randint(self, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=self.generator)

    def _start(self, problem: str, case: str | None) -> str:
        where = f" (case: {case})" if case else ""
        return f"{self.id} {self.name}: {problem}{where}."

    def fail(self, problem: str, hint: str, case: str | None = None):
        """Raise CheckFailed with the problem, the case and the hint (an earlier pending failure comes first)."""
        __tracebackhide__ = True
        self.raise_pending()
        raise CheckFailed(f"{self._start(problem, case)}\nHint: {hint}")

    def _narrowed(self) -> list[str]:
        candidates = self.pending.candidates
        return [hint for hint in candidates if hint not in self.ruled_out]

    def pending_error(self) -> CheckFailed | None:
        """The pending failure, naming the candidate mistakes the later cases did not rule out (None if none)."""
        if self.pending is None:
            return None
        narrowed = self._narrowed() or self.pending.candidates
        if len(narrowed) == 1:
            hint = narrowed[0]
        else:
            listed = "; ".join(f"({number}) {hint}" for number, hint in enumerate(narrowed, start=1))
            hint = f"your result is exactly what each of these mistakes gives, so look for one of them: {listed}"
        return CheckFailed(f"{self.pending.message_start}\nHint: {hint}")

    def raise_pending(self) -> None:
        """If a failing case matched several mistakes, fail now, naming those the later cases did not rule out."""
        __tracebackhide__ = True
        error = self.pending_error()
        if error is not None:
            raise error

    def note_results(self, consistent: dict[str, bool]) -> None:
        """Record, for each known mistake on this case, whether it gives the learner's result."""
        __tracebackhide__ = True
        self.ruled_out.update(hint for hint, same in consistent.items() if not same)
        if self.pending is not None and len(self._narrowed()) <= 1:
            self.raise_pending()

    def name_mistake(self, problem: str, candidates: list[str], case: str | None) -> bool:
        """Fail naming the mistake among ``candidates`` (the hints of the mistakes that give the learner's
        wrong result on this case, in the listed order). Returns False when there is no candidate; True
        when several remain and the later cases must decide (the failure is then pending)."""
        __tracebackhide__ = True
        if not candidates:
            return False
        if self.pending is not None:
            self.note_results({})  # fails now if this case has narrowed the pending candidates down to one
            return True
        narrowed = [hint for hint in candidates if hint not in self.ruled_out] or candidates
        if len(narrowed) == 1:
            raise CheckFailed(f"{self._start(problem, case)}\nHint: {narrowed[0]}")
        self.pending = _Pending(self._start(problem, case), narrowed)
        return True


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
                    ex.raise_pending()
            except CheckFailed:
                raise
            except NotImplementedError:
                pending = ex.pending_error()
                if pending is not None:
                    raise pending from None
                raise CheckFailed(f"{exercise_id} {name}: not implemented yet.\nHint: {NOT_IMPLEMENTED_HINT}") from None
            except Exception:
                pending = ex.pending_error()  # a result that already failed can trip the checker's later steps
                if pending is not None:
                    raise pending from None
                raise
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


ErrorHint = str | Callable[[Exception], str]


def _call(
    ex: _Exercise,
    func,
    *args,
    case: str,
    default_dtype: torch.dtype | None = None,
    error_hint: ErrorHint = "",
    **kwargs,
):
    """Call the learner's code; turn its errors (and changes to its inputs) into a CheckFailed with a hint.

    ``error_hint`` is the hint for an error the learner's code raises, or a function of that error
    returning the hint (so the hint can depend on what went wrong).
    """
    __tracebackhide__ = True
    snapshots = [_snapshot(arg) for arg in args]
    try:
        with _default_dtype(default_dtype or torch.get_default_dtype()):
            result = func(*args, **kwargs)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:
        pending = ex.pending_error()
        if pending is not None:
            raise pending from error
        hint = error_hint(error) if callable(error_hint) else error_hint
        hint = hint or "read the error message, then " + GENERIC_HINT
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
    if not isinstance(got, torch.Tensor) or not isinstance(expected, torch.Tensor) or got.shape != expected.shape:
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


def _results_agree(got, variants, tol: float) -> dict[str, bool]:
    """Per hint: does one of its mistakes give the learner's result on this case? (Mistakes that cannot
    be computed here are left out.)"""
    agree: dict[str, bool] = {}
    for hint, wrong in variants:
        if isinstance(wrong, torch.Tensor):
            agree[hint] = agree.get(hint, False) or _close(got, wrong, tol, equal_nan=True)
    return agree


def _matching_mistakes(got, expected: torch.Tensor, variants, tol: float) -> list[str]:
    """The hints (in the listed order, without repeats) of the mistakes that give exactly the learner's
    result on this case while the right answer differs."""
    hints: list[str] = []
    for hint, wrong in variants:
        if not isinstance(wrong, torch.Tensor) or hint in hints:
            continue
        if _close(got, wrong, tol, equal_nan=True) and not _close(wrong, expected, tol, equal_nan=True):
            hints.append(hint)
    return hints


def _name_tensor_mistake(ex: _Exercise, got, expected, variants, tol: float, problem: str, case: str) -> bool:
    """Record which mistakes agree with the learner's result; on a wrong result, fail naming the matching
    mistake (True: several match, the later cases decide; False: none matches)."""
    __tracebackhide__ = True
    ex.note_results(_results_agree(got, variants, tol))
    if _close(got, expected, tol):
        return False
    return ex.name_mistake(problem, _matching_mistakes(got, expected, variants, tol), case)


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
    the hint names it; if it equals several, the later cases decide (see the module docstring).
    ``any_float`` accepts any float dtype (otherwise it must match the reference).
    """
    __tracebackhide__ = True
    _require_tensor(ex, got, what, case, f"of shape {_shape(expected)}")
    _require_dtype(ex, got, expected, what, case)
    tol = _tolerance(got, expected) if tol is None else tol
    if _name_tensor_mistake(ex, got, expected, variants, tol, f"the {what} is not right", case):
        return  # pending: several mistakes give this result, the later cases decide
    if _close(got, expected, tol):
        if expected.is_floating_point() and not any_float and got.dtype != expected.dtype:
            ex.fail(
                f"wrong dtype: the {what} is {_dtype_name(got.dtype)} but should be {_dtype_name(expected.dtype)} "
                "like the inputs",
                "create new tensors with dtype=x.dtype (and device=x.device) instead of a fixed dtype",
                case,
            )
        return
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


def _require_int(ex: _Exercise, value, what: str, case: str) -> int:
    """An exercise whose text asks for an ``int``: a float, a tensor or a bool fails with a hint."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, torch.Tensor):
        hint = "return a Python int: convert a one-element tensor with int(...) or .item()"
    elif isinstance(value, float):
        hint = "return an int, not a float: use // rather than / (or wrap the count in int(...))"
    else:
        hint = "return a Python int"
    shown = f"{value!r}" if isinstance(value, numbers.Number) else type(value).__name__
    ex.fail(f"the {what} must be an int, got {shown}", hint, case)
    return 0  # not reached


def _require_float(ex: _Exercise, value, what: str, case: str) -> float:
    """An exercise whose text asks for Python floats: a tensor (even of one element) or an int fails."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            ex.fail(
                f"the {what} must be one number, got a tensor of shape {_shape(value)}",
                "reduce it to a single value (e.g. .max()) and convert it with .item()",
                case,
            )
        ex.fail(
            f"the {what} must be a Python float, got a one-element tensor",
            "convert it with .item() (a tensor is not a float)",
            case,
        )
    if not isinstance(value, float):
        ex.fail(f"the {what} must be a Python float, got {type(value).__name__}", "return float values (.item())", case)
    return float(value)


def _numbers_equal(a: float, b: float, rel: float) -> bool:
    return a == b if rel == 0 else math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def _compare_number(
    ex: _Exercise, got: float, expected: float, variants, *, problem: str, generic_hint: str, case: str,
    rel: float = 1e-6,
) -> None:  # fmt: skip
    """Compare a number with the reference; ``variants`` are ``(hint, wrong_number)`` as in ``_compare``
    (``rel=0`` asks for exact equality, for counts)."""
    __tracebackhide__ = True
    agree: dict[str, bool] = {}
    for hint, wrong in variants:
        agree[hint] = agree.get(hint, False) or _numbers_equal(got, wrong, rel)
    ex.note_results(agree)
    if _numbers_equal(got, expected, rel):
        return
    candidates: list[str] = []
    for hint, wrong in variants:
        if hint not in candidates and _numbers_equal(got, wrong, rel) and not _numbers_equal(expected, wrong, rel):
            candidates.append(hint)
    if ex.name_mistake(problem, candidates, case):
        return
    ex.fail(problem, generic_hint, case)


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


def _residual(x, sublayer, norm, *, norm_first: bool, residual: bool = True, add_normalised: bool = False,
              norm_sublayer: bool = False):  # fmt: skip
    """One sublayer with its residual connection and layer norm, and the usual ways to get it wrong.

    ``norm_sublayer``: the post-norm written as ``x + norm(sublayer(x))`` (the norm on the branch, not the sum).
    """
    if norm_sublayer:
        return x + norm(sublayer(x))  # (B, T, d_model)
    if norm_first:
        normalised = norm(x)  # (B, T, d_model)
        out = sublayer(normalised)  # (B, T, d_model)
        if not residual:
            return out
        return (normalised if add_normalised else x) + out  # (B, T, d_model)
    out = sublayer(x)  # (B, T, d_model)
    return norm(x + out) if residual else norm(out)  # (B, T, d_model)


# ---------------------------------------------------------------------------------------------
# Dropout: a seeded run is one possible draw; any draw that drops entries in the right place passes
# ---------------------------------------------------------------------------------------------


def _linear_input(layer: nn.Linear, output: torch.Tensor, tol: float = 1e-6) -> torch.Tensor | None:
    """The input that gives ``output`` through ``layer`` (a tall or square weight), or None when no input does."""
    weight = layer.weight.double()  # (out, in)
    if weight.shape[0] < weight.shape[1]:
        return None
    target = output.double() - (layer.bias.double() if layer.bias is not None else 0.0)  # (..., out)
    flat = target.reshape(-1, weight.shape[0]).T  # (out, N)
    solution = torch.linalg.lstsq(weight, flat).solution  # (in, N)
    if not torch.allclose(weight @ solution, flat, rtol=tol, atol=tol):
        return None
    return solution.T.reshape(*output.shape[:-1], weight.shape[1])  # (..., in)


def _dropout_pattern(got: torch.Tensor | None, kept: torch.Tensor, p: float, tol: float = 1e-6) -> bool:
    """Whether ``got`` is what dropout with rate ``p`` can make of ``kept``: every entry 0 or ``kept / (1 - p)``,
    and at least one non-zero entry dropped."""
    if got is None or got.shape != kept.shape:
        return False
    got, scaled = got.double(), kept.double() / (1.0 - p)
    scale = 1.0 + scaled.abs()
    zero = got.abs() <= tol * scale
    same = (got - scaled).abs() <= tol * scale
    return bool((zero | same).all()) and bool((zero & ~same).any())


def _attention_probabilities(weights: torch.Tensor, heads: torch.Tensor, v: torch.Tensor, tol: float = 1e-6):
    """The (T_q, T_k) matrices ``a`` with ``a @ v == heads`` per batch and head (needs T_k <= d_head), or None."""
    solution = torch.linalg.lstsq(v.double().transpose(-2, -1), heads.double().transpose(-2, -1)).solution
    found = solution.transpose(-2, -1)  # (..., T_q, T_k)
    if found.shape != weights.shape or not torch.allclose(found @ v.double(), heads.double(), rtol=tol, atol=tol):
        return None
    return found
