"""The decoder: masked self-attention, cross-attention to the encoder's output, and a
feed-forward network, each with a residual connection and layer norm.

Built in lesson 08 (decoder).
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
    shape_text,
)
from course_lib.feedforward import FeedForward
from course_lib.multihead import KVCache, MultiHeadAttention
from course_lib.normalization import LayerNorm


class DecoderLayerCache:
    """The two caches of one decoder layer: growing self-attention keys/values and the
    fixed keys/values of the encoder memory. Built in lesson 09."""

    def __init__(self):
        self.self_attn = KVCache(static=False)
        self.cross_attn = KVCache(static=True)


class DecoderLayer(nn.Module):
    """One decoder layer (the right box of the paper's Figure 1).

    ``forward(x, memory, self_mask=None, memory_mask=None)``:
        * ``self_mask``: bool, **True = may attend**, broadcastable to (B, n_heads, T, T);
          normally ``causal_mask(T)``, combined with the target's padding mask.
        * ``memory_mask``: bool, broadcastable to (B, n_heads, T, S); normally the
          source's ``padding_mask``.
        * ``self_is_causal=True`` promises that ``self_mask`` is exactly ``causal_mask(T)``, so
          the fast path can use PyTorch's causal kernel (see ``MultiHeadAttention``).

    Shapes:
        x: (B, T, d_model), memory: (B, S, d_model) -> (B, T, d_model)
        self_attn.attention_weights: (B, n_heads, T, T)
        cross_attn.attention_weights: (B, n_heads, T, S)

    While ``course_lib.activations.recording`` runs, ``recorder`` keeps the residual stream:
    ``residual_in``, ``residual_after_self_attn``, ``residual_after_cross_attn`` and ``residual_out``.

    Built in lesson 08 (decoder).
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
        d_model = require_positive_int("DecoderLayer", "d_model", d_model)
        dropout = as_float("DecoderLayer", "dropout", dropout, "a probability in [0, 1]", low=0.0, high=1.0)
        self.d_model = d_model
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, activation=activation, dropout=dropout)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def _self_attention_block(self, x, mask, cache, is_causal=False):
        attended = self.self_attn(x, x, x, mask=mask, kv_cache=cache, is_causal=is_causal)  # (B, T, d_model)
        return self.dropout1(attended)  # (B, T, d_model)

    def _cross_attention_block(self, x, memory, mask, cache):
        return self.dropout2(self.cross_attn(x, memory, memory, mask=mask, kv_cache=cache))  # (B, T, d_model)

    def _feed_forward_block(self, x):
        return self.dropout3(self.ff(x))  # (B, T, d_model)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        self_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: DecoderLayerCache | None = None,
        self_is_causal: bool = False,
    ) -> torch.Tensor:
        where = "DecoderLayer.forward"
        expected = f"(B, T, d_model) with d_model={self.d_model}"
        require_rank(where, "x", x, expected, 3)
        require_size(where, "x", x, -1, self.d_model, expected)
        require_rank(where, "memory", memory, f"(B, S, d_model) with d_model={self.d_model}", 3)
        require_size(where, "memory", memory, -1, self.d_model, f"(B, S, d_model) with d_model={self.d_model}")
        require_float_tensor(where, "x", x, expected)
        require_dtype(where, "x", x, self.norm1.weight.dtype, "the layer's weights")
        require_dtype(where, "memory", memory, self.norm1.weight.dtype, "the layer's weights")
        if memory.shape[0] != x.shape[0]:
            raise ValueError(
                f"{where}: x and memory must share B, got {shape_text(x)} and {shape_text(memory)}; "
                "each target sequence reads the encoder output of its own source"
            )
        if cache is not None and not isinstance(cache, DecoderLayerCache):
            raise ValueError(f"{where}: cache must be a DecoderLayerCache or None, got {type(cache).__name__}")
        self_cache = cache.self_attn if cache is not None else None
        cross_cache = cache.cross_attn if cache is not None else None
        if self.norm_first:
            after_self = x + self._self_attention_block(
                self.norm1(x), self_mask, self_cache, self_is_causal
            )  # (B, T, d_model)
            after_cross = after_self + self._cross_attention_block(
                self.norm2(after_self), memory, memory_mask, cross_cache
            )  # (B, T, d_model)
            out = after_cross + self._feed_forward_block(self.norm3(after_cross))  # (B, T, d_model)
        else:
            after_self = self.norm1(
                x + self._self_attention_block(x, self_mask, self_cache, self_is_causal)
            )  # (B, T, d_model)
            after_cross = self.norm2(
                after_self + self._cross_attention_block(after_self, memory, memory_mask, cross_cache)
            )  # (B, T, d_model)
            out = self.norm3(after_cross + self._feed_forward_block(after_cross))  # (B, T, d_model)
        if self.recorder is not None:  # the residual stream before and after each sublayer
            self.recorder(
                residual_in=x,
                residual_after_self_attn=after_self,
                residual_after_cross_attn=after_cross,
                residual_out=out,
            )
        return out


class Decoder(nn.Module):
    """A stack of ``n_layers`` decoder layers, with an optional final layer norm
    (``final_norm=True`` matches ``nn.Transformer``).

    Shapes:
        x: (B, T, d_model), memory: (B, S, d_model) -> (B, T, d_model)

    Built in lesson 08 (decoder).
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
        n_layers = require_positive_int("Decoder", "n_layers", n_layers)
        self.d_model = d_model
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, n_heads, d_ff, dropout, activation, norm_first, layer_norm_eps)
            for _ in range(n_layers)
        )
        self.norm = LayerNorm(d_model, eps=layer_norm_eps) if final_norm else None

    def new_cache(self) -> list[DecoderLayerCache]:
        """One empty cache per layer, for incremental decoding."""
        return [DecoderLayerCache() for _ in self.layers]

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        self_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: list[DecoderLayerCache] | None = None,
        self_is_causal: bool = False,
    ) -> torch.Tensor:
        if cache is not None and not isinstance(cache, list | tuple):
            raise ValueError(
                f"Decoder.forward: cache must be a list of {len(self.layers)} layer caches from new_cache(), "
                f"got {type(cache).__name__}"
            )
        if cache is not None and len(cache) != len(self.layers):
            raise ValueError(f"Decoder.forward: cache must hold {len(self.layers)} layer caches, got {len(cache)}")
        for index, layer in enumerate(self.layers):
            layer_cache = cache[index] if cache is not None else None
            x = layer(x, memory, self_mask, memory_mask, layer_cache, self_is_causal)  # (B, T, d_model)
        if self.norm is not None:
            x = self.norm(x)  # (B, T, d_model)
        return x
