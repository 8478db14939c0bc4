"""Decoding: probabilities, sampling, greedy, beam search and the key/value cache."""

import pytest
import torch

from course_lib.generation import beam_search, generate, greedy_decode, next_token_probs, sample_next_token
from course_lib.models import GPT, GPTConfig, Transformer, TransformerConfig

BOS, EOS, PAD = 1, 2, 0


def small_gpt(seed=0, **overrides):
    torch.manual_seed(seed)
    config = dict(vocab_size=23, context_length=40, d_model=32, n_heads=4, n_layers=2)
    config.update(overrides)
    return GPT(GPTConfig(**config)).eval()


def small_transformer(seed=0, **overrides):
    torch.manual_seed(seed)
    config = dict(
        src_vocab_size=19, tgt_vocab_size=17, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2,
        d_ff=64, dropout=0.0, max_len=64, pad_id=PAD,
    )  # fmt: skip
    config.update(overrides)
    return Transformer(TransformerConfig(**config)).eval()


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    base = next_token_probs(logits)
    cold = next_token_probs(logits, temperature=0.5)
    hot = next_token_probs(logits, temperature=2.0)
    assert torch.allclose(base, torch.softmax(logits, -1))
    assert cold[0] > base[0] > hot[0]
    assert torch.allclose(cold, torch.softmax(logits * 2, -1))
    assert torch.equal(next_token_probs(logits, temperature=0), torch.tensor([1.0, 0.0, 0.0, 0.0]))


def test_top_k_keeps_exactly_k_and_renormalises():
    logits = torch.randn(3, 5, 50)
    for k in (1, 3, 10):
        probs = next_token_probs(logits, top_k=k)
        assert ((probs > 0).sum(-1) == k).all()
        assert torch.allclose(probs.sum(-1), torch.ones(3, 5))
        kept_logits_min = torch.where(probs > 0, logits, torch.inf).amin(-1)
        dropped_logits_max = torch.where(probs > 0, -torch.inf, logits).amax(-1)
        assert (kept_logits_min > dropped_logits_max).all()


def test_top_p_keeps_the_token_that_crosses_p():
    probs_in = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs_in.log()
    # 0.5 < 0.6, then 0.5 + 0.3 = 0.8 crosses 0.6: the nucleus is the first two tokens.
    nucleus = next_token_probs(logits, top_p=0.6)
    assert torch.allclose(nucleus, torch.tensor([0.5, 0.3, 0.0, 0.0]) / 0.8)
    # just past 0.8, the third token is needed to reach p
    assert torch.allclose(next_token_probs(logits, top_p=0.85), torch.tensor([0.5, 0.3, 0.15, 0]) / 0.95)
    # a tiny p keeps the single most likely token
    assert torch.allclose(next_token_probs(logits, top_p=0.01), torch.tensor([1.0, 0, 0, 0]))


def test_top_p_works_on_unsorted_batches():
    logits = torch.randn(4, 30)
    probs = next_token_probs(logits, top_p=0.9)
    full = torch.softmax(logits, -1)
    for row in range(4):
        kept = probs[row] > 0
        assert full[row][kept].sum() >= 0.9 - 1e-12
        # dropping the least likely kept token would fall below p
        assert full[row][kept].sum() - full[row][kept].min() < 0.9


