"""Boolean attention masks. Convention everywhere in the course: **True = may attend**.

That is the convention of ``torch.nn.functional.scaled_dot_product_attention``.
(``nn.MultiheadAttention``'s ``attn_mask`` and ``key_padding_mask`` use the opposite
one, True = blocked; flip them with ``~mask`` when you pass ours to PyTorch.)

Built in lesson 04 (masking).
"""

from __future__ import annotations

import functools

import torch

from course_lib._validation import (
    INTEGER_DTYPES,
    as_int,
    broadcast_shape,
    require_positive_int,
    require_rank,
    shape_text,
)


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Position i may attend to positions 0..i, never to the future.

    Shapes:
        returns: bool (T, T), True on and below the diagonal

    Built in lesson 04 (masking).
    """
    T = require_positive_int("causal_mask", "T", T)
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T)


@functools.lru_cache(maxsize=8)
def shared_causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``causal_mask(T)``, built once per (T, device) and then shared by every call.

    A model asks for the same mask at every forward pass; the models slice the rows and
    columns they need out of it. The tensor is shared: never modify it in place.

    Shapes:
        returns: bool (T, T), True on and below the diagonal

    Built in lesson 04 (masking).
    """
    return causal_mask(T, device=device)  # (T, T)


def padding_mask(token_ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """True at real tokens, False at padding, shaped to broadcast over heads and queries.

    Shapes:
        token_ids: (B, T)
        returns: bool (B, 1, 1, T), broadcastable to (B, n_heads, T_q, T)

    Built in lesson 04 (masking).
    """
    require_rank(
        "padding_mask", "token_ids", token_ids, "(B, T)", 2, hint="add a batch dimension with ids.unsqueeze(0)"
    )
    if token_ids.dtype not in INTEGER_DTYPES:
        raise ValueError(f"padding_mask: token_ids must be integer ids (B, T), got dtype {token_ids.dtype}")
    pad_id = as_int("padding_mask", "pad_id", pad_id)
    info = torch.iinfo(token_ids.dtype)
    if not info.min <= pad_id <= info.max:  # no id of this dtype can equal it: nothing is padding
        return torch.ones_like(token_ids, dtype=torch.bool)[:, None, None, :]  # (B, 1, 1, T)
    is_real = token_ids != pad_id  # (B, T)
    return is_real[:, None, None, :]  # (B, 1, 1, T)


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Logical AND of boolean masks (None entries are skipped): allowed only where all allow.

    Shapes:
        each mask broadcastable to a common shape -> that broadcast shape

    Built in lesson 04 (masking).
    """
    present = [m for m in masks if m is not None]
    if not present:
        return None
    for index, mask in enumerate(present):
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"combine_masks: mask {index} must be a bool tensor (True = may attend), got {got}")
    if broadcast_shape(*(mask.shape for mask in present)) is None:
        shapes = ", ".join(shape_text(mask) for mask in present)
        raise ValueError(
            f"combine_masks: the masks must broadcast to one common shape, got {shapes}; "
            "each dimension must be equal or 1 (e.g. causal (T, T) with padding (B, 1, 1, T))"
        )
    if len({mask.device for mask in present}) > 1:
        raise ValueError(f"combine_masks: the masks must be on one device, got {[str(m.device) for m in present]}")
    combined = present[0]
    for mask in present[1:]:
        combined = combined & mask  # broadcast shape
    return combined


def mask_to_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Turn a bool mask into the additive form: 0 where allowed, -inf where blocked.

    Shapes:
        mask: any -> same shape, float

    Built in lesson 04 (masking).
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError("mask_to_additive: mask must be a bool tensor (True = may attend)")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"mask_to_additive: dtype must be a floating-point dtype (it holds -inf), got {dtype!r}")
    additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return additive.masked_fill(~mask, float("-inf"))
