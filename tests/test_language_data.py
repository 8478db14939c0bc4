"""Tests of lesson 11's corpus: the grammar, its exact probabilities, the floor, the baselines, the checkpoint.

Expected probabilities below are worked out by hand from the grammar's description in
``course_lib/data/grammar.py`` (its constants), not copied from the sampler's output.
"""

import itertools
import math
import random

import pytest
import torch

from course_lib import tiny_gpt
from course_lib.data import grammar
from course_lib.models import GPT, GPTConfig
from course_lib.tokenization import BOS_ID, EOS_ID, PAD_ID
from course_lib.training import weights_fingerprint


@pytest.fixture(scope="module")
def corpus():
    return grammar.sample_corpus(3000, seed=7)


# ---------------------------------------------------------------- the sampler


def test_same_seed_same_corpus_and_different_seed_differs():
    first = [s.words for s in grammar.sample_corpus(50, seed=1)]
    assert first == [s.words for s in grammar.sample_corpus(50, seed=1)]
    assert first != [s.words for s in grammar.sample_corpus(50, seed=2)]


def test_one_log_prob_and_role_per_token(corpus):
    for sentence in corpus:
        assert len(sentence.log_probs) == len(sentence.roles) == len(sentence.words) + 1 == sentence.n_tokens
        assert sentence.words[-1] == "."
        assert sentence.log_probs[-1] == 0.0  # <eos> always follows the final "."
        assert all(lp <= 0.0 for lp in sentence.log_probs)


def test_every_word_is_in_the_tokenizer_vocabulary(corpus):
    tokenizer = grammar.make_tokenizer()
    assert len(set(grammar.vocabulary_words())) == len(grammar.vocabulary_words())
    for sentence in corpus:
        assert tokenizer.unk_id not in tokenizer.encode(sentence.text)
        assert tokenizer.tokenize(sentence.text) == sentence.words


def test_hand_computed_log_probs_of_a_short_sentence():
    # "the dog runs ." with P(form=plain)=0.4, P(no adjective)=0.75, noun+number 1/16,
    # P(no relative)=0.5, P(intransitive)=0.5, verb 1/5, P(no place)=0.6, P(no aside at depth 0)=0.65.
    parsed = grammar.parse_sentence("the dog runs .")
    expected = [
        math.log(0.4),  # "the": the sentence is plain
        math.log(0.75 / 16),  # "dog"
        math.log(0.5 * 0.5 / 5),  # "runs": no relative clause, no object, verb "run"
        math.log(0.6 * 0.65),  # ".": no place, no aside
        0.0,  # <eos>
    ]
    assert parsed.log_probs == pytest.approx(expected, abs=1e-12)


def test_first_word_frequencies_match_the_stored_probabilities():
    # The stored log-probability of the first word is log P(first word): check it against counts.
    sentences = grammar.sample_corpus(20000, seed=3)
    counts = {}
    for sentence in sentences:
        counts[sentence.words[0]] = counts.get(sentence.words[0], 0) + 1
    for sentence in sentences[:200]:
        p = math.exp(sentence.log_probs[0])
        observed = counts[sentence.words[0]] / len(sentences)
        assert abs(observed - p) < 4 * math.sqrt(p * (1 - p) / len(sentences))
    assert set(counts) == {"the", "if", "either", "when"}


# ---------------------------------------------------------------- unambiguity


def test_parser_recovers_every_choice_and_log_prob(corpus):
    for sentence in corpus:
        parsed = grammar.parse_sentence(sentence.words)
        assert parsed.choices == sentence.choices
        assert parsed.log_probs == sentence.log_probs
        assert parsed.roles == sentence.roles


