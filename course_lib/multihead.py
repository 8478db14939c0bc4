"""Multi-head attention: several attention heads side by side.

Built in lesson 05 (multi-head attention). The key/value cache used for fast
generation is explained in lesson 09. Grouped-query attention (several query heads
sharing one key/value head, with rotary positions) is built in lesson 13.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from course_lib._validation import as_int, require_positive_int, require_rank, require_size, shape_text
from course_lib.attention import attend, check_attention_mask
from course_lib.embeddings import TokenEmbedding
from course_lib.feedforward import FeedForward, SwiGLU
from course_lib.masks import shared_causal_mask
from course_lib.normalization import LayerNorm, RMSNorm
from course_lib.rotary import apply_rope, apply_rope_cached


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
        keys, values: (B, n_heads, T_past, d_head); (B, n_kv_heads, T_past, d_head) in
        ``GroupedQueryAttention``, which stores only its key/value heads

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
    (for a whole model: ``use_fast_path(model)``) to call PyTorch's fused kernel
    ``F.scaled_dot_product_attention`` instead: the same function, computed without
    materialising the (T_q, T_k) weights, so faster for training; ``.attention_weights``
    is then None. ``tests/test_fast_path.py`` proves the two paths equal.

    ``is_causal=True`` is a promise, as in PyTorch's own layers, that ``mask`` is exactly
    ``causal_mask(T)`` with T_q == T_k: the readable path still reads the mask, the fused
    path then passes ``is_causal=True`` to the kernel, which skips the blocked half of the
    scores instead of reading a mask. ``GPT`` and ``Transformer`` pass it when it holds.

    While ``course_lib.activations.recording`` runs, ``recorder`` keeps q, k, v, every stage
    of the scores, the heads, the merged heads and the output (see that module).

    Shapes:
        query (B, T_q, d_model), key/value (B, T_k, d_model) -> (B, T_q, d_model)
        attention_weights: (B, n_heads, T_q, T_k)

    Built in lesson 05 (multi-head attention).
    """

    recorder = None  # None, or the function course_lib.activations.recording hands over

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
        weight_dtype = self.w_q.weight.dtype
        for name, tensor in (("query", query), ("key", key), ("value", value)):
            if tensor.dtype != weight_dtype:
                raise ValueError(
                    f"{where}: {name} has dtype {tensor.dtype} but the module's weights are {weight_dtype}; "
                    f"convert the input ({name}.to({weight_dtype})) or the module (module.to({tensor.dtype}))"
                )

    def _check_cache_and_mask(self, query, key, mask, kv_cache) -> None:
        """Check the cache and the mask before anything is computed or cached, for both paths."""
        where = "MultiHeadAttention.forward"
        T_k = key.shape[1]
        if kv_cache is not None:
            if not isinstance(kv_cache, KVCache):
                raise ValueError(f"{where}: kv_cache must be a KVCache or None, got {type(kv_cache).__name__}")
            if len(kv_cache) > 0 and kv_cache.keys.shape[0] != query.shape[0]:
                raise ValueError(
                    f"{where}: the kv_cache holds keys for B={kv_cache.keys.shape[0]} sequences, but query "
                    f"{shape_text(query)} has B={query.shape[0]}; start a new cache for a new batch"
                )
            T_k = len(kv_cache) if kv_cache.static and len(kv_cache) > 0 else len(kv_cache) + T_k
        if mask is not None:
            scores_shape = (query.shape[0], self.n_heads, query.shape[1], T_k)
            check_attention_mask(
                "scaled_dot_product_attention", mask, scores_shape, query.device, "(B, n_heads, T_q, T_k)"
            )

    def _check_causal_promise(self, query, key, mask, kv_cache) -> None:
        """``is_causal=True``: the mask must be (T, T) for T queries and the same T keys, none cached."""
        T = query.shape[1]
        cached = kv_cache is not None and len(kv_cache) > 0
        if mask is None or tuple(mask.shape) != (T, T) or key.shape[1] != T or cached:
            raise ValueError(
                f"MultiHeadAttention.forward: is_causal=True promises that mask is causal_mask(T) with T={T} queries "
                f"and as many keys, none cached; got mask {'None' if mask is None else shape_text(mask)}, "
                f"key {shape_text(key)}{' and a filled kv_cache' if cached else ''}"
            )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        self._check_inputs(query, key, value)
        self._check_cache_and_mask(query, key, mask, kv_cache)  # one check for the readable and the fused path
        if is_causal:
            self._check_causal_promise(query, key, mask, kv_cache)

        q = split_heads(self.w_q(query), self.n_heads)  # (B, n_heads, T_q, d_head)
        if kv_cache is not None and kv_cache.static and len(kv_cache) > 0:
            k, v = kv_cache.keys, kv_cache.values  # (B, n_heads, T_k, d_head), computed on the first step
        else:
            k = split_heads(self.w_k(key), self.n_heads)  # (B, n_heads, T_k, d_head)
            v = split_heads(self.w_v(value), self.n_heads)  # (B, n_heads, T_k, d_head)
            if kv_cache is not None:
                k, v = kv_cache.update(k, v)  # (B, n_heads, T_past + T_k, d_head)

        stages = {} if self.recorder is not None else None  # the score stages, kept only while recording
        if self.need_weights:
            # The inputs and the mask were checked above: attend is scaled_dot_product_attention without its checks.
            heads, weights = attend(q, k, v, mask, stages)  # (B, n_heads, T_q, d_head)
            self.attention_weights = weights.detach()  # (B, n_heads, T_q, T_k)
            if self.training and self.dropout.p > 0:
                # Dropout on the weights, then recombine the values (as nn.MultiheadAttention does).
                heads = self.dropout(weights) @ v  # (B, n_heads, T_q, d_head)
        else:
            # The fast path: PyTorch's fused kernel computes the same thing without keeping the weights.
            dropout_p = self.dropout.p if self.training else 0.0
            if is_causal:  # the plain causal mask: the kernel skips the blocked half instead of reading the mask
                heads = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
            else:
                heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
            self.attention_weights = None

        merged = merge_heads(heads)  # (B, T_q, d_model)
        output = self.w_o(merged)  # (B, T_q, d_model)
        if self.recorder is not None:
            kv_head = torch.arange(self.n_heads, device=q.device)  # (n_heads,): head h reads keys/values h
            self.recorder(q=q, k=k, v=v, kv_head=kv_head, **stages, heads=heads, merged=merged, output=output)
        return output


