"""Whole models assembled from the course's parts.

* ``Transformer``: the encoder-decoder of "Attention Is All You Need", for
  sequence-to-sequence tasks such as translation (lessons 08 and 10).
* ``GPT``: a decoder-only language model with learned positions, pre-norm and GELU
  (lessons 09 and 11).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from course_lib._validation import (
    INTEGER_DTYPES,
    as_float,
    as_int,
    require_choice,
    require_positive_int,
    require_rank,
    shape_text,
)
from course_lib.decoder import Decoder, DecoderLayerCache
from course_lib.embeddings import TokenEmbedding
from course_lib.encoder import Encoder, EncoderLayer
from course_lib.feedforward import ACTIVATIONS
from course_lib.masks import padding_mask, shared_causal_mask
from course_lib.multihead import KVCache
from course_lib.normalization import LayerNorm
from course_lib.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding


def _check_config(config, positive: tuple[str, ...], flags: tuple[str, ...]) -> None:
    """Validate a frozen model config in place: sizes are positive ints (numpy integers and 0-d
    tensors become Python ints, so the config stays JSON-ready), heads divide d_model, dropout is
    a probability, the activation is known and the flags are True or False."""
    where = type(config).__name__
    for name in positive:
        object.__setattr__(config, name, require_positive_int(where, name, getattr(config, name)))
    if config.d_model % config.n_heads != 0:
        raise ValueError(
            f"{where}: d_model={config.d_model} must be divisible by n_heads={config.n_heads} "
            "(each head gets d_model // n_heads dimensions)"
        )
    dropout = as_float(where, "dropout", config.dropout, "a probability in [0, 1)", low=0.0, high=1.0, high_open=True)
    object.__setattr__(config, "dropout", dropout)
    require_choice(where, "activation", config.activation, ACTIVATIONS)
    for name in flags:
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{where}: {name} must be True or False, got {getattr(config, name)!r}")


@dataclass(frozen=True)
class TransformerConfig:
    """Configuration of the encoder-decoder; defaults are the paper's base model."""

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    n_heads: int = 8
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    activation: str = "relu"
    norm_first: bool = False
    max_len: int = 512
    pad_id: int = 0
    tie_output: bool = True

    def __post_init__(self):
        sizes = ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "n_encoder_layers", "n_decoder_layers")
        _check_config(self, (*sizes, "d_ff", "max_len"), ("norm_first", "tie_output"))
        vocab = min(self.src_vocab_size, self.tgt_vocab_size)
        pad_id = as_int("TransformerConfig", "pad_id", self.pad_id, minimum=0, maximum=vocab - 1)
        object.__setattr__(self, "pad_id", pad_id)


