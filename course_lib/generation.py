"""From logits to text: probabilities, sampling, greedy decoding, beam search, and
incremental decoding with a key/value cache.

Built in lesson 09 (output layer and generation).
"""

from __future__ import annotations

from typing import Protocol

import torch
from tqdm.auto import tqdm

from course_lib._validation import (
    HALF_PRECISION,
    INTEGER_DTYPES,
    as_float,
    as_int,
    require_min_rank,
    require_positive_int,
    require_rank,
    shape_text,
)


class CausalLanguageModel(Protocol):
    """What ``generate`` needs from a decoder-only model; ``GPT`` and ``Llama`` both have it.

    * ``config.context_length``: the longest sequence the model accepts;
    * ``new_cache()``: an empty key/value cache;
    * ``model(token_ids (B, T), cache=None, last_token_only=False) -> logits (B, T, V)``: with a
      cache, only the new tokens are passed and the model continues from the cached ones; with
      ``last_token_only=True`` only the last position's logits (B, 1, V) are computed.

    Built in lesson 09 (output layer and generation); ``Llama`` joins in lesson 13.
    """

    config: object

    def new_cache(self) -> object: ...

    def __call__(
        self, token_ids: torch.Tensor, cache: object = None, last_token_only: bool = False
    ) -> torch.Tensor: ...


def _require_causal_language_model(where: str, model) -> None:
    """Raise unless ``model`` follows ``CausalLanguageModel`` (e.g. an encoder-decoder does not)."""
    has_context = isinstance(getattr(getattr(model, "config", None), "context_length", None), int)
    if not (has_context and callable(getattr(model, "new_cache", None)) and callable(model)):
        raise ValueError(
            f"{where}: model must be a decoder-only language model such as course_lib's GPT or Llama "
            f"(config.context_length, new_cache(), model(token_ids, cache=...)), got {type(model).__name__}; "
            "for an encoder-decoder Transformer use greedy_decode or beam_search"
        )


def _require_encoder_decoder(where: str, model) -> None:
    """Raise unless ``model`` is an encoder-decoder like course_lib's ``Transformer``."""
    config = getattr(model, "config", None)
    has_config = isinstance(getattr(config, "tgt_vocab_size", None), int) and isinstance(
        getattr(config, "pad_id", None), int
    )
    has_parts = all(callable(getattr(model, name, None)) for name in ("encode", "decode")) and callable(
        getattr(getattr(model, "decoder", None), "new_cache", None)
    )
    if not (has_config and has_parts):
        raise ValueError(
            f"{where}: model must be an encoder-decoder such as course_lib's Transformer "
            f"(encode, decode, decoder.new_cache(), config.tgt_vocab_size and config.pad_id), "
            f"got {type(model).__name__}; for a decoder-only GPT or Llama use generate"
        )


def _token_id(where: str, name: str, value, vocab_size: int) -> int:
    """``value`` as an int token id in [0, vocab_size)."""
    return as_int(where, name, value, minimum=0, maximum=vocab_size - 1)