def test_options_of_every_choice_start_with_different_words():
    # If two options of a choice could start with the same word, the words would not
    # determine the derivation. Check every choice point's first-word sets are disjoint.
    tables = [value for name, value in vars(grammar).items() if name.startswith("_FIRST_")]
    tables = [table for table in tables if all(isinstance(words, set) for words in table.values())]
    tables += list(grammar._FIRST_VERB.values())
    assert len(tables) >= 12
    for table in tables:
        for (a, words_a), (b, words_b) in itertools.combinations(table.items(), 2):
            assert not (words_a & words_b), f"options {a!r} and {b!r} share first words {words_a & words_b}"


@pytest.mark.parametrize(
    "text",
    [
        "the dog that the cats chase sleep .",  # agreement broken across the relative clause
        "the dogs run ( the cat sleeps ] .",  # wrong closing bracket
        "the dogs run ( the cat sleeps .",  # bracket never closed
        "if the dog runs , or the cat sleeps .",  # "if" needs "then"
        "either the dog runs , then the cat sleeps .",  # "either" needs "or"
        "the dog runs ( the cat runs [ the bird runs { the fox runs ( the girl runs ) } ] ) .",  # depth 4
        "the dog runs . the cat",  # trailing words
    ],
)
def test_parser_rejects_sentences_outside_the_grammar(text):
    with pytest.raises(ValueError, match="parse_sentence"):
        grammar.parse_sentence(text)


# ---------------------------------------------------------------- the three dependencies


def _number_of(word: str, table) -> str:
    for singular, plural in table.values():
        if word == singular:
            return "sg"
        if word == plural:
            return "pl"
    raise AssertionError(f"{word!r} not in the table")


def test_agreement_spans_five_or_more_tokens_and_agrees(corpus):
    verbs = {**grammar.TRANSITIVE_VERBS, **grammar.INTRANSITIVE_VERBS}
    n_links = 0
    for sentence in corpus:
        for role, i, j in sentence.links:
            if role != grammar.ROLE_AGREEMENT:
                continue
            n_links += 1
            assert j - i >= 5
            assert "that" in sentence.words[i:j]
            assert _number_of(sentence.words[i], grammar.NOUNS) == _number_of(sentence.words[j], verbs)
            assert sentence.roles[j] == grammar.ROLE_AGREEMENT
    assert n_links > 500


def test_brackets_are_nested_up_to_depth_three_and_closed_in_order(corpus):
    max_depth = 0
    for sentence in corpus:
        stack = []
        for index, word in enumerate(sentence.words):
            if word in grammar.BRACKETS:
                stack.append((word, index))
                max_depth = max(max_depth, len(stack))
            elif word in grammar.BRACKETS.values():
                opening, opening_index = stack.pop()
                assert grammar.BRACKETS[opening] == word
                assert (grammar.ROLE_CLOSING, opening_index, index) in sentence.links
        assert stack == []
    assert max_depth == 3


def test_opening_word_decides_the_word_after_the_comma(corpus):
    seen = set()
    for sentence in corpus:
        first = sentence.words[0]
        if first in ("if", "either"):
            # the first comma at bracket depth 0 is the one that joins the two clauses
            depth, comma = 0, None
            for index, word in enumerate(sentence.words):
                depth += (word in grammar.BRACKETS) - (word in grammar.BRACKETS.values())
                if word == "," and depth == 0:
                    comma = index
                    break
            expected = {"if": "then", "either": "or"}[first]
            assert sentence.words[comma + 1] == expected
            assert (grammar.ROLE_CONNECTIVE, 0, comma + 1) in sentence.links
            seen.add(first)
        else:
            assert "then" not in sentence.words and "or" not in sentence.words
    assert seen == {"if", "either"}


# ---------------------------------------------------------------- the floor