def repeat_kv_heads(x: torch.Tensor, n_repeats: int) -> torch.Tensor:
    """Repeat each key/value head ``n_repeats`` times, so every query head has a partner.

    Heads are repeated in place (repeat_interleave), not tiled: kv head 0 serves query heads
    0 .. n_repeats-1, kv head 1 the next n_repeats, and so on, so query head h uses kv
    head h // n_repeats (as Hugging Face's ``repeat_kv``).

    Shapes:
        x: (B, n_kv_heads, T, d_head) -> (B, n_kv_heads * n_repeats, T, d_head) = (B, n_heads, T, d_head)

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    require_rank("repeat_kv_heads", "x", x, "(B, n_kv_heads, T, d_head)", 4)
    require_positive_int("repeat_kv_heads", "n_repeats", n_repeats)
    if n_repeats == 1:
        return x  # (B, n_heads, T, d_head): one kv head per query head already
    return x.repeat_interleave(n_repeats, dim=1)  # (B, n_heads, T, d_head)


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with grouped key/value heads and rotary positions (Llama's attention).

    ``n_heads`` query heads share ``n_kv_heads`` key/value heads: each group of
    ``n_heads // n_kv_heads`` query heads reads the same keys and values. The key/value
    cache then holds only ``n_kv_heads`` heads, which is what makes long generations fit
    in memory. ``n_kv_heads == n_heads`` is ordinary multi-head attention and
    ``n_kv_heads == 1`` is multi-query attention.

    Queries and keys are rotated by ``apply_rope`` at their absolute positions (a cache
    holding T_past tokens puts the new ones at T_past, T_past + 1, ...), so the layer needs
    no position embedding. The causal mask is built inside: query i, at absolute position
    T_past + i, may attend to keys 0 .. T_past + i.

    Args:
        d_model: model width; ``d_head = d_model // n_heads`` must be even (RoPE rotates pairs).
        n_heads: number of query heads.
        n_kv_heads: number of key/value heads; must divide ``n_heads``.
        bias: whether the four linear layers have biases (Llama: no).
        rope_base: the ``base`` of ``apply_rope``.
        rope_interleaved: RoPE's pair layout (False: Hugging Face's "rotate half").

    ``forward(x, kv_cache=None)``. The readable path keeps the last weights on
    ``.attention_weights`` (B, n_heads, T_q, T_k) for plotting; ``use_fast_path(model)``
    switches to ``F.scaled_dot_product_attention`` (same outputs and gradients, no weights
    kept; ``tests/test_llama.py`` proves them equal).

    While ``course_lib.activations.recording`` runs, ``recorder`` keeps q and k before and after
    RoPE, k and v per key/value head, which key/value head each query head reads
    (``kv_head``), every stage of the scores, the heads, the merged heads and the output.

    Shapes:
        x (B, T, d_model) -> (B, T, d_model)
        w_q: d_model -> n_heads * d_head; w_k, w_v: d_model -> n_kv_heads * d_head;
        w_o: n_heads * d_head -> d_model

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """

    recorder = None  # None, or the function course_lib.activations.recording hands over

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        bias: bool = False,
        rope_base: float = 10000.0,
        *,
        rope_interleaved: bool = False,
    ):
        super().__init__()
        where = "GroupedQueryAttention"
        require_positive_int(where, "d_model", d_model)
        require_positive_int(where, "n_heads", n_heads)
        require_positive_int(where, "n_kv_heads", n_kv_heads)
        if d_model % n_heads != 0:
            raise ValueError(
                f"{where}: d_model={d_model} must be divisible by n_heads={n_heads} "
                f"(each head gets d_model // n_heads dimensions)"
            )
        if n_heads % n_kv_heads != 0:
            raise ValueError(
                f"{where}: n_kv_heads={n_kv_heads} must divide n_heads={n_heads} "
                f"(each key/value head serves a whole group of query heads)"
            )
        d_head = d_model // n_heads
        if d_head % 2 != 0:
            raise ValueError(
                f"{where}: d_head = d_model // n_heads = {d_head} must be even (RoPE rotates pairs of dimensions)"
            )
        if isinstance(rope_base, bool) or not isinstance(rope_base, int | float) or not rope_base > 0:
            raise ValueError(f"{where}: rope_base must be a number > 0, got {rope_base!r}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.d_head = d_head
        self.n_repeats = n_heads // n_kv_heads  # query heads per key/value head
        self.rope_base = float(rope_base)
        self.rope_interleaved = bool(rope_interleaved)
        self.w_q = nn.Linear(d_model, n_heads * d_head, bias=bias)
        self.w_k = nn.Linear(d_model, n_kv_heads * d_head, bias=bias)
        self.w_v = nn.Linear(d_model, n_kv_heads * d_head, bias=bias)
        self.w_o = nn.Linear(n_heads * d_head, d_model, bias=bias)
        self.need_weights = True
        self.attention_weights: torch.Tensor | None = None

    def _rope(self, x: torch.Tensor, T_past: int) -> torch.Tensor:
        """Rotate x (B, heads, T, d_head) to the absolute positions T_past .. T_past + T - 1."""
        if not self.need_weights:  # the fast path: the same rotation, its cos/sin tables computed once
            return apply_rope_cached(x, T_past, self.rope_base, self.rope_interleaved)
        positions = torch.arange(T_past, T_past + x.shape[-2], device=x.device)  # (T,): absolute positions
        return apply_rope(x, positions, self.rope_base, self.rope_interleaved)  # (B, heads, T, d_head)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        where = "GroupedQueryAttention.forward"
        expected = f"(B, T, d_model) with d_model={self.d_model}"
        require_rank(where, "x", x, expected, 3, hint="did you pass the head-split tensor?")
        require_size(where, "x", x, -1, self.d_model, expected)
        if kv_cache is not None and kv_cache.static:
            raise ValueError(f"{where}: kv_cache must be a self-attention KVCache (static=False), got static=True")
        T_past = len(kv_cache) if kv_cache is not None else 0
        T = x.shape[1]

        q = split_heads(self.w_q(x), self.n_heads)  # (B, n_heads, T, d_head)
        k = split_heads(self.w_k(x), self.n_kv_heads)  # (B, n_kv_heads, T, d_head)
        v = split_heads(self.w_v(x), self.n_kv_heads)  # (B, n_kv_heads, T, d_head)
        if self.recorder is not None:
            self.recorder(q_before_rope=q, k_before_rope=k)
        q = self._rope(q, T_past)  # (B, n_heads, T, d_head), at positions T_past .. T_past + T - 1
        k = self._rope(k, T_past)  # (B, n_kv_heads, T, d_head), rotated once, cached rotated
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)  # (B, n_kv_heads, T_past + T, d_head): only n_kv_heads are stored

        stages = {} if self.recorder is not None else None  # the score stages, kept only while recording
        if self.need_weights:
            keys = repeat_kv_heads(k, self.n_repeats)  # (B, n_heads, T_k, d_head): the keys of each query head
            values = repeat_kv_heads(v, self.n_repeats)  # (B, n_heads, T_k, d_head)
            mask = causal_mask_after_cache(T_past, T, device=x.device)  # (T, T_past + T), or None for one token
            heads, weights = attend(q, keys, values, mask, stages)  # (B, n_heads, T, d_head): inputs built here
            self.attention_weights = weights.detach()  # (B, n_heads, T, T_k)
        else:
            heads = causal_fused_attention(q, k, v, T_past)  # (B, n_heads, T, d_head)
            self.attention_weights = None
        merged = merge_heads(heads)  # (B, T, d_model)
        output = self.w_o(merged)  # (B, T, d_model)
        if self.recorder is not None:
            kv_head = torch.arange(self.n_heads, device=x.device) // self.n_repeats  # (n_heads,)
            self.recorder(q=q, k=k, v=v, kv_head=kv_head, **stages, heads=heads, merged=merged, output=output)
        return output