class Transformer(nn.Module):
    """Encoder-decoder Transformer: embeddings (scaled by sqrt(d_model)) plus sinusoidal
    positions, an encoder stack, a decoder stack and a linear output layer, optionally
    tied to the target embedding.

    Use ``encode`` once per source batch, then ``decode`` for the target (all at once
    for training, one token at a time with a cache for generation).

    While ``course_lib.activations.recording`` runs, ``recorder`` keeps ``source_embeddings``
    and ``memory`` (in ``encode``), ``target_embeddings`` and ``logits`` (in ``decode``).

    Shapes:
        src_ids (B, S), tgt_ids (B, T) -> logits (B, T, V_tgt)

    Built in lesson 08 (decoder); trained in lesson 10.
    """

    recorder = None  # None, or the function course_lib.activations.recording hands over

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise ValueError(f"Transformer: config must be a TransformerConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.src_embedding = TokenEmbedding(c.src_vocab_size, c.d_model)
        self.tgt_embedding = TokenEmbedding(c.tgt_vocab_size, c.d_model)
        self.positional = SinusoidalPositionalEncoding(c.d_model, c.max_len)
        self.dropout = nn.Dropout(c.dropout)
        common = dict(
            d_model=c.d_model, n_heads=c.n_heads, d_ff=c.d_ff, dropout=c.dropout,
            activation=c.activation, norm_first=c.norm_first,
        )  # fmt: skip
        self.encoder = Encoder(c.n_encoder_layers, **common)
        self.decoder = Decoder(c.n_decoder_layers, **common)
        self.output = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        if c.tie_output:
            self.output.weight = self.tgt_embedding.weight

    def _check_ids(self, where: str, name: str, ids: torch.Tensor) -> None:
        require_rank(where, name, ids, "(B, T) token ids", 2, hint="add a batch dimension with ids.unsqueeze(0)")
        if ids.dtype not in INTEGER_DTYPES:
            raise ValueError(f"{where}: {name} must be integer token ids, got dtype {ids.dtype}")
        if ids.shape[1] == 0:
            raise ValueError(f"{where}: {name} must be (B, T) token ids with T >= 1, got {shape_text(ids)}")

    def encode(self, src_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the encoder. Returns ``memory`` (B, S, d_model) and the source padding
        mask (B, 1, 1, S) the decoder's cross-attention needs."""
        self._check_ids("Transformer.encode", "src_ids", src_ids)
        src_mask = padding_mask(src_ids, self.config.pad_id)  # (B, 1, 1, S)
        x = self.dropout(self.positional(self.src_embedding(src_ids)))  # (B, S, d_model)
        memory = self.encoder(x, src_mask)  # (B, S, d_model)
        if self.recorder is not None:
            self.recorder(source_embeddings=x, memory=memory)
        return memory, src_mask

    def decode(
        self,
        tgt_ids: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor,
        cache: list[DecoderLayerCache] | None = None,
    ) -> torch.Tensor:
        """Run the decoder and the output layer.

        Without a cache, ``tgt_ids`` is the whole target so far and a causal mask keeps
        each position from seeing later ones. With a cache (``self.decoder.new_cache()``),
        pass only the new tokens: earlier keys and values come from the cache.

        Shapes:
            tgt_ids (B, T_new), memory (B, S, d_model) -> logits (B, T_new, V_tgt)
        """
        where = "Transformer.decode"
        self._check_ids(where, "tgt_ids", tgt_ids)
        if cache is not None:
            n_layers = len(self.decoder.layers)
            if not isinstance(cache, list | tuple) or len(cache) != n_layers:
                got = f"{len(cache)} entries" if isinstance(cache, list | tuple) else type(cache).__name__
                raise ValueError(
                    f"{where}: cache must be the list of {n_layers} layer caches from "
                    f"model.decoder.new_cache(), got {got}"
                )
            if not all(isinstance(layer_cache, DecoderLayerCache) for layer_cache in cache):
                raise ValueError(f"{where}: cache must hold DecoderLayerCache objects from model.decoder.new_cache()")
        start = len(cache[0].self_attn) if cache is not None else 0
        T_new = tgt_ids.shape[1]
        T_total = start + T_new
        # Targets are padded on the right, so the causal mask already keeps every real token away
        # from the padding after it; padded positions are ignored by the loss. No target padding
        # mask is needed, and leaving it out makes cached and uncached decoding identical.
        self_mask = shared_causal_mask(T_total, device=tgt_ids.device)[start:]  # (T_new, T_total)
        is_causal = start == 0  # nothing cached: self_mask is the plain causal mask (the fast path's hint)
        x = self.dropout(self.positional(self.tgt_embedding(tgt_ids), start=start))  # (B, T_new, d_model)
        decoded = self.decoder(x, memory, self_mask, src_mask, cache, self_is_causal=is_causal)  # (B, T_new, d)
        logits = self.output(decoded)  # (B, T_new, V_tgt)
        if self.recorder is not None:
            self.recorder(target_embeddings=x, logits=logits)
        return logits

    def forward(self, src_ids: torch.Tensor, tgt_ids: torch.Tensor) -> torch.Tensor:
        memory, src_mask = self.encode(src_ids)  # (B, S, d_model)
        return self.decode(tgt_ids, memory, src_mask)  # (B, T, V_tgt)


@dataclass(frozen=True)
class GPTConfig:
    """Configuration of the decoder-only model. ``d_ff`` defaults to 4 * d_model."""

    vocab_size: int
    context_length: int = 128
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    d_ff: int | None = None
    dropout: float = 0.0
    activation: str = "gelu"
    layer_norm_eps: float = 1e-5
    tie_weights: bool = True

    def __post_init__(self):
        if self.d_ff is not None:
            object.__setattr__(self, "d_ff", require_positive_int("GPTConfig", "d_ff", self.d_ff))
        _check_config(self, ("vocab_size", "context_length", "d_model", "n_heads", "n_layers"), ("tie_weights",))
        eps = as_float(
            "GPTConfig", "layer_norm_eps", self.layer_norm_eps, "a finite number > 0", low=0.0, low_open=True
        )
        object.__setattr__(self, "layer_norm_eps", eps)


class GPT(nn.Module):
    """A decoder-only language model: token + learned position embeddings, a stack of
    pre-norm blocks with causal self-attention and a GELU MLP, a final layer norm and a
    linear layer to vocabulary logits (tied to the token embedding by default).

    A GPT block is exactly an ``EncoderLayer(norm_first=True)`` used with a causal
    mask: with no encoder there is nothing to cross-attend to.

    While ``course_lib.activations.recording`` runs, ``recorder`` keeps ``token_embeddings``,
    ``position_embeddings`` (the rows of the table that were added), ``embeddings`` (their
    sum) and ``logits`` (the blocks and norms record their own tensors).

    Shapes:
        token_ids (B, T) -> logits (B, T, V)

    Built in lesson 09 (output layer and generation); trained in lesson 11.
    """

    recorder = None  # None, or the function course_lib.activations.recording hands over

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        c = config
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPT: config must be a GPTConfig, got {type(config).__name__}")
        d_ff = c.d_ff if c.d_ff is not None else 4 * c.d_model
        self.token_embedding = TokenEmbedding(c.vocab_size, c.d_model, scale=False)
        self.position_embedding = LearnedPositionalEmbedding(c.context_length, c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            EncoderLayer(c.d_model, c.n_heads, d_ff, c.dropout, c.activation, True, c.layer_norm_eps)
            for _ in range(c.n_layers)
        )
        self.final_norm = LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_weights:
            self.lm_head.weight = self.token_embedding.weight
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, TokenEmbedding):
            nn.init.normal_(module.weight, std=0.02)

    def new_cache(self) -> list[KVCache]:
        """One empty key/value cache per block, for incremental generation."""
        return [KVCache() for _ in self.blocks]

    def _check_cache(self, where: str, cache, B: int) -> int:
        """Check a cache from ``new_cache()``; return how many tokens it already holds."""
        if cache is None:
            return 0
        n_layers = len(self.blocks)
        if not isinstance(cache, list | tuple) or len(cache) != n_layers:
            got = f"{len(cache)} entries" if isinstance(cache, list | tuple) else type(cache).__name__
            raise ValueError(
                f"{where}: cache must be the list of {n_layers} KVCache objects from new_cache(), got {got}"
            )
        if not all(isinstance(layer_cache, KVCache) for layer_cache in cache):
            raise ValueError(f"{where}: cache must hold KVCache objects from new_cache()")
        lengths = {len(layer_cache) for layer_cache in cache}
        if len(lengths) > 1:
            raise ValueError(f"{where}: the layer caches hold different numbers of tokens {sorted(lengths)}")
        start = lengths.pop()
        if start > 0 and cache[0].keys.shape[0] != B:
            raise ValueError(
                f"{where}: the cache holds B={cache[0].keys.shape[0]} sequences but token_ids has B={B}; "
                "use one cache per batch (model.new_cache())"
            )
        return start

    def forward(
        self, token_ids: torch.Tensor, cache: list[KVCache] | None = None, last_token_only: bool = False
    ) -> torch.Tensor:
        """Logits for every position, or with ``last_token_only=True`` for the last one only
        (B, 1, V), which is all generation needs: the output layer is the largest matrix product."""
        where = "GPT.forward"
        require_rank(where, "token_ids", token_ids, "(B, T) token ids", 2, hint="add a batch dimension")
        if token_ids.dtype not in INTEGER_DTYPES:
            raise ValueError(f"{where}: token_ids must be integer ids, got dtype {token_ids.dtype}")
        if token_ids.shape[1] == 0:
            raise ValueError(f"{where}: token_ids must be (B, T) token ids with T >= 1, got {shape_text(token_ids)}")
        start = self._check_cache(where, cache, token_ids.shape[0])
        T_new = token_ids.shape[1]
        T_total = start + T_new
        if T_total > self.config.context_length:
            raise ValueError(
                f"{where}: sequence of {T_total} tokens {shape_text(token_ids)} exceeds "
                f"context_length={self.config.context_length}"
            )
        # The causal mask of the whole context is built once per device; keep the rows of the
        # new tokens and the columns of every token so far.
        full_mask = shared_causal_mask(self.config.context_length, token_ids.device)  # (context, context)
        mask = full_mask[start:T_total, :T_total]  # (T_new, T_total)
        is_causal = start == 0  # nothing cached: mask is the plain causal mask (the fast path's hint)
        token_embeddings = self.token_embedding(token_ids)  # (B, T_new, d_model)
        embeddings = self.dropout(self.position_embedding(token_embeddings, start=start))  # (B, T_new, d_model)
        x = embeddings
        for index, block in enumerate(self.blocks):
            block_cache = cache[index] if cache is not None else None
            x = block(x, mask, kv_cache=block_cache, is_causal=is_causal)  # (B, T_new, d_model)
        if last_token_only:
            x = x[:, -1:, :]  # (B, 1, d_model)
        x = self.final_norm(x)  # (B, T_new or 1, d_model)
        logits = self.lm_head(x)  # (B, T_new or 1, V)
        if self.recorder is not None:
            positions = self.position_embedding.weight[start:T_total]  # (T_new, d_model): the rows that were added
            self.recorder(
                token_embeddings=token_embeddings, position_embeddings=positions, embeddings=embeddings, logits=logits
            )
        return logits