def test_floor_estimate_is_precise_and_two_estimates_agree():
    first = grammar.estimate_entropy_floor(30000, seed=1)
    second = grammar.estimate_entropy_floor(30000, seed=2)
    assert first.standard_error < 0.005
    combined_se = math.hypot(first.standard_error, second.standard_error)
    assert abs(first.nats_per_token - second.nats_per_token) < 4 * combined_se
    # The ratio of sums, recomputed by hand from the sentences of seed 1.
    rng = random.Random(1)
    sentences = [grammar.sample_sentence(rng) for _ in range(30000)]
    by_hand = sum(-s.log_prob for s in sentences) / sum(s.n_tokens for s in sentences)
    assert first.nats_per_token == pytest.approx(by_hand, rel=1e-12)


# ---------------------------------------------------------------- tensors and losses


def test_encode_sentences_adds_bos_eos_and_pads():
    tokenizer = grammar.make_tokenizer()
    sentences = [grammar.parse_sentence("the dog runs ."), grammar.parse_sentence("the cats see the dog .")]
    ids = tiny_gpt.encode_sentences(sentences, tokenizer)
    assert ids.shape == (2, 2 + 6)
    assert ids[0].tolist()[:6] == [BOS_ID] + tokenizer.encode("the dog runs .") + [EOS_ID]
    assert ids[0, 6:].tolist() == [PAD_ID, PAD_ID]
    assert ids[1, -1].item() == EOS_ID


def test_gpt_token_nll_counts_exactly_the_floor_tokens():
    tokenizer = grammar.make_tokenizer()
    sentences = grammar.sample_corpus(40, seed=5)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=128, d_model=16, n_heads=2, n_layers=1))
    nll = tiny_gpt.gpt_token_nll(model, sentences, tokenizer, batch_size=16)
    floor = tiny_gpt.floor_token_nll(sentences)
    assert nll.shape == floor.shape == (sum(s.n_tokens for s in sentences),)
    # The training loss is the mean of the same per-token losses (padding excluded).
    loss = tiny_gpt.language_model_loss(model, tiny_gpt.encode_sentences(sentences, tokenizer))
    assert loss.item() == pytest.approx(nll.mean().item(), rel=1e-9)
    # Token by token, by hand, for the first sentence.
    first = sentences[0]
    ids = torch.tensor([[BOS_ID] + tokenizer.encode(first.text) + [EOS_ID]])
    log_q = torch.log_softmax(model(ids[:, :-1]), dim=-1)[0]
    by_hand = -log_q[torch.arange(first.n_tokens), ids[0, 1:]]
    assert torch.allclose(nll[: first.n_tokens], by_hand, atol=1e-9)


def test_language_model_loss_with_a_fixed_token_count_weighs_every_token_the_same():
    """``tokens_per_sentence=m``: the summed token losses over B * m, whatever the batch's length."""
    tokenizer = grammar.make_tokenizer()
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=128, d_model=16, n_heads=2, n_layers=1))
    short = tiny_gpt.encode_sentences([grammar.parse_sentence("the dog runs .")] * 3, tokenizer)
    long = tiny_gpt.encode_sentences(grammar.sample_corpus(5, seed=3), tokenizer)
    m = 12.5
    for ids in (short, long):
        logits = model(ids[:, :-1])
        summed = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=PAD_ID, reduction="sum"
        )
        fixed = tiny_gpt.language_model_loss(model, ids, tokens_per_sentence=m)
        assert fixed.item() == pytest.approx(summed.item() / (ids.shape[0] * m), rel=1e-9)
        # With m equal to this batch's own mean sentence length it is the per-batch mean again.
        own_mean = (ids[:, 1:] != PAD_ID).sum().item() / ids.shape[0]
        same = tiny_gpt.language_model_loss(model, ids, tokens_per_sentence=own_mean)
        assert same.item() == pytest.approx(tiny_gpt.language_model_loss(model, ids).item(), rel=1e-9)
    for bad in (0, -1.0, float("nan"), "22"):
        with pytest.raises(ValueError, match="language_model_loss: tokens_per_sentence"):
            tiny_gpt.language_model_loss(model, short, tokens_per_sentence=bad)


