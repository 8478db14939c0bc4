"""Checkers of exercises 11: train a tiny GPT (sampling, perplexity, the language-model loss)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_lib.checks._machinery import (
    _as_number,
    _call,
    _checker,
    _compare,
    _compare_number,
    _default_dtype,
    _dtype_name,
    _randomize_parameters,
    _require_tensor,
    _shape,
)
from course_lib.generation import generate
from course_lib.models import GPT, GPTConfig

VOCAB = 12


def _random_gpt(ex, dtype=torch.float64):
    """A small random GPT whose next-token distributions are far from uniform."""
    with _default_dtype(dtype):
        model = GPT(GPTConfig(vocab_size=VOCAB, context_length=32, d_model=16, n_heads=2, n_layers=1))
    _randomize_parameters(ex, model)
    return model.to(dtype).eval()


# ---------------------------------------------------------------------------------------------
# 11.1 a sampling loop
# ---------------------------------------------------------------------------------------------

_GENERATOR_HINT = (
    "draw from the generator you are given: torch.multinomial(probs, num_samples=1, generator=generator); "
    "then the same seed gives the same text, and the global random state is left alone"
)
_SAMPLING_MISTAKES = {
    "multiply": "temperature applied the wrong way: divide the logits by the temperature, logits / temperature",
    "ignore": "ignores the temperature: divide the last position's logits by it before the softmax",
    "argmax": (
        "took the most likely token (argmax) every time: sample it instead, "
        "torch.multinomial(probs, num_samples=1, generator=generator)"
    ),
    "first": "used the logits of the first position: the next token comes from the last one, logits[:, -1, :]",
    "no_feedback": (
        "every new token was predicted from the prompt alone: append each new token to the sequence and run the "
        "model on the extended sequence"
    ),
    "softmax_dim0": "softmax over the wrong dimension: normalise over the vocabulary, dim=-1",
}


def _sample_variant(model, prompt_ids, max_new_tokens, temperature, seed, mode):
    """What a (wrong) sampling loop that draws with torch.multinomial and the generator gives."""
    generator = torch.Generator().manual_seed(seed)
    ids = prompt_ids
    for _ in range(max_new_tokens):
        logits = model(prompt_ids if mode == "no_feedback" else ids)  # (B, T, V)
        last = logits[:, 0, :] if mode == "first" else logits[:, -1, :]  # (B, V)
        if mode == "argmax":
            next_ids = last.argmax(dim=-1, keepdim=True)  # (B, 1)
        else:
            scaled = {"multiply": last * temperature, "ignore": last}.get(mode, last / temperature)  # (B, V)
            probs = torch.softmax(scaled, dim=0 if mode == "softmax_dim0" else -1)  # (B, V)
            next_ids = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
        ids = torch.cat([ids, next_ids], dim=1)  # (B, T + 1)
    return ids


def _sampling_error_hint(error: Exception) -> str:
    text = str(error)
    if "probability tensor contains" in text or "invalid multinomial distribution" in text:
        return (
            "torch.multinomial needs probabilities (finite, >= 0): turn the logits into probabilities with "
            "torch.softmax(logits / temperature, dim=-1) first"
        )
    if "exceeds context_length" in text:
        return "run the model on the sequence so far (prompt plus the tokens drawn), not on a longer one"
    if "Expected all tensors" in text or "expected scalar type" in text or "dtype" in text:
        return "token ids are int64: torch.multinomial returns int64 ids, keep them as they are when you concatenate"
    return "read the error message; each step is: logits of the last position, / temperature, softmax, draw, append"


@_checker("11.1", "sample_sequence")
def check_sample_sequence(ex, sample_fn):
    """11.1: ``sample_sequence(model, prompt_ids (B, T), max_new_tokens, temperature, generator) -> (B, T + new)``:
    ``max_new_tokens`` times, run the model on the sequence so far, divide the last position's logits by the
    temperature, softmax, draw one token per row with the generator, append it. Compared with
    ``course_lib.generation.generate`` (same generator, same tokens); a loop that draws from the generator in
    another way passes a test of the distribution of its tokens instead."""
    settings = [((3, 4), 6, 0.8, 1), ((2, 2), 8, 1.5, 2), ((1, 1), 5, 0.3, 3), ((4, 3), 4, 1.0, 4)]
    model = _random_gpt(ex)
    for (B, T), max_new_tokens, temperature, seed in settings:
        prompt_ids = ex.randint(0, VOCAB, (B, T))  # (B, T)
        case = (
            f"a random GPT (V={VOCAB}), prompt_ids {_shape(prompt_ids)}, max_new_tokens={max_new_tokens}, "
            f"temperature={temperature}, generator seeded {seed}"
        )
        global_state = torch.get_rng_state()
        got = _call(ex, sample_fn, model, prompt_ids, max_new_tokens, temperature, torch.Generator().manual_seed(seed),
                    case=case, error_hint=_sampling_error_hint)  # fmt: skip
        used_global = not torch.equal(global_state, torch.get_rng_state())
        expected = generate(model, prompt_ids, max_new_tokens, temperature=temperature,
                            generator=torch.Generator().manual_seed(seed), use_cache=False)  # fmt: skip
        _require_tensor(ex, got, "output", case, f"of shape {_shape(expected)}")
        if isinstance(got, torch.Tensor) and torch.equal(got.long(), expected) and got.dtype == torch.int64:
            continue
        _check_sample_shape(ex, got, prompt_ids, max_new_tokens, case)
        variants = [
            (_SAMPLING_MISTAKES[mode], _sample_variant(model, prompt_ids, max_new_tokens, temperature, seed, mode))
            for mode in _SAMPLING_MISTAKES
        ]
        for hint, wrong in variants:
            if torch.equal(got, wrong) and not torch.equal(wrong, expected):
                ex.fail("the tokens drawn are not right", hint, case)
        if used_global:
            ex.fail("the draw used PyTorch's global random numbers, not the generator", _GENERATOR_HINT, case)
        _check_sample_distribution(ex, sample_fn, model, case)
    return f"correct on {len(settings)} cases (several batches, prompts and temperatures; the generator's draws)"


def _check_sample_shape(ex, got, prompt_ids, max_new_tokens, case):
    B, T = prompt_ids.shape
    if got.dtype != torch.int64:
        ex.fail(f"wrong dtype: got {_dtype_name(got.dtype)}, expected torch.int64 (token ids)",
                "keep the ids torch.multinomial returns (int64), and concatenate them to the prompt", case)  # fmt: skip
    if tuple(got.shape) == (B, max_new_tokens):
        ex.fail(f"returned only the {max_new_tokens} new tokens, shape {_shape(got)}",
                "return the prompt followed by the new tokens, (B, T + max_new_tokens)", case)  # fmt: skip
    if tuple(got.shape) != (B, T + max_new_tokens):
        ex.fail(f"wrong output shape: expected (B, T + max_new_tokens) = ({B}, {T + max_new_tokens}), got "
                f"{_shape(got)}", "draw exactly max_new_tokens tokens, one per row at each step, and append each "
                "to the sequence with torch.cat([ids, next_ids], dim=1)", case)  # fmt: skip
    if not torch.equal(got[:, :T], prompt_ids):
        ex.fail("the output does not start with the prompt", "start from ids = prompt_ids and append each new "
                "token to the end", case)  # fmt: skip


def _check_sample_distribution(ex, sample_fn, model, case):
    """The learner draws with the generator, but not as generate does: test the distribution of the first two
    new tokens over 1000 copies of one prompt (a correct loop is within 0.12 in total variation; the noise of 1000
    draws is about 0.04)."""
    n, temperature, tolerance = 1000, 0.7, 0.12
    prompt = torch.tensor([[3, 7, 1]])  # (1, T)
    prompts = prompt.expand(n, -1).clone()  # (n, T)
    few = prompts[:3]  # (3, T)
    once = _call(ex, sample_fn, model, few, 4, temperature, torch.Generator().manual_seed(5), case=case)
    again = _call(ex, sample_fn, model, few, 4, temperature, torch.Generator().manual_seed(5), case=case)
    if not (isinstance(once, torch.Tensor) and isinstance(again, torch.Tensor) and torch.equal(once, again)):
        ex.fail("two runs with equally seeded generators gave different tokens", _GENERATOR_HINT, case)
    draws = _call(ex, sample_fn, model, prompts, 2, temperature, torch.Generator().manual_seed(5),
                  case=case + f"; {n} copies of one prompt", error_hint=_sampling_error_hint)  # fmt: skip
    _check_sample_shape(ex, draws, prompts, 2, case + f"; {n} copies of one prompt")
    first = torch.softmax(model(prompt)[0, -1] / temperature, dim=-1)  # (V,)
    extended = torch.cat([prompt.expand(VOCAB, -1), torch.arange(VOCAB)[:, None]], dim=1)  # (V, T + 1)
    second = first @ torch.softmax(model(extended)[:, -1] / temperature, dim=-1)  # (V,)
    for position, expected in ((0, first), (1, second)):
        counts = torch.bincount(draws[:, prompt.shape[1] + position], minlength=VOCAB).double()  # (V,)
        distance = 0.5 * (counts / n - expected).abs().sum().item()
        if distance > tolerance:
            ex.fail(
                f"the {'first' if position == 0 else 'second'} new token does not follow softmax(logits / "
                f"temperature): over {n} draws its frequencies are {distance:.2f} from the model's probabilities "
                "(total variation)",
                "at each step take the logits of the last position of the sequence so far, divide by the temperature, "
                "softmax over the vocabulary, and draw one token per row",
                case,
            )


# ---------------------------------------------------------------------------------------------
# 11.2 perplexity
# ---------------------------------------------------------------------------------------------


@_checker("11.2", "perplexity")
def check_perplexity(ex, perplexity_fn):
    """11.2: ``perplexity(token_nll) -> float``: ``exp`` of the mean of the per-token losses (in nats), over all
    the entries of ``token_nll`` (any shape)."""
    settings = [((7,), torch.float64, 4.0), ((3, 5), torch.float32, 3.0), ((1,), torch.float64, 2.0),
                ((200,), torch.float64, 0.05), ((4, 6), torch.float64, None)]  # fmt: skip
    for shape, dtype, spread in settings:
        if spread is None:  # a uniform guess over 71 tokens: every token costs log 71
            token_nll = torch.full(shape, math.log(71), dtype=dtype)
            described = f"token_nll {shape} all equal to log(71) (a uniform guess over 71 tokens)"
        else:
            token_nll = ex.randn(*shape, dtype=dtype).abs() * spread  # losses are >= 0
            described = f"token_nll {_shape(token_nll)} {_dtype_name(dtype)}"
        got = _call(ex, perplexity_fn, token_nll, case=described, default_dtype=dtype)
        if isinstance(got, torch.Tensor) and got.numel() > 1:
            ex.fail(f"the perplexity must be one number, got a tensor of shape {_shape(got)}", "perplexity is one "
                    "number for all the tokens: exp of the mean over every entry, token_nll.mean()", described)  # fmt: skip
        got = _as_number(ex, got, "perplexity", described)
        values = token_nll.double()
        mean = values.mean().item()
        expected = math.exp(mean)
        variants = [
            ("exp of the sum: perplexity is exp of the *mean* loss per token", math.exp(values.sum().item())),
            ("base 2: the losses are in nats (natural log), so use exp(mean), not 2 ** mean", 2.0**mean),
            ("base 10: the losses are in nats (natural log), so use exp(mean), not 10 ** mean", 10.0**mean),
            ("mean of the exps: take the mean loss first, then exp of it", values.exp().mean().item()),
            ("returned the mean loss: perplexity is exp of it", mean),
            ("exp of minus the mean: the losses are already negative log-probabilities, so exp(+mean)",
             math.exp(-mean)),
            ("log of the mean: perplexity is exp of the mean loss", math.log(mean) if mean > 0 else math.nan),
        ]  # fmt: skip
        _compare_number(
            ex, got, expected, variants, problem=f"got {got:.6g}, expected {expected:.6g}", case=described,
            rel=1e-5, generic_hint="perplexity = exp(token_nll.mean()): the mean over every entry, then exp",
        )  # fmt: skip
    return (
        f"correct on {len(settings)} cases (1-D and 2-D losses, float32 and float64; a uniform guess over 71 gives 71)"
    )


# ---------------------------------------------------------------------------------------------
# 11.3 the language-model loss
# ---------------------------------------------------------------------------------------------

_LM_PADDING_HINT = (
    "padding was counted: leave out the positions whose target is pad_id (F.cross_entropy(..., ignore_index=pad_id))"
)


def _lm_error_hint(error: Exception) -> str:
    text = str(error)
    if "Expected target size" in text or "Expected input batch_size" in text:
        return (
            "F.cross_entropy wants (N, V) logits and (N,) targets: flatten with logits.reshape(-1, V) and "
            "targets.reshape(-1)"
        )
    if "exceeds context_length" in text:
        return "the model reads ids[:, :-1]"
    return "read the error message; the model reads ids[:, :-1] and the targets are ids[:, 1:]"


@_checker("11.3", "language_model_loss")
def check_language_model_loss(ex, loss_fn):
    """11.3: ``language_model_loss(model, ids (B, T + 1), pad_id) -> 0-d tensor``: the model reads ``ids[:, :-1]``
    and is scored on predicting ``ids[:, 1:]``; the mean cross-entropy over the targets that are not ``pad_id``;
    differentiable with respect to the model's parameters."""
    settings = [((3, 7), 0, [7, 5, 3], torch.float64), ((2, 5), 0, [5, 5], torch.float64),
                ((4, 6), 11, [6, 4, 4, 2], torch.float32)]  # fmt: skip
    for (B, T1), pad_id, lengths, dtype in settings:
        model = _random_gpt(ex, dtype)
        real = torch.arange(T1)[None, :] < torch.tensor(lengths)[:, None]  # (B, T + 1)
        ids = ex.randint(1, VOCAB - 1, (B, T1)).masked_fill(~real, pad_id)  # (B, T + 1): <pad> at the end
        case = f"a random GPT (V={VOCAB}), ids {_shape(ids)} with pad_id={pad_id} at the end of {int((~real).any(1).sum())}"
        case += f" rows {_dtype_name(dtype)}"
        with torch.enable_grad():
            got = _call(ex, loss_fn, model, ids, pad_id, case=case, default_dtype=dtype, error_hint=_lm_error_hint)
            if isinstance(got, int | float) and not isinstance(got, bool):
                ex.fail("returned a Python number, not a tensor", "return the loss tensor itself (no .item()): "
                        "training calls loss.backward() on it", case)  # fmt: skip
            _require_tensor(ex, got, "loss", case, "of shape () (one number)")
            if not got.requires_grad:
                ex.fail("the loss is not connected to the model's parameters", "compute it from model(...) outside "
                        "torch.no_grad(), with torch operations only (no .item() or torch.tensor(...))", case)  # fmt: skip
            logits = model(ids[:, :-1])  # (B, T, V)
            V = logits.shape[-1]
            expected = F.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1), ignore_index=pad_id)  # ()
        got = got.detach()
        if got.shape != ():
            ex.fail(f"the loss must be one number, shape (), got {_shape(got)}",
                    "average the per-token losses over every target that is not pad_id", case)  # fmt: skip
        with torch.no_grad():
            variants = _lm_variants(model, ids, pad_id)
        _compare(ex, got, expected.detach(), case=case, what="loss", variants=variants,
                 tol=1e-5 if dtype == torch.float32 else 1e-9,
                 generic_hint="logits = model(ids[:, :-1]); targets = ids[:, 1:]; F.cross_entropy over the flattened "
                 "positions with ignore_index=pad_id")  # fmt: skip
    return f"correct on {len(settings)} cases (padding left out, pad_id 0 and 11, float32 and float64, differentiable)"