def next_token_probs(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Turn logits into the distribution the next token is drawn from.

    1. Divide the logits by ``temperature`` (below 1 sharpens, above 1 flattens;
       ``temperature=0`` means greedy: all mass on the largest logit). The largest logit
       is subtracted first (softmax does not change), so a tiny temperature cannot
       overflow: it tends to greedy, with tied largest logits sharing the mass.
    2. ``top_k``: keep only the k largest logits.
    3. ``top_p``: keep the smallest set of most likely tokens whose probability mass
       reaches p (the token that crosses p is kept).
    4. Softmax over what is left, so the kept probabilities sum to 1.

    Shapes:
        logits: (..., V) -> probabilities (..., V)

    Built in lesson 09 (output layer and generation).
    """
    where = "next_token_probs"
    require_min_rank(where, "logits", logits, "(..., V)", 1)
    if not logits.is_floating_point():
        raise ValueError(f"{where}: logits must be a float tensor (..., V), got dtype {logits.dtype}")
    V = logits.shape[-1]
    if V == 0:
        raise ValueError(
            f"{where}: logits must be (..., V) with V >= 1 (one logit per token), got {shape_text(logits)}"
        )
    temperature = as_float(where, "temperature", temperature, ">= 0 (a finite number; 0 is greedy)", low=0.0)
    if top_k is not None:
        top_k = as_int(where, "top_k", top_k, minimum=1)
    if top_p is not None:
        top_p = as_float(where, "top_p", top_p, "in (0, 1] or None", low=0.0, low_open=True, high=1.0)
    if logits.numel() == 0:
        return torch.zeros_like(logits)  # (0, V): no rows, nothing to compute
    largest = logits.amax(dim=-1, keepdim=True)  # (..., 1)
    if not bool(torch.isfinite(largest).all()):
        raise ValueError(
            f"{where}: logits {shape_text(logits)} hold NaN or +inf, or a row with every logit -inf; "
            "-inf may mark forbidden tokens, but every row needs a finite largest logit"
        )

    if temperature == 0:
        greedy = logits.argmax(dim=-1, keepdim=True)  # (..., 1)
        return torch.zeros_like(logits).scatter(-1, greedy, 1.0)  # (..., V), one-hot

    work = logits.float() if logits.dtype in HALF_PRECISION else logits  # float16 would round the probabilities
    shifted = work - largest.to(work.dtype)  # (..., V), <= 0; the largest logit is 0
    # shifted / temperature is -inf (not NaN) when it overflows; keep the largest at exactly 0 even when
    # temperature rounds to 0 in this dtype (0 / 0 would be NaN).
    scaled = torch.where(shifted == 0, shifted, shifted / temperature)  # (..., V)

    if top_k is not None and top_k < V:
        kth_largest = scaled.topk(top_k, dim=-1).values[..., -1:]  # (..., 1)
        scaled = scaled.masked_fill(scaled < kth_largest, float("-inf"))  # (..., V)

    if top_p is not None and top_p < 1.0:
        probs = torch.softmax(scaled, dim=-1)  # (..., V)
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # (..., V) each
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # (..., V): mass of the more likely tokens
        keep_sorted = mass_before < top_p  # (..., V): True until the token that crosses p, inclusive
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)  # (..., V), back in vocabulary order
        scaled = scaled.masked_fill(~keep, float("-inf"))  # (..., V)

    return torch.softmax(scaled, dim=-1).to(logits.dtype)  # (..., V), renormalised over the kept tokens


def sample_next_token(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token id per row from ``probs``; pass a seeded ``torch.Generator`` for
    reproducible samples.

    Shapes:
        probs: (B, V) -> ids (B,)

    Built in lesson 09 (output layer and generation).
    """
    where = "sample_next_token"
    require_rank(where, "probs", probs, "(B, V)", 2)
    if not probs.is_floating_point():
        raise ValueError(f"{where}: probs must be a float tensor (B, V) of probabilities, got dtype {probs.dtype}")
    if probs.shape[1] == 0:
        raise ValueError(f"{where}: probs must be (B, V) with V >= 1, got {shape_text(probs)}")
    if probs.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=probs.device)  # (0,)
    if not bool((torch.isfinite(probs) & (probs >= 0)).all()):
        raise ValueError(
            f"{where}: probs {shape_text(probs)} must be finite and >= 0, got NaN, inf or negative values; "
            "pass probabilities (next_token_probs(logits)), not logits"
        )
    row_sums = probs.sum(dim=-1)  # (B,)
    if not bool((row_sums > 0).all()):
        rows = (row_sums <= 0).nonzero().flatten().tolist()
        raise ValueError(f"{where}: every row of probs needs some probability mass, but rows {rows[:10]} sum to 0")
    if probs.dtype in HALF_PRECISION:
        probs = probs.float()  # multinomial's sums in float32
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (B,)


