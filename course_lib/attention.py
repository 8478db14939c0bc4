"""Scaled dot-product attention, the heart of the Transformer.

Built in lesson 03 (self-attention); the mask argument is explained in lesson 04.
"""

from __future__ import annotations

import math

import torch

from course_lib._validation import (
    HALF_PRECISION,
    broadcast_shape,
    require_bool_mask,
    require_broadcastable,
    require_float_tensor,
    require_min_rank,
    require_size,
    shape_text,
)
from course_lib.masks import mask_to_additive


def check_attention_mask(
    where: str, mask: torch.Tensor, scores_shape, device: torch.device, expected: str = "(..., T_q, T_k)"
) -> None:
    """Raise unless ``mask`` is a bool tensor (True = may attend) that broadcasts *to* the scores' shape.

    ``MultiHeadAttention`` calls it before choosing its readable or fused path, so both
    paths accept and refuse exactly the same masks.

    Built in lesson 04 (masking).
    """
    require_bool_mask(where, "mask", mask, f"broadcastable to {expected}")
    require_broadcastable(where, "mask", mask, scores_shape, expected)
    if mask.device != device:
        raise ValueError(
            f"{where}: mask is on {mask.device} but the scores are on {device}; move it with mask.to({str(device)!r})"
        )


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    stages: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(d_k)) V: check the inputs, then compute it step by step (``attend``).

    Args:
        q: queries (..., T_q, d_k)
        k: keys (..., T_k, d_k)
        v: values (..., T_k, d_v)
        mask: optional bool tensor broadcastable to (..., T_q, T_k);
            **True = may attend**, False = blocked (its score becomes -inf).
        stages: optional dict that receives every step, each (..., T_q, T_k): ``"scores"``
            (Q K^T), ``"scaled"``, ``"masked"`` and ``"weights"``; ``course_lib.activations``
            uses it to record what attention computed.

    Returns:
        output (..., T_q, d_v) and weights (..., T_q, T_k).
        A query row whose keys are all blocked gets zero weights and a zero output
        (never NaN).

    Shapes:
        q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v)
        -> output (..., T_q, d_v), weights (..., T_q, T_k)

    Built in lesson 03 (self-attention).
    """
    check_attention_inputs("scaled_dot_product_attention", q, k, v, mask)
    return attend(q, k, v, mask, stages)


def check_attention_inputs(
    where: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> None:
    """Raise a ValueError naming ``where`` unless q, k, v (and the mask) fit together.

    Built in lesson 03 (self-attention).
    """
    require_min_rank(where, "q", q, "(..., T_q, d_k)", 2)
    require_min_rank(where, "k", k, "(..., T_k, d_k)", 2)
    require_min_rank(where, "v", v, "(..., T_k, d_v)", 2)
    require_float_tensor(where, "q", q, "(..., T_q, d_k)")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(
            f"{where}: q, k and v must share one floating-point dtype, got {q.dtype}, {k.dtype} and {v.dtype}; "
            "convert them with .to(q.dtype)"
        )
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"{where}: q, k and v must be on one device, got {q.device}, {k.device} and {v.device}")
    d_k = q.shape[-1]
    if d_k == 0:
        raise ValueError(f"{where}: q must be (..., T_q, d_k) with d_k >= 1, got {shape_text(q)}")
    require_size(where, "k", k, -1, d_k, f"(..., T_k, d_k) with d_k={d_k} like q {shape_text(q)}")
    T_k = k.shape[-2]
    require_size(where, "v", v, -2, T_k, f"(..., T_k, d_v) with T_k={T_k} like k {shape_text(k)}")
    batch = broadcast_shape(q.shape[:-2], k.shape[:-2])  # the "..." of the scores
    if batch is None or broadcast_shape(batch, v.shape[:-2]) is None:
        raise ValueError(
            f"{where}: the leading (batch, head) dimensions of q {shape_text(q)}, k {shape_text(k)} and "
            f"v {shape_text(v)} must match (or be 1 to broadcast); did you mix up two batches?"
        )
    if mask is not None:
        check_attention_mask(where, mask, (*batch, q.shape[-2], T_k), q.device)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, stages: dict | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The computation of ``scaled_dot_product_attention``, on inputs already checked.

    ``MultiHeadAttention`` and ``GroupedQueryAttention`` call it directly: they check their
    own inputs and the mask, and build q, k and v themselves, so checking again here would
    only cost time (about 0.1 ms of 1.8 ms a call, forward and backward, for 12 sequences of 64
    tokens and 4 heads of 32).

    Shapes:
        q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v)
        -> output (..., T_q, d_v), weights (..., T_q, T_k)

    Built in lesson 03 (self-attention).
    """
    d_k = q.shape[-1]
    dtype = q.dtype
    if dtype in HALF_PRECISION:
        # float16 overflows above 65504: compute the scores and the softmax in float32, as PyTorch's kernels do.
        q, k, v = q.float(), k.float(), v.float()

    scores = q @ k.transpose(-2, -1)  # (..., T_q, T_k)
    scaled = scores / math.sqrt(d_k)  # (..., T_q, T_k)

    masked = scaled
    if mask is not None:
        # Blocked keys get -inf: add 0 where a key may be seen and -inf where it is blocked (lesson 04). The
        # scores are exactly those of scaled.masked_fill(~mask, -inf), but training is cheaper: an addition passes
        # its gradient through untouched, where masked_fill's backward pass writes a copy with the blocked part zeroed.
        masked = scaled + mask_to_additive(mask, scaled.dtype)  # (..., T_q, T_k)

    if mask is None or mask.any(dim=-1).all():  # every query may see some key (always so with a causal mask)
        weights = torch.softmax(masked, dim=-1)  # (..., T_q, T_k), each row sums to 1
    else:
        # A query whose keys are all blocked has a row of -inf, and softmax gives 0/0 = NaN there (lesson 04),
        # in the weights and in every gradient. Such a row gets zero weights, and so a zero output, instead:
        # its -inf become 0 before the softmax (so nothing is NaN), and the row is zeroed after it.
        has_key = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1): False for a query with nothing to attend to
        weights = torch.softmax(masked.masked_fill(~has_key, 0.0), dim=-1)  # (..., T_q, T_k)
        weights = weights.masked_fill(~has_key, 0.0)  # (..., T_q, T_k): the empty rows are zeros

    output = weights @ v  # (..., T_q, d_v)
    if stages is not None:
        stages.update(scores=scores, scaled=scaled, masked=masked, weights=weights)
    return output.to(dtype), weights.to(dtype)