def _lm_variants(model, ids, pad_id):
    def loss(logits, targets, ignore=pad_id, reduction="mean"):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore,
                               reduction=reduction)  # fmt: skip

    inputs, targets = ids[:, :-1], ids[:, 1:]  # (B, T) each
    logits = model(inputs)  # (B, T, V)
    full = model(ids)  # (B, T + 1, V)
    real = targets != pad_id  # (B, T)
    per_token = loss(logits, targets, reduction="none").reshape(targets.shape)  # (B, T), 0 at padding
    return [
        ("not shifted: the model must predict the *next* token, so the targets are ids[:, 1:] while it reads "
         "ids[:, :-1]", loss(full, ids)),
        ("not shifted: the model reads ids[:, :-1] and is scored on the next tokens, ids[:, 1:] (not ids[:, :-1])",
         loss(logits, inputs)),
        ("shifted the wrong way: the model reads ids[:, :-1] and predicts ids[:, 1:]", loss(model(targets), inputs)),
        (_LM_PADDING_HINT, loss(logits, targets, ignore=-100)),
        ("summed: the loss is the mean over the real target tokens", per_token.sum()),
        ("averaged each sequence first: average over all the real targets of the batch at once",
         (per_token.sum(-1) / real.sum(-1).clamp(min=1)).mean()),
        ("divided by every position: divide by the number of real targets, not by B * T",
         per_token.sum() / per_token.numel()),
    ]  # fmt: skip