@torch.no_grad()
def generate(
    model,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    eos_id: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Extend ``prompt_ids`` with ``max_new_tokens`` tokens from a ``GPT`` or a ``Llama``
    (any ``CausalLanguageModel``).

    With ``use_cache=True`` the prompt runs once, then each step feeds only the newest
    token and reuses the cached keys and values; with ``use_cache=False`` every step
    recomputes the whole sequence (same tokens, more work). ``temperature=0`` is greedy.

    Shapes:
        prompt_ids (B, T) -> (B, T + max_new_tokens) (fewer if every row hit ``eos_id``)

    Built in lesson 09 (output layer and generation).
    """
    where = "generate"
    _require_causal_language_model(where, model)
    require_rank(where, "prompt_ids", prompt_ids, "(B, T) token ids", 2, hint="add a batch dimension")
    if prompt_ids.dtype not in INTEGER_DTYPES:
        raise ValueError(f"{where}: prompt_ids must be integer token ids (B, T), got dtype {prompt_ids.dtype}")
    if prompt_ids.shape[1] == 0:
        raise ValueError(f"{where}: prompt_ids must hold at least one token per row, got {shape_text(prompt_ids)}")
    max_new_tokens = require_positive_int(where, "max_new_tokens", max_new_tokens)
    temperature = as_float(where, "temperature", temperature, ">= 0 (a finite number; 0 is greedy)", low=0.0)
    if top_k is not None:
        top_k = as_int(where, "top_k", top_k, minimum=1)
    if top_p is not None:
        top_p = as_float(where, "top_p", top_p, "in (0, 1] or None", low=0.0, low_open=True, high=1.0)
    if eos_id is not None:
        eos_id = as_int(where, "eos_id", eos_id)  # an id outside the vocabulary never comes: no early stop
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"{where}: generator must be a torch.Generator or None, got {type(generator).__name__}")
    prompt_ids = prompt_ids.long()  # (B, T); the generated ids are int64
    context_length = model.config.context_length
    if use_cache and prompt_ids.shape[1] + max_new_tokens > context_length:
        raise ValueError(
            f"{where}: prompt {shape_text(prompt_ids)} plus {max_new_tokens} new tokens exceeds "
            f"context_length={context_length}; use fewer tokens or use_cache=False (sliding window)"
        )
    was_training = model.training
    model.eval()
    ids = prompt_ids
    cache = model.new_cache() if use_cache else None
    step_input = ids  # the prompt first; afterwards only the newest token when caching
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)  # (B,)
    for _ in tqdm(range(max_new_tokens), disable=not progress, desc="generating"):
        if not use_cache:
            step_input = ids[:, -context_length:]  # (B, <= context_length)
        logits = model(step_input, cache=cache, last_token_only=True)[:, -1, :]  # (B, V)
        probs = next_token_probs(logits, temperature, top_k, top_p)  # (B, V)
        if temperature == 0:
            next_ids = probs.argmax(dim=-1)  # (B,)
        else:
            next_ids = sample_next_token(probs, generator)  # (B,)
        if eos_id is not None:
            next_ids = next_ids.masked_fill(finished, eos_id)  # (B,): finished rows repeat eos
            finished |= next_ids == eos_id
        ids = torch.cat([ids, next_ids[:, None]], dim=1)  # (B, T + 1)
        step_input = next_ids[:, None]  # (B, 1)
        if eos_id is not None and bool(finished.all()):
            break
    model.train(was_training)
    return ids


@torch.no_grad()
def greedy_decode(
    model,
    src_ids: torch.Tensor,
    bos_id: int,
    eos_id: int,
    max_len: int = 50,
    use_cache: bool = True,
) -> torch.Tensor:
    """Translate with an encoder-decoder ``Transformer`` by always taking the most likely
    next token. Stops when every row has produced ``eos_id`` or after ``max_len`` tokens.
    Rows that finished early are filled with the pad id.

    Shapes:
        src_ids (B, S) -> (B, 1 + L) starting with ``bos_id``, L <= max_len

    Built in lesson 09 (output layer and generation).
    """
    where = "greedy_decode"
    _require_encoder_decoder(where, model)
    require_rank(where, "src_ids", src_ids, "(B, S) token ids", 2, hint="add a batch dimension")
    max_len = require_positive_int(where, "max_len", max_len)
    bos_id = _token_id(where, "bos_id", bos_id, model.config.tgt_vocab_size)
    eos_id = as_int(where, "eos_id", eos_id)  # an id outside the vocabulary never comes: run max_len steps
    was_training = model.training
    model.eval()
    pad_id = model.config.pad_id
    B = src_ids.shape[0]
    memory, src_mask = model.encode(src_ids)  # (B, S, d_model), (B, 1, 1, S)
    ids = torch.full((B, 1), bos_id, dtype=torch.long, device=src_ids.device)  # (B, 1)
    cache = model.decoder.new_cache() if use_cache else None
    finished = torch.zeros(B, dtype=torch.bool, device=src_ids.device)  # (B,)
    for _ in range(max_len):
        step_input = ids[:, -1:] if use_cache else ids  # (B, 1) or (B, T)
        logits = model.decode(step_input, memory, src_mask, cache)[:, -1, :]  # (B, V)
        next_ids = logits.argmax(dim=-1)  # (B,)
        next_ids = next_ids.masked_fill(finished, pad_id)  # (B,)
        ids = torch.cat([ids, next_ids[:, None]], dim=1)  # (B, T + 1)
        finished |= next_ids == eos_id
        if bool(finished.all()):
            break
    model.train(was_training)
    return ids


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's length normaliser ((5 + length) / 6) ** alpha (Wu et al., 2016).

    Dividing a hypothesis' log-probability by it stops beam search from preferring
    short outputs just because they multiply fewer probabilities. alpha=0 turns it off.

    Built in lesson 09 (output layer and generation).
    """
    length = as_int("length_penalty", "length", length, minimum=0)
    alpha = as_float("length_penalty", "alpha", alpha)
    return ((5 + length) / 6) ** alpha


@torch.no_grad()
def beam_search(
    model,
    src_ids: torch.Tensor,
    bos_id: int,
    eos_id: int,
    beam_size: int = 4,
    max_len: int = 50,
    alpha: float = 0.6,
) -> torch.Tensor:
    """Keep the ``beam_size`` best partial translations at every step instead of one.

    Hypotheses are ranked by their summed log-probability; finished ones (ending in
    ``eos_id``) are compared after dividing by ``length_penalty(length, alpha)``. The
    search stops once ``beam_size`` hypotheses have finished or after ``max_len`` steps.
    With ``beam_size=1`` it is exactly greedy decoding.

    Shapes:
        src_ids (1, S) -> (1, 1 + L), the best hypothesis starting with ``bos_id``

    Built in lesson 09 (output layer and generation).
    """
    where = "beam_search"
    _require_encoder_decoder(where, model)
    require_rank(where, "src_ids", src_ids, "(1, S) token ids: one sentence at a time", 2)
    if src_ids.shape[0] != 1:
        raise ValueError(f"{where}: src_ids must be (1, S), one sentence at a time, got {shape_text(src_ids)}")
    beam_size = require_positive_int(where, "beam_size", beam_size)
    max_len = require_positive_int(where, "max_len", max_len)
    bos_id = _token_id(where, "bos_id", bos_id, model.config.tgt_vocab_size)
    eos_id = as_int(where, "eos_id", eos_id)  # an id outside the vocabulary never comes: run max_len steps
    alpha = as_float(where, "alpha", alpha, "a finite number (GNMT uses 0.6; 0 turns the penalty off)")
    was_training = model.training
    model.eval()
    memory, src_mask = model.encode(src_ids)  # (1, S, d_model), (1, 1, 1, S)
    alive = [([bos_id], 0.0)]  # (tokens, summed log-probability)
    finished: list[tuple[list[int], float]] = []
    for _ in range(max_len):
        n = len(alive)
        tokens = torch.tensor([seq for seq, _ in alive], device=src_ids.device)  # (n, T)
        logits = model.decode(tokens, memory.expand(n, -1, -1), src_mask.expand(n, -1, -1, -1))  # (n, T, V)
        log_probs = torch.log_softmax(logits[:, -1, :].double(), dim=-1)  # (n, V)
        totals = torch.tensor([score for _, score in alive], dtype=torch.float64)[:, None] + log_probs  # (n, V)
        V = totals.shape[-1]
        best_scores, best_flat = totals.flatten().topk(min(2 * beam_size, n * V))  # (2 * beam_size,)
        next_alive = []
        for score, flat_index in zip(best_scores.tolist(), best_flat.tolist(), strict=True):
            row, token = divmod(flat_index, V)
            sequence = alive[row][0] + [token]
            if token == eos_id:
                finished.append((sequence, score))
            else:
                next_alive.append((sequence, score))
            if len(next_alive) == beam_size or len(finished) >= beam_size:
                break
        alive = next_alive
        if len(finished) >= beam_size or not alive:
            break
    candidates = finished if finished else alive

    def normalised(hypothesis):
        sequence, score = hypothesis
        return score / length_penalty(len(sequence) - 1, alpha)

    best_sequence, _ = max(candidates, key=normalised)
    model.train(was_training)
    return torch.tensor([best_sequence], device=src_ids.device)  # (1, 1 + L)
