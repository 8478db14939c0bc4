"""Input checks shared by every public function of course_lib.

Each check raises a ``ValueError`` that names the function, the argument, the
expected shape (in the letters the course uses) and the actual shape, so a learner
sees at once what went wrong instead of a stack of matmul errors.
"""

from __future__ import annotations

import torch


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


def require_positive_int(where: str, name: str, value) -> None:
    """Raise unless ``value`` is an int greater than zero."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")


def require_bool_mask(where: str, name: str, mask, expected: str) -> None:
    """Raise unless ``mask`` is a boolean tensor (True = may attend)."""
    require_tensor(where, name, mask)
    if mask.dtype != torch.bool:
        raise ValueError(
            f"{where}: {name} must be a bool tensor {expected} with True = may attend, "
            f"got dtype {mask.dtype} with shape {shape_text(mask)}; "
            "convert with mask.bool() or build it with course_lib.masks"
        )


def require_broadcastable(where: str, name: str, mask, target_shape, expected: str) -> None:
    """Raise unless ``mask`` broadcasts to ``target_shape``."""
    try:
        torch.broadcast_shapes(mask.shape, torch.Size(target_shape))
    except RuntimeError:
        target = "(" + ", ".join(str(s) for s in target_shape) + ")"
        raise ValueError(f"{where}: {name} must broadcast to {expected} = {target}, got {shape_text(mask)}") from None


def require_choice(where: str, name: str, value, choices) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{where}: {name} must be one of {sorted(choices)}, got {value!r}")