def test_sampling_is_reproducible_with_a_generator():
    probs = torch.softmax(torch.randn(6, 40), -1)
    first = sample_next_token(probs, torch.Generator().manual_seed(7))
    second = sample_next_token(probs, torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    assert first.shape == (6,)


def test_sampling_follows_the_distribution():
    probs = torch.tensor([[0.7, 0.2, 0.1]]).expand(20000, 3)
    draws = sample_next_token(probs, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(draws, minlength=3).double() / 20000
    assert torch.allclose(frequencies, torch.tensor([0.7, 0.2, 0.1]), atol=0.015)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_gpt_generation_with_cache_equals_recomputing(temperature):
    model = small_gpt()
    prompt = torch.randint(0, 23, (3, 5))
    with_cache = generate(
        model, prompt, 25, temperature=temperature, top_k=10, generator=torch.Generator().manual_seed(1)
    )
    without = generate(
        model, prompt, 25, temperature=temperature, top_k=10, generator=torch.Generator().manual_seed(1),
        use_cache=False,
    )  # fmt: skip
    assert with_cache.shape == (3, 30)
    assert torch.equal(with_cache, without)


def test_gpt_cached_logits_equal_full_forward():
    model = small_gpt()
    ids = torch.randint(0, 23, (2, 12))
    full = model(ids)
    cache = model.new_cache()
    pieces = [model(ids[:, :5], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(5, 12)]
    stepwise = torch.cat(pieces, dim=1)
    assert (stepwise - full).abs().max() < 1e-12


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_last_token_only_logits_are_the_last_row_of_the_full_logits(family):
    """Generation asks for the last position's logits only (the output layer is the largest
    product); they are the last row of the full forward pass, with and without a cache."""
    from course_lib.llama import Llama, LlamaConfig

    torch.manual_seed(0)
    if family == "gpt":
        model = small_gpt()
    else:
        config = LlamaConfig(vocab_size=23, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, context_length=40)
        model = Llama(config).eval()
    ids = torch.randint(0, 23, (2, 9))  # (B, T)
    with torch.no_grad():
        full = model(ids)  # (B, T, V)
        last = model(ids, last_token_only=True)  # (B, 1, V)
        assert last.shape == (2, 1, 23)
        torch.testing.assert_close(last, full[:, -1:], rtol=0, atol=1e-6)
        cache = model.new_cache()
        model(ids[:, :5], cache=cache, last_token_only=True)  # the cache still holds all 5 positions
        assert len(cache[0]) == 5
        continued = model(ids[:, 5:], cache=cache, last_token_only=True)  # (B, 1, V)
    torch.testing.assert_close(continued, full[:, -1:], rtol=0, atol=1e-5)


def test_encoder_decoder_greedy_with_cache_equals_recomputing():
    model = small_transformer()
    src = torch.randint(3, 19, (4, 9))
    src[1, 6:] = PAD
    with_cache = greedy_decode(model, src, BOS, EOS, max_len=20)
    without = greedy_decode(model, src, BOS, EOS, max_len=20, use_cache=False)
    assert torch.equal(with_cache, without)
    assert (with_cache[:, 0] == BOS).all()


def test_encoder_decoder_cached_logits_equal_full_decode():
    model = small_transformer()
    src, tgt = torch.randint(3, 19, (2, 7)), torch.randint(3, 17, (2, 6))
    memory, src_mask = model.encode(src)
    full = model.decode(tgt, memory, src_mask)
    cache = model.decoder.new_cache()
    stepwise = torch.cat([model.decode(tgt[:, t : t + 1], memory, src_mask, cache) for t in range(6)], dim=1)
    assert (stepwise - full).abs().max() < 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_beam_search_with_beam_one_equals_greedy(seed):
    model = small_transformer(seed=seed)
    src = torch.randint(3, 19, (1, 8))
    greedy = greedy_decode(model, src, BOS, EOS, max_len=15)
    beam = beam_search(model, src, BOS, EOS, beam_size=1, max_len=15)
    assert torch.equal(beam, greedy)


def sequence_log_prob(model, src, hypothesis):
    memory, src_mask = model.encode(src)
    logits = model.decode(hypothesis[:, :-1], memory, src_mask)
    log_probs = torch.log_softmax(logits, -1)
    return log_probs.gather(-1, hypothesis[:, 1:, None]).sum().item()


def test_beam_search_wide_enough_is_exhaustive_search():
    """With beam_size >= V**(L-1) no hypothesis is ever pruned, so beam search must find the most
    likely sequence of length L, which we find here by brute force over all V**L sequences."""
    import itertools

    V, L, NEVER = 4, 3, 99  # an end token outside the vocabulary: every hypothesis runs L steps
    for seed in range(3):
        model = small_transformer(seed=seed, tgt_vocab_size=V)
        src = torch.randint(3, 19, (1, 8))
        beam = beam_search(model, src, BOS, NEVER, beam_size=V ** (L - 1), max_len=L, alpha=0.0)
        candidates = [torch.tensor([[BOS, *tokens]]) for tokens in itertools.product(range(V), repeat=L)]
        best = max(candidates, key=lambda hypothesis: sequence_log_prob(model, src, hypothesis))
        assert torch.equal(beam, best)
        greedy = greedy_decode(model, src, BOS, NEVER, max_len=L)
        assert sequence_log_prob(model, src, beam) >= sequence_log_prob(model, src, greedy) - 1e-12


def test_length_penalty_favours_longer_hypotheses():
    from course_lib.generation import length_penalty

    assert length_penalty(1, 0.0) == 1.0
    assert length_penalty(10, 0.6) > length_penalty(2, 0.6) > 1.0


def test_generation_stops_at_eos():
    model = small_gpt()
    prompt = torch.randint(0, 23, (2, 3))
    out = generate(model, prompt, 30, temperature=0)
    eos = int(out[0, 5])  # pretend the token greedy decoding produced at step 3 is the end token
    stopped = generate(model, prompt, 30, temperature=0, eos_id=eos)
    assert stopped.shape[1] <= out.shape[1]
    assert (stopped == eos).any(dim=1).all() or stopped.shape[1] == out.shape[1]


def test_greedy_with_cache_equals_recomputing_even_when_the_model_emits_padding():
    model = small_transformer(seed=3, tie_output=False)
    with torch.no_grad():  # make the pad token the favourite next token, wherever it appears
        model.output.weight[PAD] = 50 * model.output.weight.mean(0) + 10 * model.output.weight[PAD]
    src = torch.randint(3, 19, (3, 6))
    with_cache = greedy_decode(model, src, BOS, EOS, max_len=8)
    without = greedy_decode(model, src, BOS, EOS, max_len=8, use_cache=False)
    assert (with_cache[:, 1:] == PAD).any()
    assert torch.equal(with_cache, without)
