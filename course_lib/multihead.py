"""Multi-head attention: several attention heads side by side.

Built in lesson 05 (multi-head attention). The key/value cache used for fast
generation is explained in lesson 09.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_lib._validation import require_positive_int, require_rank, require_size, shape_text
from course_lib.attention import scaled_dot_product_attention


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Cut the feature dimension into ``n_heads`` slices and move heads before time.

    Shapes:
        x: (B, T, d_model) -> (B, n_heads, T, d_head), d_head = d_model // n_heads

    Built in lesson 05 (multi-head attention).
    """
    where = "split_heads"
    require_rank(where, "x", x, "(B, T, d_model)", 3)
    require_positive_int(where, "n_heads", n_heads)
    B, T, d_model = x.shape
    if d_model % n_heads != 0:
        raise ValueError(f"{where}: d_model={d_model} (x is {shape_text(x)}) is not divisible by n_heads={n_heads}")
    d_head = d_model // n_heads
    x = x.view(B, T, n_heads, d_head)  # (B, T, n_heads, d_head)
    return x.transpose(1, 2)  # (B, n_heads, T, d_head)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Undo ``split_heads``: put time back before heads and concatenate the heads.

    Shapes:
        x: (B, n_heads, T, d_head) -> (B, T, d_model), d_model = n_heads * d_head

    Built in lesson 05 (multi-head attention).
    """
    require_rank("merge_heads", "x", x, "(B, n_heads, T, d_head)", 4)
    B, n_heads, T, d_head = x.shape
    x = x.transpose(1, 2)  # (B, T, n_heads, d_head)
    return x.reshape(B, T, n_heads * d_head)  # (B, T, d_model)


class KVCache:
    """Keys and values one attention layer has already computed.

    During generation each new token only needs its own query; the keys and values
    of earlier tokens never change, so we keep them instead of recomputing them.

    * ``static=False`` (self-attention): every call appends the new keys/values.
    * ``static=True`` (cross-attention): the first call stores the keys/values of the
      encoder memory, later calls reuse them unchanged.

    Shapes:
        keys, values: (B, n_heads, T_past, d_head)

    Built in lesson 09 (output layer and generation).
    """

    def __init__(self, static: bool = False):
        self.static = static
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.keys is None else self.keys.shape[-2]

    def update(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (or append) new keys/values and return all of them."""
        if self.keys is None or self.static:
            self.keys, self.values = keys, values
        else:
            self.keys = torch.cat([self.keys, keys], dim=-2)  # (B, n_heads, T_past + T_new, d_head)
            self.values = torch.cat([self.values, values], dim=-2)  # (B, n_heads, T_past + T_new, d_head)
        return self.keys, self.values


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key, value and output projections.

    Args:
        d_model: model width; must be divisible by ``n_heads``.
        n_heads: number of heads; each works in ``d_head = d_model // n_heads`` dimensions.
        dropout: dropout on the attention weights (training only).
        bias: whether the four linear layers have biases.

    ``forward(query, key, value, mask=None)``: mask is bool, **True = may attend**,
    broadcastable to (B, n_heads, T_q, T_k), e.g. ``causal_mask(T)`` (T, T) or
    ``padding_mask(ids, pad_id)`` (B, 1, 1, T_k). The last attention weights are kept
    on ``.attention_weights`` (before dropout) for plotting.

    ``need_weights`` (default True) chooses the readable path above. Set it to False
    (for a whole model: ``use_fused_attention(model)``) to call PyTorch's fused kernel
    ``F.scaled_dot_product_attention`` instead: the same function, computed without
    materialising the (T_q, T_k) weights, so faster for training; ``.attention_weights``
    is then None. ``tests/test_fast_path.py`` proves the two paths equal.

    Shapes:
        query (B, T_q, d_model), key/value (B, T_k, d_model) -> (B, T_q, d_model)
        attention_weights: (B, n_heads, T_q, T_k)

    Built in lesson 05 (multi-head attention).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        require_positive_int("MultiHeadAttention", "d_model", d_model)
        require_positive_int("MultiHeadAttention", "n_heads", n_heads)
        if d_model % n_heads != 0:
            raise ValueError(
                f"MultiHeadAttention: d_model={d_model} must be divisible by n_heads={n_heads} "
                f"(each head gets d_model // n_heads dimensions)"
            )
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.need_weights = True
        self.attention_weights: torch.Tensor | None = None

    def _check_inputs(self, query, key, value) -> None:
        where = "MultiHeadAttention.forward"
        expected = f"(B, T, d_model) with d_model={self.d_model}"
        for name, tensor in (("query", query), ("key", key), ("value", value)):
            require_rank(where, name, tensor, expected, 3, hint="did you pass the head-split tensor?")
            require_size(where, name, tensor, -1, self.d_model, expected, hint="did you pass the head-split tensor?")
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(
                f"{where}: key and value must share (B, T_k), got {shape_text(key)} and {shape_text(value)}"
            )
        if query.shape[0] != key.shape[0]:
            raise ValueError(f"{where}: query and key must share B, got {shape_text(query)} and {shape_text(key)}")

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        self._check_inputs(query, key, value)

        q = split_heads(self.w_q(query), self.n_heads)  # (B, n_heads, T_q, d_head)
        if kv_cache is not None and kv_cache.static and len(kv_cache) > 0:
            k, v = kv_cache.keys, kv_cache.values  # (B, n_heads, T_k, d_head), computed on the first step
        else:
            k = split_heads(self.w_k(key), self.n_heads)  # (B, n_heads, T_k, d_head)
            v = split_heads(self.w_v(value), self.n_heads)  # (B, n_heads, T_k, d_head)
            if kv_cache is not None:
                k, v = kv_cache.update(k, v)  # (B, n_heads, T_past + T_k, d_head)

        if self.need_weights:
            heads, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, n_heads, T_q, d_head)
            self.attention_weights = weights.detach()  # (B, n_heads, T_q, T_k)
            if self.training and self.dropout.p > 0:
                # Dropout on the weights, then recombine the values (as nn.MultiheadAttention does).
                heads = self.dropout(weights) @ v  # (B, n_heads, T_q, d_head)
        else:
            # The fast path: PyTorch's fused kernel computes the same thing without keeping the weights.
            dropout_p = self.dropout.p if self.training else 0.0
            heads = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p
            )  # (B, n_heads, T_q, d_head)
            self.attention_weights = None

        return self.w_o(merge_heads(heads))  # (B, T_q, d_model)


def use_fused_attention(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every ``MultiHeadAttention`` inside ``model`` to the fused fast path (or back).

    The fused path gives the same outputs and gradients but keeps no attention weights,
    so use it for training and switch it off before plotting attention.

    Built in lesson 09 (output layer and generation): the cost of attention.
    """
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            module.need_weights = not enabled
    return model