def causal_mask_after_cache(T_past: int, T: int, device: torch.device | str | None = None) -> torch.Tensor | None:
    """The causal mask of T new queries after ``T_past`` cached keys, or None when no key is blocked.

    Query i sits at position T_past + i and sees keys 0 .. T_past + i: the last T rows of
    ``causal_mask(T_past + T)``. A single new query (a generation step) is the last position
    and sees every key, so it needs no mask at all (building and adding one would change nothing).

    Shapes:
        returns: bool (T, T_past + T), or None when T == 1

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    T_past = as_int("causal_mask_after_cache", "T_past", T_past, minimum=0)
    T = require_positive_int("causal_mask_after_cache", "T", T)
    if T == 1:
        return None
    return shared_causal_mask(T_past + T, device=device)[T_past:]  # (T, T_past + T)


def causal_fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, T_past: int) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` for T new queries after ``T_past`` cached keys, with
    the causal mask in its cheapest form (the fast path of ``GroupedQueryAttention``).

    * nothing cached: ``is_causal=True``, the kernel skips the blocked half of the scores;
    * one new query (a generation step): it may see every key, so there is no mask at all;
    * several new queries after cached ones: the mask itself, ``causal_mask(T_k)[T_past:]``.

    With fewer key/value heads than query heads the kernel pairs each query head with its
    key/value head itself (``enable_gqa``, the pairing of ``repeat_kv_heads``), so the keys and
    values are never copied n_repeats times.

    Shapes:
        q (B, n_heads, T, d_head), k and v (B, n_kv_heads, T_past + T, d_head) -> (B, n_heads, T, d_head)

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    T = q.shape[-2]
    grouped = k.shape[-3] != q.shape[-3]  # fewer key/value heads than query heads
    if T_past == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=grouped)  # query i sees keys 0 .. i
    mask = causal_mask_after_cache(T_past, T, device=q.device)  # (T, T_k), or None: the newest token sees every key
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=grouped)


def use_fast_path(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every part of ``model`` that has a fused PyTorch kernel to it (or back).

    * ``MultiHeadAttention`` and ``GroupedQueryAttention``: ``F.scaled_dot_product_attention``
      (``is_causal=True`` where the mask is the plain causal mask), keeping no weights;
    * ``LayerNorm``: ``F.layer_norm``; ``RMSNorm``: ``F.rms_norm``;
    * ``TokenEmbedding``: ``F.embedding`` (its backward pass is faster than indexing's);
    * ``FeedForward`` and ``SwiGLU``: no ``.last_hidden``. A tensor kept after the forward pass
      holds its memory, so the next layer writes its hidden activations into fresh memory instead of
      reusing what is still in the CPU's cache (about 3% of a forward pass at lesson 11's GPT size).

    (GELU and SiLU are PyTorch's own functions on both paths.) The fast path gives the same
    outputs and gradients (``tests/test_fast_path.py``) but keeps no attention weights or MLP
    activations, so use it for training and generation, and switch it off (or use
    ``readable_path``) before plotting them. Returns ``model``.

    Built in lesson 09 (output layer and generation): the cost of attention.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"use_fast_path: model must be a torch.nn.Module, got {type(model).__name__}")
    for module in model.modules():
        if isinstance(module, MultiHeadAttention | GroupedQueryAttention):
            module.need_weights = not enabled
        elif isinstance(module, LayerNorm | RMSNorm | TokenEmbedding):
            module.fused = bool(enabled)
        elif isinstance(module, FeedForward | SwiGLU):
            module.keep_hidden = not enabled
            module.last_hidden = None  # nothing stale from the other path
    return model


@contextmanager
def readable_path(model: nn.Module) -> Iterator[nn.Module]:
    """Run the ``with`` block on the readable path (attention weights and MLP activations kept), then switch back
    exactly the parts that were on the fast path::

        with readable_path(model):
            model(token_ids)  # every attention layer keeps .attention_weights

    Built in lesson 10 (train a translator): train on the fast path, take pictures on the readable one.
    """
    fast_attention = [m for m in model.modules() if isinstance(m, MultiHeadAttention | GroupedQueryAttention)]
    fast_attention = [m for m in fast_attention if not m.need_weights]
    fused_parts = [m for m in model.modules() if isinstance(m, LayerNorm | RMSNorm | TokenEmbedding) and m.fused]
    quiet_mlps = [m for m in model.modules() if isinstance(m, FeedForward | SwiGLU) and not m.keep_hidden]
    for module in fast_attention:
        module.need_weights = True
    for module in fused_parts:
        module.fused = False
    for module in quiet_mlps:
        module.keep_hidden = True
    try:
        yield model
    finally:
        for module in fast_attention:
            module.need_weights = False
        for module in fused_parts:
            module.fused = True
        for module in quiet_mlps:
            module.keep_hidden = False


def use_fused_attention(model: nn.Module, enabled: bool = True) -> nn.Module:
    """The earlier name of ``use_fast_path``: it switches the whole model (attention, norms, embedding, MLPs).

    Built in lesson 09 (output layer and generation): the cost of attention.
    """
    return use_fast_path(model, enabled)
