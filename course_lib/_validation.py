"""Input checks shared by every public function of course_lib.

Each check raises a ``ValueError`` that names the function, the argument, the
expected shape (in the letters the course uses) and the actual shape, so a learner
sees at once what went wrong instead of a stack of matmul errors.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch

INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
"""Token ids and class targets may use any of these (bool is not an id)."""

HALF_PRECISION = (torch.float16, torch.bfloat16)


def shape_text(tensor: torch.Tensor) -> str:
    """Render a tensor's shape as ``(2, 10, 32)``."""
    return "(" + ", ".join(str(size) for size in tensor.shape) + ")"


def require_tensor(where: str, name: str, value) -> None:
    """Raise if ``value`` is not a torch.Tensor."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{where}: {name} must be a torch.Tensor, got {type(value).__name__}")


def require_rank(where: str, name: str, tensor, expected: str, ranks, hint: str = "") -> None:
    """Raise unless ``tensor`` has one of the ranks in ``ranks`` (an int or a tuple of ints)."""
    require_tensor(where, name, tensor)
    allowed = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if tensor.dim() not in allowed:
        message = f"{where}: {name} must be {expected}, got {shape_text(tensor)}"
        raise ValueError(message + (f"; {hint}" if hint else ""))


def require_min_rank(where: str, name: str, tensor, expected: str, min_rank: int) -> None:
    """Raise unless ``tensor`` has at least ``min_rank`` dimensions."""
    require_tensor(where, name, tensor)
    if tensor.dim() < min_rank:
        raise ValueError(f"{where}: {name} must be {expected}, got {shape_text(tensor)}")


def require_size(where: str, name: str, tensor, dim: int, size: int, expected: str, hint: str = "") -> None:
    """Raise unless ``tensor.shape[dim] == size``."""
    if tensor.shape[dim] != size:
        message = f"{where}: {name} must be {expected}, got {shape_text(tensor)}"
        raise ValueError(message + (f"; {hint}" if hint else ""))


def _integer_or_none(value) -> int | None:
    """``value`` as a Python int if it is an integer (int, numpy integer, 0-d integer tensor), else None.

    bool (``True``, ``numpy.bool_``, a bool tensor) is not an integer here: ``steps=True`` is a mistake.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.dtype not in INTEGER_DTYPES:
            return None
        return int(value)
    try:
        return operator.index(value)  # int, numpy integers; numpy.bool_ refuses
    except TypeError:
        return None