def test_loss_by_role_averages_each_role():
    nll = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    roles = ["", grammar.ROLE_AGREEMENT, grammar.ROLE_AGREEMENT, grammar.ROLE_CLOSING, ""]
    result = tiny_gpt.loss_by_role(nll, roles)
    assert result["all"] == pytest.approx(4.0)
    assert result[grammar.ROLE_AGREEMENT] == pytest.approx(2.5)
    assert result[grammar.ROLE_CLOSING] == pytest.approx(4.0)
    assert math.isnan(result[grammar.ROLE_CONNECTIVE])
    with pytest.raises(ValueError, match="loss_by_role"):
        tiny_gpt.loss_by_role(nll, roles[:3])


def test_trigram_probabilities_by_counting():
    tokenizer = grammar.make_tokenizer()
    sentences = [
        grammar.parse_sentence("the dog runs ."),
        grammar.parse_sentence("the dog sleeps ."),
        grammar.parse_sentence("the dog runs ."),
    ]
    trigram = tiny_gpt.TrigramModel(tokenizer, k=0.5).fit(sentences)
    V = tokenizer.vocab_size
    nll = trigram.token_nll([grammar.parse_sentence("the dog runs .")])
    # after (<pad>, <bos>): "the" seen 3 of 3; after (the, dog): "runs" 2 of 3; after (runs, .): <eos> 2 of 2.
    assert nll[0].item() == pytest.approx(-math.log((3 + 0.5) / (3 + 0.5 * V)))
    assert nll[2].item() == pytest.approx(-math.log((2 + 0.5) / (3 + 0.5 * V)))
    assert nll[4].item() == pytest.approx(-math.log((2 + 0.5) / (2 + 0.5 * V)))


def test_trigram_cannot_carry_agreement_but_the_floor_does():
    tokenizer = grammar.make_tokenizer()
    train, heldout = grammar.sample_corpus(20000, seed=11), grammar.sample_corpus(3000, seed=12)
    roles = tiny_gpt.token_roles(heldout)
    trigram = tiny_gpt.loss_by_role(tiny_gpt.TrigramModel(tokenizer).fit(train).token_nll(heldout), roles)
    floor = tiny_gpt.loss_by_role(tiny_gpt.floor_token_nll(heldout), roles)
    for role in grammar.ROLES:
        assert trigram[role] > floor[role] + 0.3, role


# ---------------------------------------------------------------- training and the checkpoint


TINY_RECIPE = dict(
    d_model=16, n_heads=2, n_layers=1, batch_size=8, n_train_sentences=200, n_heldout_sentences=50,
    n_floor_sentences=500, eval_every=5, n_eval_sentences=10, snapshot_every=5, warmup_steps=2, steps=12,
)  # fmt: skip


def test_train_gpt_checkpoint_writes_a_loadable_checkpoint(tmp_path, capsys):
    recipe = tiny_gpt.TinyGPTRecipe(**TINY_RECIPE)
    info = tiny_gpt.train_gpt_checkpoint(tmp_path, seed=0, recipe=recipe)
    printed = capsys.readouterr().out
    assert "held-out loss" in printed and "entropy floor" in printed
    model, tokenizer, loaded = tiny_gpt.load_tiny_gpt(tmp_path)
    assert loaded["heldout"]["loss"] == pytest.approx(info["heldout"]["loss"])
    assert loaded["steps"] == loaded["steps_planned"] == 12  # a step count, not a clock, ends the run
    assert loaded["schedule"] == "by steps" and loaded["torch_threads"] == recipe.threads
    assert loaded["training_seconds"] > 0 and loaded["steps_per_second"] > 0  # measured and recorded
    assert loaded["snapshots"] and loaded["snapshots"][0][0] == 0
    heldout = grammar.sample_corpus(50, seed=0 + recipe.heldout_seed_offset)
    again = tiny_gpt.gpt_token_nll(model.double(), heldout, tokenizer).mean().item()
    assert again == pytest.approx(info["heldout"]["loss"], abs=1e-4)


