"""A Llama-style decoder-only language model: GPT with the modern parts swapped in.

What changes from the GPT of lesson 09:

* RMSNorm instead of LayerNorm (no mean, no bias);
* rotary positions (RoPE) inside attention instead of a learned position table;
* grouped-query attention: fewer key/value heads than query heads;
* a SwiGLU MLP instead of linear -> GELU -> linear;
* no biases anywhere.

The block is still pre-norm: ``x = x + attention(norm(x))``, then ``x = x + mlp(norm(x))``.
With the same weights it computes what Hugging Face's ``LlamaForCausalLM`` computes
(``tests/test_llama.py``); ``course_lib.pretrained.load_llama`` copies those weights in.

Built in lesson 13 (from GPT-2 to a modern LLM).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from course_lib._validation import require_positive_int, require_rank, shape_text
from course_lib.feedforward import SwiGLU
from course_lib.multihead import GroupedQueryAttention, KVCache
from course_lib.normalization import RMSNorm


@dataclass(frozen=True)
class LlamaConfig:
    """Configuration of a Llama-style model. The defaults make a small model to train.

    Fields:
        vocab_size: V, the number of token ids.
        d_model: model width; ``d_head = d_model // n_heads`` must be even (RoPE).
        n_layers: number of blocks.
        n_heads: query heads per attention layer.
        n_kv_heads: key/value heads per layer; divides ``n_heads`` (== n_heads: multi-head,
            1: multi-query, in between: grouped-query attention).
        d_ff: hidden width of the SwiGLU MLP (Llama uses about 8/3 * d_model).
        context_length: the longest sequence (prompt plus generated tokens) the model accepts.
        rope_base: RoPE's base: pair i turns at ``rope_base ** (-2i / d_head)`` radians per position.
        norm_eps: the eps of every RMSNorm.
        tie_weights: the output layer reuses the token embedding matrix.
        rope_interleaved: RoPE's pair layout (False: Hugging Face's "rotate half"; True: llama.cpp's).

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """

    vocab_size: int
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    d_ff: int = 352
    context_length: int = 256
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    tie_weights: bool = True
    rope_interleaved: bool = False

    def __post_init__(self):
        where = "LlamaConfig"
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "context_length"):
            require_positive_int(where, name, getattr(self, name))
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"{where}: d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(
                f"{where}: n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads} "
                "(each key/value head serves a whole group of query heads)"
            )
        if (self.d_model // self.n_heads) % 2 != 0:
            raise ValueError(
                f"{where}: d_head = d_model // n_heads = {self.d_model // self.n_heads} must be even "
                "(RoPE rotates pairs of dimensions)"
            )
        for name in ("rope_base", "norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{where}: {name} must be a number > 0, got {value!r}")
        for name in ("tie_weights", "rope_interleaved"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{where}: {name} must be True or False, got {getattr(self, name)!r}")

    @property
    def d_head(self) -> int:
        """Width of one attention head: d_model // n_heads."""
        return self.d_model // self.n_heads


class LlamaBlock(nn.Module):
    """One pre-norm Llama block: ``x + self_attn(attn_norm(x))``, then ``x + mlp(mlp_norm(x))``.

    While ``course_lib.activations.recording`` runs, ``recorder`` keeps the residual stream:
    ``residual_in``, ``residual_after_self_attn`` and ``residual_out``.

    Shapes:
        x: (B, T, d_model) -> (B, T, d_model)

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """

    recorder = None  # None, or the function course_lib.activations.recording hands over

    def __init__(self, config: LlamaConfig):
        super().__init__()
        c = config
        self.d_model = c.d_model
        self.attn_norm = RMSNorm(c.d_model, eps=c.norm_eps)
        self.self_attn = GroupedQueryAttention(
            c.d_model, c.n_heads, c.n_kv_heads, bias=False, rope_base=c.rope_base, rope_interleaved=c.rope_interleaved
        )
        self.mlp_norm = RMSNorm(c.d_model, eps=c.norm_eps)
        self.mlp = SwiGLU(c.d_model, c.d_ff, bias=False)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        after_attention = x + self.self_attn(self.attn_norm(x), kv_cache=kv_cache)  # (B, T, d_model)
        out = after_attention + self.mlp(self.mlp_norm(after_attention))  # (B, T, d_model)
        if self.recorder is not None:  # the residual stream before and after each sublayer
            self.recorder(residual_in=x, residual_after_self_attn=after_attention, residual_out=out)
        return out