def as_int(where: str, name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as a Python int, or raise unless it is an integer in [minimum, maximum].

    Accepts Python ints, numpy integers and 0-d integer tensors; refuses bools and floats.
    """
    number = _integer_or_none(value)
    if number is None or (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        if minimum is not None and maximum is not None:
            expected = f"an int in [{minimum}, {maximum}]"
        elif minimum is not None:
            expected = f"an int >= {minimum}"
        elif maximum is not None:
            expected = f"an int <= {maximum}"
        else:
            expected = "an int"
        raise ValueError(f"{where}: {name} must be {expected}, got {value!r}")
    return number


def require_positive_int(where: str, name: str, value) -> int:
    """Raise unless ``value`` is an int greater than zero; return it as a Python int.

    numpy integers and 0-d integer tensors count as ints; bools do not.
    """
    number = _integer_or_none(value)
    if number is None or number <= 0:
        raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")
    return number


def as_float(
    where: str,
    name: str,
    value,
    expected: str = "a finite number",
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """Return ``value`` as a Python float, or raise unless it is a real number in the given range.

    Accepts ints, floats, numpy numbers and 0-d real tensors; refuses bools, NaN, and (unless
    ``allow_inf``) infinities. ``expected`` is the wording used in the error, e.g. ">= 0".
    """
    number = None
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 and value.dtype != torch.bool and not value.is_complex():
            number = float(value)
    elif not isinstance(value, bool) and isinstance(value, numbers.Real):
        number = float(value)
    ok = number is not None and not math.isnan(number) and (allow_inf or math.isfinite(number))
    if ok and low is not None:
        ok = number > low if low_open else number >= low
    if ok and high is not None:
        ok = number < high if high_open else number <= high
    if not ok:
        raise ValueError(f"{where}: {name} must be {expected}, got {value!r}")
    return number


def require_float_tensor(where: str, name: str, tensor, expected: str) -> None:
    """Raise unless ``tensor`` is a floating-point tensor."""
    require_tensor(where, name, tensor)
    if not tensor.is_floating_point():
        raise ValueError(
            f"{where}: {name} must be a floating-point tensor {expected}, got dtype {tensor.dtype} "
            f"with shape {shape_text(tensor)}; convert with {name}.float()"
        )


def require_dtype(where: str, name: str, tensor: torch.Tensor, dtype: torch.dtype, owner: str) -> None:
    """Raise unless ``tensor.dtype == dtype`` (the dtype of ``owner``, e.g. "the module's weights")."""
    if tensor.dtype != dtype:
        raise ValueError(
            f"{where}: {name} must have the dtype of {owner} ({dtype}), got {tensor.dtype}; "
            f"convert the input ({name}.to({dtype})) or the module (module.to({tensor.dtype}))"
        )


def require_token_ids(where: str, name: str, ids: torch.Tensor, expected: str = "(B, T)") -> None:
    """Raise unless ``ids`` has an integer dtype (uint8, int8, int16, int32 or int64)."""
    require_tensor(where, name, ids)
    if ids.dtype not in INTEGER_DTYPES:
        raise ValueError(
            f"{where}: {name} must be integer token ids {expected}, got dtype {ids.dtype}; "
            "token ids are int64 (torch.long), e.g. ids.long()"
        )


def require_bool_mask(where: str, name: str, mask, expected: str) -> None:
    """Raise unless ``mask`` is a boolean tensor (True = may attend)."""
    require_tensor(where, name, mask)
    if mask.dtype != torch.bool:
        raise ValueError(
            f"{where}: {name} must be a bool tensor {expected} with True = may attend, "
            f"got dtype {mask.dtype} with shape {shape_text(mask)}; "
            "convert with mask.bool() or build it with course_lib.masks"
        )


def broadcast_shape(*shapes) -> tuple[int, ...] | None:
    """The shape ``shapes`` broadcast to together (PyTorch's rules), or None if they do not.

    Plain Python on tuples: checking costs microseconds, not a trip through ``torch.broadcast_shapes``.
    """
    result: list[int] = []
    for shape in shapes:
        shape = tuple(shape)
        if len(shape) > len(result):
            result = [1] * (len(shape) - len(result)) + result
        offset = len(result) - len(shape)
        for index, size in enumerate(shape):
            current = result[offset + index]
            if size != current:
                if current == 1:
                    result[offset + index] = size
                elif size != 1:
                    return None
    return tuple(result)


def require_broadcastable(where: str, name: str, mask, target_shape, expected: str) -> None:
    """Raise unless ``mask`` broadcasts *to* ``target_shape``: broadcasting must not grow the target.

    (A (3, 1, 5, 5) mask broadcasts *with* (2, 5, 5) scores, into (3, 2, 5, 5), but not *to* them.)
    """
    target_shape = tuple(target_shape)
    if broadcast_shape(mask.shape, target_shape) != target_shape:
        target = "(" + ", ".join(str(s) for s in target_shape) + ")"
        raise ValueError(f"{where}: {name} must broadcast to {expected} = {target}, got {shape_text(mask)}")


def require_choice(where: str, name: str, value, choices) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    try:
        known = value in choices
    except TypeError:  # an unhashable value (a list, a dict) is never one of them
        known = False
    if not known:
        raise ValueError(f"{where}: {name} must be one of {sorted(choices)}, got {value!r}")
