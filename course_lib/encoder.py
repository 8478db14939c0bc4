"""The encoder: self-attention and a feed-forward network, each wrapped in a residual
connection and layer norm, stacked N times.

Built in lesson 07 (encoder).
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib._validation import (
    as_float,
    require_dtype,
    require_float_tensor,
    require_positive_int,
    require_rank,
    require_size,
)
from course_lib.feedforward import FeedForward
from course_lib.multihead import KVCache, MultiHeadAttention
from course_lib.normalization import LayerNorm


class EncoderLayer(nn.Module):
    """One encoder layer (the left box of the paper's Figure 1).

    ``norm_first=False`` is the paper's post-norm: ``x = norm(x + sublayer(x))``.
    ``norm_first=True`` is pre-norm, used by GPT-2 and most modern models:
    ``x = x + sublayer(norm(x))``. Pre-norm trains more easily in deep stacks.

    ``forward(x, mask=None)``: mask is bool, **True = may attend**, broadcastable to
    (B, n_heads, T, T): ``padding_mask(ids, pad_id)`` for an encoder, ``causal_mask(T)``
    for a decoder-only model (a GPT block is this layer with a causal mask). ``is_causal=True``
    promises that the mask is exactly ``causal_mask(T)``, so the fast path can use PyTorch's
    causal kernel (see ``MultiHeadAttention``).

    While ``course_lib.activations.recording`` runs, ``recorder`` keeps the residual stream:
    ``residual_in``, ``residual_after_self_attn`` and ``residual_out``.

    Shapes:
        x: (B, T, d_model) -> (B, T, d_model)

    Built in lesson 07 (encoder).
    """

    recorder = None  # None, or the function course_lib.activations.recording hands over

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
    ):
        super().__init__()
        d_model = require_positive_int("EncoderLayer", "d_model", d_model)
        dropout = as_float("EncoderLayer", "dropout", dropout, "a probability in [0, 1]", low=0.0, high=1.0)
        self.d_model = d_model
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, activation=activation, dropout=dropout)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _self_attention_block(self, x, mask, kv_cache, is_causal=False):
        attended = self.self_attn(x, x, x, mask=mask, kv_cache=kv_cache, is_causal=is_causal)  # (B, T, d_model)
        return self.dropout1(attended)  # (B, T, d_model)

    def _feed_forward_block(self, x):
        return self.dropout2(self.ff(x))  # (B, T, d_model)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        where = "EncoderLayer.forward"
        expected = f"(B, T, d_model) with d_model={self.d_model}"
        require_rank(where, "x", x, expected, 3)
        require_size(where, "x", x, -1, self.d_model, expected)
        require_float_tensor(where, "x", x, expected)
        require_dtype(where, "x", x, self.norm1.weight.dtype, "the layer's weights")
        if self.norm_first:
            after_attention = x + self._self_attention_block(
                self.norm1(x), mask, kv_cache, is_causal
            )  # (B, T, d_model)
            out = after_attention + self._feed_forward_block(self.norm2(after_attention))  # (B, T, d_model)
        else:
            after_attention = self.norm1(
                x + self._self_attention_block(x, mask, kv_cache, is_causal)
            )  # (B, T, d_model)
            out = self.norm2(after_attention + self._feed_forward_block(after_attention))  # (B, T, d_model)
        if self.recorder is not None:  # the residual stream before and after each sublayer
            self.recorder(residual_in=x, residual_after_self_attn=after_attention, residual_out=out)
        return out


class Encoder(nn.Module):
    """A stack of ``n_layers`` encoder layers, with an optional final layer norm.

    ``final_norm=True`` matches ``nn.Transformer``, which always normalises the
    encoder's output; it is essential with pre-norm (otherwise the last residual
    stream is never normalised) and harmless with post-norm.

    Shapes:
        x: (B, T, d_model) -> (B, T, d_model)

    Built in lesson 07 (encoder).
    """

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        final_norm: bool = True,
        layer_norm_eps: float = 1e-5,
    ):
        super().__init__()
        n_layers = require_positive_int("Encoder", "n_layers", n_layers)
        self.d_model = d_model
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff, dropout, activation, norm_first, layer_norm_eps)
            for _ in range(n_layers)
        )
        self.norm = LayerNorm(d_model, eps=layer_norm_eps) if final_norm else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)  # (B, T, d_model)
        if self.norm is not None:
            x = self.norm(x)  # (B, T, d_model)
        return x