class Llama(nn.Module):
    """A Llama-style language model: token embedding, ``n_layers`` ``LlamaBlock``s, a final
    RMSNorm and a linear output layer ``lm_head`` (tied to the embedding when
    ``config.tie_weights``). The embedding is not scaled and there is no position table:
    positions enter as rotations inside attention.

    ``forward(token_ids, cache=None)``: without a cache, the whole sequence with a causal
    mask. With ``cache = model.new_cache()``, pass the prompt first and then only the new
    tokens: earlier keys and values come from the cache, and the new tokens continue the
    positions where the cache stops. Logits come in the dtype of the model's weights;
    ``last_token_only=True`` computes them for the last position only (B, 1, V), as generation does.

    While ``course_lib.activations.recording`` runs, ``recorder`` keeps ``token_embeddings``
    and ``logits`` (the blocks and norms record their own tensors).

    Shapes:
        token_ids (B, T) -> logits (B, T, V)

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """

    recorder = None  # None, or the function course_lib.activations.recording hands over

    def __init__(self, config: LlamaConfig):
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise ValueError(f"Llama: config must be a LlamaConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.blocks = nn.ModuleList(LlamaBlock(c) for _ in range(c.n_layers))
        self.final_norm = RMSNorm(c.d_model, eps=c.norm_eps)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.apply(self._init_weights)
        if c.tie_weights:
            self.lm_head.weight = self.token_embedding.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def new_cache(self) -> list[KVCache]:
        """One empty key/value cache per block, for incremental generation."""
        return [KVCache() for _ in self.blocks]

    def _check_inputs(self, token_ids: torch.Tensor, cache: list[KVCache] | None) -> None:
        where = "Llama.forward"
        c = self.config
        require_rank(where, "token_ids", token_ids, "(B, T) token ids", 2, hint="add a batch dimension")
        if token_ids.is_floating_point() or token_ids.is_complex() or token_ids.dtype == torch.bool:
            raise ValueError(f"{where}: token_ids must be integer ids, got dtype {token_ids.dtype}")
        if token_ids.shape[1] == 0:
            raise ValueError(f"{where}: token_ids must hold at least one token, got {shape_text(token_ids)}")
        low, high = int(token_ids.min()), int(token_ids.max())
        if low < 0 or high >= c.vocab_size:
            raise ValueError(
                f"{where}: token ids must lie in [0, V) with V={c.vocab_size}, got values from {low} to {high}"
            )
        T_past = 0
        if cache is not None:
            if not isinstance(cache, list | tuple) or len(cache) != c.n_layers:
                got = f"{len(cache)} entries" if isinstance(cache, list | tuple) else type(cache).__name__
                raise ValueError(
                    f"{where}: cache must be model.new_cache() (one KVCache per block, {c.n_layers}), got {got}"
                )
            T_past = len(cache[0])
            if T_past and cache[0].keys.shape[0] != token_ids.shape[0]:
                raise ValueError(
                    f"{where}: the cache holds a batch of {cache[0].keys.shape[0]} rows, "
                    f"but token_ids is {shape_text(token_ids)}; start a new cache with model.new_cache()"
                )
        T_total = T_past + token_ids.shape[1]
        if T_total > c.context_length:
            raise ValueError(
                f"{where}: sequence of {T_total} tokens ({T_past} cached + {shape_text(token_ids)}) exceeds "
                f"context_length={c.context_length}"
            )

    def forward(
        self, token_ids: torch.Tensor, cache: list[KVCache] | None = None, last_token_only: bool = False
    ) -> torch.Tensor:
        self._check_inputs(token_ids, cache)
        embeddings = self.token_embedding(token_ids)  # (B, T, d_model)
        x = embeddings
        for index, block in enumerate(self.blocks):
            block_cache = cache[index] if cache is not None else None
            x = block(x, kv_cache=block_cache)  # (B, T, d_model): each layer places T after its cached tokens
        if last_token_only:  # generation needs only the last position's logits
            x = x[:, -1:, :]  # (B, 1, d_model)
        x = self.final_norm(x)  # (B, T or 1, d_model)
        logits = self.lm_head(x)  # (B, T or 1, V)
        if self.recorder is not None:
            self.recorder(token_embeddings=embeddings, logits=logits)
        return logits
