"""Scaled dot-product attention, the heart of the Transformer.

Built in lesson 03 (self-attention); the mask argument is explained in lesson 04.
"""

from __future__ import annotations

import math

import torch

from course_lib._validation import (
    require_bool_mask,
    require_broadcastable,
    require_min_rank,
    require_size,
    shape_text,
)


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(d_k)) V, one step at a time.

    Args:
        q: queries (..., T_q, d_k)
        k: keys (..., T_k, d_k)
        v: values (..., T_k, d_v)
        mask: optional bool tensor broadcastable to (..., T_q, T_k);
            **True = may attend**, False = blocked (its score becomes -inf).

    Returns:
        output (..., T_q, d_v) and weights (..., T_q, T_k).
        A query row whose keys are all blocked gets zero weights and a zero output
        (never NaN).

    Shapes:
        q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v)
        -> output (..., T_q, d_v), weights (..., T_q, T_k)

    Built in lesson 03 (self-attention).
    """
    where = "scaled_dot_product_attention"
    require_min_rank(where, "q", q, "(..., T_q, d_k)", 2)
    require_min_rank(where, "k", k, "(..., T_k, d_k)", 2)
    require_min_rank(where, "v", v, "(..., T_k, d_v)", 2)
    d_k = q.shape[-1]
    require_size(where, "k", k, -1, d_k, f"(..., T_k, d_k) with d_k={d_k} like q {shape_text(q)}")
    T_k = k.shape[-2]
    require_size(where, "v", v, -2, T_k, f"(..., T_k, d_v) with T_k={T_k} like k {shape_text(k)}")

    scores = q @ k.transpose(-2, -1)  # (..., T_q, T_k)
    scores = scores / math.sqrt(d_k)  # (..., T_q, T_k)

    if mask is not None:
        require_bool_mask(where, "mask", mask, "broadcastable to (..., T_q, T_k)")
        require_broadcastable(where, "mask", mask, scores.shape, "(..., T_q, T_k)")
        scores = scores.masked_fill(~mask, float("-inf"))  # blocked keys get -inf

    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k), each row sums to 1

    if mask is not None:
        # A row with every key blocked is all -inf, and softmax gives 0/0 = NaN there.
        # Zeroing the blocked entries turns such a row into zeros (other rows are unchanged).
        weights = weights.masked_fill(~mask, 0.0)  # (..., T_q, T_k)

    output = weights @ v  # (..., T_q, d_v)
    return output, weights
