"""Checkers of exercises 09: output layer and generation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_lib.checks._machinery import (
    _call,
    _call_args_text,
    _checker,
    _close,
    _compare,
    _default_dtype,
    _dtype_name,
    _Exercise,
    _randomize_parameters,
    _shape,
    _tolerance,
)
from course_lib.generation import greedy_decode, next_token_probs
from course_lib.models import Transformer, TransformerConfig

# ---------------------------------------------------------------------------------------------
# Lesson 09: output layer and generation
# ---------------------------------------------------------------------------------------------


def _probs_variant(logits, temperature=1.0, top_k=None, top_p=None, *, temperature_mode="divide", k_shift=0,
                   p_mode="keep_crossing", renormalise=True, p_first=False):  # fmt: skip
    """What a common wrong next_token_probs gives."""
    if temperature_mode == "multiply":
        scaled = logits * temperature  # (..., V)
    elif temperature_mode == "ignore":
        scaled = logits  # (..., V)
    else:
        scaled = logits / temperature  # (..., V)
    keep = torch.ones_like(scaled, dtype=torch.bool)  # (..., V)
    V = scaled.shape[-1]
    if top_k is not None and p_first:
        keep &= _probs_variant(scaled, 1.0, None, top_p, p_mode=p_mode) > 0  # the nucleus of the full distribution
        top_p = None
    if top_k is not None:
        k = min(max(top_k + k_shift, 1), V)
        kth = scaled.topk(k, dim=-1).values[..., -1:]  # (..., 1)
        keep &= scaled >= kth
    if top_p is not None:
        probs = torch.softmax(scaled.masked_fill(~keep, -math.inf), dim=-1)  # (..., V)
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # (..., V)
        cumulative = sorted_probs.cumsum(dim=-1)  # (..., V)
        if p_mode == "keep_crossing":
            keep_sorted = cumulative - sorted_probs < top_p
        else:
            keep_sorted = cumulative <= top_p
            if p_mode == "drop_crossing_keep_first":
                keep_sorted[..., 0] = True
        keep &= torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    if renormalise:
        return torch.softmax(scaled.masked_fill(~keep, -math.inf), dim=-1)  # (..., V)
    return torch.softmax(scaled, dim=-1) * keep  # (..., V), not renormalised


_GREEDY_HINT = (
    "temperature=0 means greedy: dividing by 0 gives inf and NaN, so handle it first and return the one-hot of "
    "the argmax (probability 1 on the largest logit, 0 elsewhere), e.g. "
    "torch.zeros_like(logits).scatter(-1, logits.argmax(dim=-1, keepdim=True), 1.0)"
)
_P_FIRST_HINT = (
    "top-p was applied before top-k: apply top_k first, then take the nucleus of the renormalised distribution "
    "of the kept tokens (temperature, top-k, top-p, softmax, in that order)"
)
_TEMPERATURE_HINT = "temperature applied the wrong way: divide the logits by the temperature (logits / temperature)"
_RENORMALISE_HINT = (
    "probabilities not renormalised: after dropping tokens the kept ones must sum to 1; fill dropped logits with "
    "-inf before the softmax (or divide by the new row sum)"
)


@_checker("09.1", "next_token_probs")
def check_next_token_probs(ex, next_token_probs_fn):
    """09.1: ``next_token_probs(logits (..., V), temperature=1.0, top_k=None, top_p=None) -> (..., V)``:
    divide by temperature (``temperature=0``: greedy, the one-hot of the argmax), keep the top_k largest logits,
    then keep the smallest set of most likely tokens whose mass reaches top_p (the token that crosses p is kept;
    computed after top-k), then softmax over what is left."""
    settings = [
        ((2, 10), {}, torch.float64),
        ((3, 8), {"temperature": 0.5}, torch.float32),
        ((2, 3, 12), {"temperature": 2.0}, torch.float64),
        ((4, 10), {"top_k": 3}, torch.float64),
        ((4, 10), {"top_p": 0.6}, torch.float32),
        ((3, 12), {"temperature": 0.8, "top_k": 6, "top_p": 0.7}, torch.float64),
        ((4, 10), {"top_k": 3, "top_p": 0.5}, torch.float64),  # flatter logits: the order of top-k and top-p shows
        ((3, 9), {"temperature": 0.0}, torch.float64),
        ((2, 2, 7), {"temperature": 0.0, "top_k": 3}, torch.float32),
    ]
    for shape, kwargs, dtype in settings:
        flat = kwargs.get("top_k") == 3 and kwargs.get("top_p") == 0.5
        logits = ex.randn(*shape, dtype=dtype, scale=0.5 if flat else 2.0)  # (..., V)
        case = (
            f"logits {_shape(logits)}"
            + (f", {_call_args_text((), kwargs)}" if kwargs else "")
            + f" {_dtype_name(dtype)}"
        )
        t, k, p = kwargs.get("temperature", 1.0), kwargs.get("top_k"), kwargs.get("top_p")
        got = _call(
            ex, next_token_probs_fn, logits, case=case, default_dtype=dtype, error_hint=_GREEDY_HINT if t == 0 else "",
            **kwargs,
        )  # fmt: skip
        expected = next_token_probs(logits, **kwargs)  # (..., V)
        if t == 0:
            _check_greedy_probs(ex, got, expected, logits, case)
            continue
        variants = [
            ("softmax over the wrong dimension: the probabilities of one position sum to 1 over the vocabulary "
             "(dim=-1)", torch.softmax(logits / t, dim=0)),
            ("returned log-probabilities: return softmax(...), the probabilities themselves",
             torch.log_softmax(logits / t, dim=-1)),
            (_TEMPERATURE_HINT, _probs_variant(logits, t, k, p, temperature_mode="multiply")),
            ("ignores temperature: divide the logits by it", _probs_variant(logits, t, k, p, temperature_mode="ignore")),
        ]  # fmt: skip
        if k is not None:
            variants += [
                ("top-k off by one: keep exactly top_k tokens (the k largest logits)",
                 _probs_variant(logits, t, k, p, k_shift=1)),
                ("top-k off by one: keep exactly top_k tokens (the k largest logits)",
                 _probs_variant(logits, t, k, p, k_shift=-1)),
                ("ignores top_k: keep only the top_k largest logits", _probs_variant(logits, t, None, p)),
            ]  # fmt: skip
        if p is not None:
            variants += [
                ("the top-p nucleus drops the token that crosses p: keep tokens while the mass *before* them is "
                 "below p, so the token that reaches p is kept", _probs_variant(logits, t, k, p, p_mode="drop_crossing")),
                ("the top-p nucleus drops the token that crosses p: keep tokens while the mass *before* them is "
                 "below p, so the token that reaches p is kept",
                 _probs_variant(logits, t, k, p, p_mode="drop_crossing_keep_first")),
                ("ignores top_p: keep the smallest set of most likely tokens whose mass reaches p",
                 _probs_variant(logits, t, k, None)),
            ]  # fmt: skip
        if k is not None and p is not None:
            variants.append((_P_FIRST_HINT, _probs_variant(logits, t, k, p, p_first=True)))
        if k is not None or p is not None:
            variants.append((_RENORMALISE_HINT, _probs_variant(logits, t, k, p, renormalise=False)))
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and got.is_floating_point():
            sums = got.double().sum(dim=-1)  # (...,)
            tol = _tolerance(got, expected)
            if not _close(got, expected, tol) and not any(_close(got, w, tol, equal_nan=True) for _, w in variants):
                if not torch.isnan(sums).any() and not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
                    ex.fail("the probabilities of a position do not sum to 1", _RENORMALISE_HINT, case)
        _compare(
            ex, got, expected, case=case, variants=variants,
            shape_hint="same shape as logits: one probability per vocabulary entry",
            nan_hint="a row became all -inf before the softmax: always keep at least the most likely token",
            generic_hint="apply the steps in this order: divide by temperature, keep the top_k largest logits, "
            "then keep the top-p nucleus of what is left (renormalised), then softmax over the kept tokens",
        )  # fmt: skip
    return (
        f"correct on {len(settings)} cases (temperature 0.5, 0.8, 2 and 0 = greedy; top-k; top-p keeps the crossing "
        "token; top-k before top-p)"
    )


def _check_greedy_probs(ex, got, expected, logits, case):
    """temperature=0: the one-hot of the argmax (whatever top_k and top_p are)."""
    if isinstance(got, torch.Tensor) and got.shape == logits.shape[:-1]:
        ex.fail(
            f"returned the ids of the largest logits, shape {_shape(got)}",
            "return probabilities (..., V): the one-hot of the argmax, a float tensor like the logits",
            case,
        )
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and not got.is_floating_point():
        ex.fail(
            f"the greedy probabilities are {_dtype_name(got.dtype)}, not a float tensor",
            "F.one_hot gives int64: convert with .to(logits.dtype), or build it as "
            "torch.zeros_like(logits).scatter(-1, logits.argmax(dim=-1, keepdim=True), 1.0)",
            case,
        )
    variants = [
        (_GREEDY_HINT, torch.softmax(logits / 0.0, dim=-1)),
        ("temperature=0 is ignored: it means greedy, probability 1 on the largest logit",
         torch.softmax(logits, dim=-1)),
        (_TEMPERATURE_HINT, torch.softmax(logits * 0.0, dim=-1)),
        ("the one-hot is on the smallest logit: temperature=0 puts probability 1 on the largest (argmax)",
         torch.zeros_like(logits).scatter(-1, logits.argmin(dim=-1, keepdim=True), 1.0)),
    ]  # fmt: skip
    _compare(
        ex, got, expected, case=case, variants=variants, nan_hint=_GREEDY_HINT,
        shape_hint="same shape as logits: one probability per vocabulary entry",
        generic_hint=_GREEDY_HINT,
    )  # fmt: skip


def _translation_model(ex: _Exercise, dtype: torch.dtype) -> Transformer:
    """A tiny random encoder-decoder whose greedy outputs vary between sources (untied output, random weights).

    The output row of the pad id is zero, so the model (almost) never predicts padding as a real token.
    """
    config = TransformerConfig(
        src_vocab_size=12, tgt_vocab_size=12, d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1,
        d_ff=32, dropout=0.0, tie_output=False, norm_first=True,
    )  # fmt: skip
    with _default_dtype(dtype):
        model = Transformer(config)
    _randomize_parameters(ex, model)
    model.output.weight[config.pad_id] = 0.0
    return model.to(dtype).eval()


def _greedy_without_eos(model: Transformer, src_ids: torch.Tensor, bos_id: int, steps: int) -> torch.Tensor:
    """bos_id and then ``steps`` most likely tokens per row, never stopping: (B, 1 + steps)."""
    memory, src_mask = model.encode(src_ids)  # (B, S, d_model), (B, 1, 1, S)
    ids = torch.full((src_ids.shape[0], 1), bos_id, dtype=torch.long)  # (B, 1)
    for _ in range(steps):
        logits = model.decode(ids, memory, src_mask)  # (B, T, V)
        ids = torch.cat([ids, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)  # (B, T + 1)
    return ids


def _varied_eos(generated: torch.Tensor, bos_id: int, pad_id: int, every_row_stops: bool = False) -> int:
    """The token whose first appearance differs most between rows, so rows stop at different steps.

    ``every_row_stops``: prefer a token every row produces before its last step, so the decoding ends before
    max_len (then a row that is not padded after eos shows apart from a decoding that never stops).
    """
    best_token, best_spread = -1, -1
    rows = generated.tolist()
    tokens = sorted(set(generated.flatten().tolist()) - {bos_id, pad_id})
    if every_row_stops:
        early = [t for t in tokens if all(t in row[: len(row) - 1] for row in rows)]
        tokens = early or tokens
    for token in tokens:
        first_steps = {row.index(token) if token in row else len(row) for row in rows}
        if len(first_steps) > best_spread:
            best_token, best_spread = token, len(first_steps)
    return best_token


@_checker("09.2", "greedy_decode")
def check_greedy_decode(ex, greedy_decode_fn):
    """09.2: ``greedy_decode(model, src_ids (B, S), bos_id, eos_id, max_len) -> (B, 1 + L)`` for a course_lib
    ``Transformer``: start with bos_id, append the most likely token until every row has produced eos_id or
    max_len tokens were added; a row that finished is filled with ``model.config.pad_id`` (like
    ``course_lib.generation.greedy_decode``; no cache needed)."""
    settings = [((1, 5), 6, "stops at max_len", torch.float64), ((4, 5), 8, "rows stop at eos", torch.float32),
                ((3, 6), 7, "source with padding, every row stops at eos before max_len", torch.float32)]  # fmt: skip
    bos_id = 1
    for (B, S), max_len, description, dtype in settings:
        model = _translation_model(ex, dtype)
        pad_id = model.config.pad_id
        src_ids = ex.randint(2, 12, (B, S))  # (B, S)
        if "padding" in description:
            src_ids[1:, -2:] = pad_id
        never_stops = _greedy_without_eos(model, src_ids, bos_id, max_len + 1)  # (B, 2 + max_len)
        if description == "stops at max_len":  # an eos_id the model never produces here
            eos_id = min(set(range(model.config.tgt_vocab_size)) - set(never_stops.flatten().tolist()) - {pad_id})
        else:
            eos_id = _varied_eos(never_stops[:, 1 : 1 + max_len], bos_id, pad_id, "every row" in description)
        case = f"{description}: src_ids {_shape(src_ids)}, bos_id={bos_id}, eos_id={eos_id}, max_len={max_len}"
        case += f", pad_id={pad_id} {_dtype_name(dtype)}"
        error_hint = (
            "the checker decodes a batch of sources (B rows at once): keep one row of ids per source, and call "
            "model.encode(src_ids) / model.decode(ids, memory, src_mask) or model(src_ids, ids)"
        )
        got = _call(ex, greedy_decode_fn, model, src_ids, bos_id, eos_id, max_len, case=case, error_hint=error_hint)
        expected = greedy_decode(model, src_ids, bos_id, eos_id, max_len, use_cache=False)  # (B, 1 + L)
        L = expected.shape[1]
        filled_with_eos = expected.clone()  # (B, 1 + L)
        for row in range(B):
            ended = (expected[row, 1:] == eos_id).nonzero()
            if len(ended):
                filled_with_eos[row, 2 + int(ended[0]) :] = eos_id
        variants = [
            ("the output must start with bos_id: begin with ids = [[bos_id]] and append each new token",
             expected[:, 1:]),
            ("did not stop at eos: stop once every row has produced eos_id", never_stops[:, : 1 + max_len]),
            ("a row that finished must be filled with the pad id (model.config.pad_id), not keep generating",
             never_stops[:, :L]),
            ("a row that finished must be filled with the pad id (model.config.pad_id), not with eos_id",
             filled_with_eos),
            ("one token too many: add at most max_len tokens after bos_id", never_stops),
            ("one token too few: add up to max_len tokens after bos_id", never_stops[:, :max_len]),
        ]  # fmt: skip
        _compare(
            ex, got, expected, case=case, variants=variants,
            shape_hint=f"(B, 1 + L): bos_id, then at most max_len={max_len} tokens, stopping once every row hit eos_id",
            generic_hint="at each step take the argmax of the logits of the last position and append it",
        )  # fmt: skip
    return f"correct on {len(settings)} cases (a batch of sources, stopping at eos_id or max_len, pad after eos)"


@_checker("09.3", "sequence_log_prob")
def check_sequence_log_prob(ex, sequence_log_prob_fn):
    """09.3: ``sequence_log_prob(logits (B, T, V), target_ids (B, T)) -> (B,)``: sum over t of
    ``log softmax(logits[b, t])[target_ids[b, t]]``."""
    settings = [(2, 5, 7, torch.float64), (3, 4, 10, torch.float32), (1, 1, 3, torch.float64), (4, 3, 6, torch.float32)]
    for B, T, V, dtype in settings:
        logits = ex.randn(B, T, V, dtype=dtype, scale=2.0)  # (B, T, V)
        target_ids = ex.randint(0, V, (B, T))  # (B, T)
        case = f"logits {_shape(logits)}, target_ids {_shape(target_ids)} {_dtype_name(dtype)}"
        got = _call(ex, sequence_log_prob_fn, logits, target_ids, case=case, default_dtype=dtype)
        token_log_probs = -F.cross_entropy(logits.transpose(1, 2), target_ids, reduction="none")  # (B, T)
        expected = token_log_probs.sum(dim=-1)  # (B,)

        def picked(values, target_ids=target_ids):
            return values.gather(-1, target_ids[..., None]).squeeze(-1)  # (B, T)

        variants = [
            ("summed probabilities: sum the log-probabilities (log_softmax), not the probabilities",
             picked(torch.softmax(logits, dim=-1)).sum(-1)),
            ("forgot log_softmax: raw logits are not log-probabilities", picked(logits).sum(-1)),
            ("averaged over positions: sum the log-probabilities instead of taking the mean",
             token_log_probs.mean(dim=-1)),
            ("log_softmax over the wrong dimension: normalise over the vocabulary (dim=-1)",
             picked(torch.log_softmax(logits, dim=1)).sum(-1)),
            ("returned the probability of the sequence: return its log (the sum of log-probabilities)",
             expected.exp()),
            ("returned the negative log-likelihood: the log-probability is its negative", -expected),
        ]  # fmt: skip
        _compare(
            ex, got, expected, case=case, variants=variants,
            shape_hint="one number per sequence: (B,); sum over the T positions only",
        )  # fmt: skip
    return f"correct on {len(settings)} cases (several B, T, V; float32 and float64)"