def test_train_gpt_checkpoint_rebuilds_bit_identical_weights(tmp_path):
    """Two runs of the same recipe (same seed and thread count) write the same bytes."""
    torch.set_default_dtype(torch.float32)  # as the recipe trains (the float64 of the other tests hides the issue)
    threads = torch.get_num_threads()
    # Large enough (d_model 32, batches of 64) that two threads share the embedding gradient's work.
    recipe = tiny_gpt.TinyGPTRecipe(
        **{**TINY_RECIPE, "steps": 6, "d_model": 32, "batch_size": 64, "n_train_sentences": 400}
    )
    infos = [tiny_gpt.train_gpt_checkpoint(tmp_path / name, seed=0, recipe=recipe) for name in ("a", "b")]
    assert infos[0]["weights_sha256"] == infos[1]["weights_sha256"]  # weights and attention snapshots
    assert infos[0]["trained_weights_sha256"] == infos[1]["trained_weights_sha256"]  # the weights alone
    first, second = (tiny_gpt.load_tiny_gpt(tmp_path / name)[0].state_dict() for name in ("a", "b"))
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert torch.get_num_threads() == threads  # the recipe's thread count is set for the run only


def test_the_shipped_tiny_gpt_is_the_default_recipe_by_steps():
    """The shipped checkpoint was made by today's default recipe, counted in steps and in under three
    minutes, so ``python -m course_lib.train gpt`` rebuilds it on the machine that made it."""
    import dataclasses
    import json

    info = json.loads((tiny_gpt.CHECKPOINT_DIR / f"{tiny_gpt.CHECKPOINT_NAME}.json").read_text())
    assert info["recipe"] == dataclasses.asdict(tiny_gpt.TinyGPTRecipe())
    assert info["schedule"] == "by steps" and info["time_limit_s"] is None
    assert info["steps"] == tiny_gpt.TinyGPTRecipe().steps
    assert info["torch_threads"] == tiny_gpt.TinyGPTRecipe().threads
    assert info["training_seconds"] < 180.0
    model, _, _ = tiny_gpt.load_tiny_gpt()  # float64 here (this file's default dtype): float32 values, exactly
    assert weights_fingerprint(model.float()) == info["trained_weights_sha256"]  # the file holds those exact weights


def test_shipped_checkpoint_is_small_and_reaches_its_reported_loss():
    path = tiny_gpt.CHECKPOINT_DIR / f"{tiny_gpt.CHECKPOINT_NAME}.safetensors"
    assert path.stat().st_size <= 5_000_000
    model, tokenizer, info = tiny_gpt.load_tiny_gpt()
    assert info["training_seconds"] <= 180.0 + 5.0
    heldout = grammar.sample_corpus(1500, seed=424242)  # fresh sentences, not the stored held-out set
    excess = (tiny_gpt.gpt_token_nll(model, heldout, tokenizer) - tiny_gpt.floor_token_nll(heldout)).mean().item()
    reported = info["heldout"]["excess_over_floor"]
    assert abs(excess - reported) < 0.02
    # Generated sentences are grammatical.
    generator = torch.Generator().manual_seed(0)
    texts = tiny_gpt.generate_sentences(model, tokenizer, 20, generator=generator)
    n_ok = 0
    for text in texts:
        try:
            grammar.parse_sentence(text)
            n_ok += 1
        except ValueError:
            pass
    assert n_ok >= 16


def test_generated_text_with_the_full_stop_attached_parses_like_the_tokenized_form():
    """Generated text reads "… the house." (no space before the stop); it parses like "house ."."""
    attached = grammar.parse_sentence("the dog sleeps near the house.")
    spaced = grammar.parse_sentence("the dog sleeps near the house .")
    assert attached.words == spaced.words
    assert attached.words[-1] == "."
