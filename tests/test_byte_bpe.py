"""Tests of the byte-level BPE tokenizer (lesson 13).

The expected merges below are worked out by hand in the comments, from the rules in the
docstrings (most frequent pair first; among equals, the greatest pair as byte strings).
"""

import itertools
import random
import time
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course_lib.tokenization import (
    BYTE_TO_CHAR,
    CHAR_TO_BYTE,
    GPT2_SPLIT_PATTERN,
    ByteLevelBPETokenizer,
    bytes_to_symbols,
    learn_merges,
    split_on_special_tokens,
    symbols_to_bytes,
)

CHAT_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def varied_text(n_bytes: int, seed: int = 0) -> str:
    """About ``n_bytes`` of word-like text with many distinct words, as real text has.

    Words come from a made-up lexicon of 30,000 syllable strings with a Zipf distribution, plus
    numbers, punctuation, newlines, and a few accented, Chinese and emoji words.
    """
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "sh", "ch", "qu", "é", "ö"]
    lexicon = ["".join(rng.choices(syllables, k=rng.choice([1, 1, 2, 2, 2, 3, 3, 4]))) for _ in range(30_000)]
    lexicon += ["你好", "世界", "学习", "😀", "👍🏽", "naïve", "café", "Straße", "  ", "\t"]
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(lexicon))))
    parts, size = [], 0
    while size < n_bytes:
        words = rng.choices(lexicon, cum_weights=cumulative, k=rng.randint(4, 14))
        words[0] = words[0].capitalize()
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 99_999)))
        sentence = " ".join(words) + rng.choice(".!?,;") + rng.choice([" ", " ", " ", "\n", "\n\n"])
        parts.append(sentence)
        size += len(sentence.encode("utf-8"))
    return "".join(parts)


@pytest.fixture(scope="module")
def corpus() -> str:
    return varied_text(60_000, seed=1)


@pytest.fixture(scope="module")
def trained(corpus) -> ByteLevelBPETokenizer:
    text = "<|im_start|>user\n" + corpus + "<|im_end|>\n<|endoftext|>"
    return ByteLevelBPETokenizer.train(text, vocab_size=600, special_tokens=CHAT_SPECIALS)


# ---------------------------------------------------------------- the printable byte alphabet


def test_every_byte_has_its_own_printable_character():
    assert len(BYTE_TO_CHAR) == 256 and len(set(BYTE_TO_CHAR.values())) == 256
    assert all(char.isprintable() and not char.isspace() for char in BYTE_TO_CHAR.values())
    assert (BYTE_TO_CHAR[ord(" ")], BYTE_TO_CHAR[ord("\n")], BYTE_TO_CHAR[ord("\t")]) == ("Ġ", "Ċ", "ĉ")
    assert BYTE_TO_CHAR[ord("A")] == "A" and BYTE_TO_CHAR[0xE4] == "ä"  # printable Latin-1 stays itself
    assert all(CHAR_TO_BYTE[char] == byte for byte, char in BYTE_TO_CHAR.items())
    everything = bytes(range(256))
    assert symbols_to_bytes("".join(bytes_to_symbols(everything))) == everything


def test_gpt2_split_pattern_keeps_the_space_with_the_word_that_follows():
    words = GPT2_SPLIT_PATTERN.findall("Hello  world, it's 2024!\n\tok")
    # "\n\t" before "ok": whitespace leaves its last character to what follows, and only a
    # space joins a word, so the tab stands alone.
    assert words == ["Hello", " ", " world", ",", " it", "'s", " 2024", "!", "\n", "\t", "ok"]


def test_split_on_special_tokens_prefers_the_longest_match():
    assert split_on_special_tokens("a<s><s>b<s>", ["<s>", "<s><s>"]) == [
        ("a", False), ("<s><s>", True), ("b", False), ("<s>", True)
    ]  # fmt: skip
    assert split_on_special_tokens("", ["<s>"]) == []
    assert split_on_special_tokens("plain", []) == [("plain", False)]


# ---------------------------------------------------------------- training by hand


def test_ties_go_to_the_greatest_pair_of_byte_strings():
    # Words: "ab" and " cd". Pairs, each once: (a, b), (" ", c), (c, d).
    # All tie at 1; the greatest as bytes is (b"c", b"d"), then (b"a", b"b") beats (b" ", b"cd").
    tokenizer = ByteLevelBPETokenizer.train("ab cd", vocab_size=259)
    assert tokenizer.merges == [("c", "d"), ("a", "b"), ("Ġ", "cd")]
    assert tokenizer.id_to_token[256:] == ["cd", "ab", "Ġcd"]
    assert tokenizer.encode("ab cd") == [257, 258]


def test_most_frequent_pair_first_then_greatest():
    # Words: "aaa" x2 and "ab" x1 (no spaces: "aaa,aaa,ab" splits as aaa , aaa , ab).
    # Pairs: (a, a) 2 + 2 = 4, (a, b) 1, (",", a) 2. Merge "aa" first.
    # Then "aaa" is [aa, a]: (aa, a) 2, (",", a) 2, (a, b) 1: tie at 2, (b"aa", b"a") > (b",", b"a").
    tokenizer = ByteLevelBPETokenizer.train("aaa,aaa,ab", vocab_size=258)
    assert tokenizer.merges == [("a", "a"), ("aa", "a")]


def test_vocabulary_layout_specials_then_bytes_then_merges(trained):
    assert trained.id_to_token[:3] == list(CHAT_SPECIALS)
    assert trained.id_to_token[3:259] == [BYTE_TO_CHAR[byte] for byte in range(256)]
    assert trained.vocab_size == 600 and len(trained.merges) >= 600 - 259
    assert trained.missing_bytes == []


def naive_merges(word_counts: dict[bytes, int], n_new_tokens: int) -> list[tuple[bytes, bytes]]:
    """The textbook trainer: count every pair again before each merge."""
    words = {tuple(bytes([b]) for b in word): count for word, count in word_counts.items()}
    merges, new_symbols = [], set()
    while len(new_symbols) < n_new_tokens:
        pair_counts = Counter()
        for symbols, count in words.items():
            for pair in zip(symbols[:-1], symbols[1:], strict=True):
                pair_counts[pair] += count
        if not pair_counts:
            break
        best = max(pair_counts, key=lambda pair: (pair_counts[pair], pair))
        merges.append(best)
        new_symbols.add(best[0] + best[1])
        merged_words = Counter()
        for symbols, count in words.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged_words[tuple(out)] += count
        words = merged_words
    return merges


@pytest.mark.parametrize(
    "text",
    [
        "aaaa aaa aa a aaaaaaa",  # overlapping pairs: "aaa" merges as [aa, a]
        "the cat sat on the mat; the hat is flat. " * 3,
        "你好你好 世界世界 😀😀😀 naïve café",
        "abab abcabc bcbc cabcab " * 2,
    ],
    ids=["overlaps", "english", "multibyte", "ties"],
)
def test_incremental_training_equals_recounting_every_merge(text):
    word_counts = dict(Counter(word.encode("utf-8") for word in GPT2_SPLIT_PATTERN.findall(text)))
    for n in (1, 5, 40):
        assert learn_merges(word_counts, n) == naive_merges(word_counts, n)


def test_incremental_training_equals_recounting_on_varied_text():
    text = varied_text(6_000, seed=3)
    word_counts = dict(Counter(word.encode("utf-8") for word in GPT2_SPLIT_PATTERN.findall(text)))
    assert learn_merges(word_counts, 120) == naive_merges(word_counts, 120)


def test_training_is_deterministic(corpus, trained):
    text = "<|im_start|>user\n" + corpus + "<|im_end|>\n<|endoftext|>"
    again = ByteLevelBPETokenizer.train(text, vocab_size=600, special_tokens=CHAT_SPECIALS)
    assert again.merges == trained.merges and again.id_to_token == trained.id_to_token


def test_training_stops_when_nothing_is_left_to_merge():
    tokenizer = ByteLevelBPETokenizer.train("ab", vocab_size=1000)
    assert tokenizer.merges == [("a", "b")] and tokenizer.vocab_size == 257


# ---------------------------------------------------------------- encode and decode


def test_special_tokens_stay_whole_and_no_merge_crosses_them(trained):
    text = "x<|im_start|>system\nyou<|im_end|><|im_end|>y<|endoftext|>"
    ids = trained.encode(text)
    im_start, im_end, end = (trained.token_to_id[token] for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"))
    assert ids.count(im_start) == 1 and ids.count(im_end) == 2 and ids.count(end) == 1
    assert trained.decode(ids) == text
    assert trained.decode(ids, skip_special_tokens=True) == "xsystem\nyouy"
    assert not any("<|" in token for token in trained.id_to_token[3:])  # training never saw them in words


def test_round_trip_of_a_large_varied_sample(trained):
    text = varied_text(200_000, seed=7) + "".join(chr(c) for c in range(0x20, 0x3000) if not 0xD800 <= c < 0xE000)
    ids = trained.encode(text)
    assert trained.decode(ids) == text
    assert len(ids) < len(text.encode("utf-8"))  # merges do compress


text_with_specials = st.lists(
    st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),  # any code point but lone surrogates
        st.text(" \t\n\r'slvmd你😀é", max_size=12),  # whitespace runs, contractions, multibyte
        st.sampled_from(CHAT_SPECIALS),
    ),
    max_size=8,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=text_with_specials)
def test_decode_inverts_encode_on_any_text(trained, text):
    assert trained.decode(trained.encode(text)) == text


def test_pieces_show_bytes_where_a_token_holds_part_of_a_character():
    # Training on "你你" x many merges the 3 bytes of 你 (e4 bd a0) in two steps: first (e4, bd), ...
    tokenizer = ByteLevelBPETokenizer.train("你 " * 10, vocab_size=257)
    assert tokenizer.merges == [("ä", "½")]  # bytes e4 and bd, printable as ä and ½
    ids = tokenizer.encode("你")
    assert tokenizer.token_pieces(ids) == ["<e4 bd>", "<a0>"]
    assert [tokenizer.decode([i]) for i in ids] == ["�", "�"]  # each alone is not a whole character
    assert tokenizer.decode(ids) == "你"
    assert tokenizer.piece_bytes(ids[0]) == b"\xe4\xbd"
    assert tokenizer.token_pieces(tokenizer.encode("hi ")) == ["h", "i", " "]


def test_decode_accepts_a_tensor(trained):
    ids = trained.encode("tensor of ids")
    assert trained.decode(torch.tensor(ids)) == "tensor of ids"


def test_built_from_a_vocabulary_and_merges_as_gguf_stores_them():
    tokens = [BYTE_TO_CHAR[b] for b in range(256)] + ["Ġt", "he", "Ġthe", "<|im_start|>"]
    from_strings = ByteLevelBPETokenizer(tokens, ["Ġ t", "h e", "Ġt he"], special_tokens=["<|im_start|>"])
    from_pairs = ByteLevelBPETokenizer(tokens, [("Ġ", "t"), ("h", "e"), ("Ġt", "he")], ["<|im_start|>"])
    assert from_strings.merges == from_pairs.merges
    assert from_strings.encode("<|im_start|> the") == [259, 258]
    assert from_strings.ids_to_tokens([258]) == ["Ġthe"]


def test_a_byte_missing_from_the_vocabulary_is_dropped():
    tokens = [BYTE_TO_CHAR[b] for b in range(256) if b != 4]  # as SmolLM2's vocabulary lacks byte 4
    tokenizer = ByteLevelBPETokenizer(tokens, [])
    assert tokenizer.missing_bytes == [4]
    assert tokenizer.decode(tokenizer.encode("a\x04b")) == "ab"


# ---------------------------------------------------------------- errors that say what to do


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ByteLevelBPETokenizer.train("abc", vocab_size=100), "vocab_size must be an int >= 256"),
        (lambda: ByteLevelBPETokenizer.train("abc", 300, special_tokens=["<s>", "<s>"]), "duplicates"),
        (lambda: ByteLevelBPETokenizer.train(b"abc", 300), "text must be a str"),
        (lambda: ByteLevelBPETokenizer.train("a\ud800", 300), "lone surrogate"),
        (lambda: ByteLevelBPETokenizer(["a", "b"], ["a b"]), "needs 'ab'"),
        (lambda: ByteLevelBPETokenizer(["a", "a"], []), "duplicate tokens"),
        (lambda: ByteLevelBPETokenizer(["a"], [], special_tokens=["<s>"]), "special token '<s>'"),
        (lambda: ByteLevelBPETokenizer(["a", "a b"], []), "not written in the printable byte alphabet"),
        (lambda: ByteLevelBPETokenizer(["a"], ["a"]), "a merge must be a pair"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_decode_rejects_ids_outside_the_vocabulary(trained):
    with pytest.raises(ValueError, match=r"ByteLevelBPETokenizer.decode: id 600 is outside the vocabulary \[0, 600\)"):
        trained.decode([1, 600])


# ---------------------------------------------------------------- speed


def test_training_1000_tokens_on_1_megabyte_takes_under_10_seconds():
    text = varied_text(1_000_000)
    start = time.perf_counter()
    tokenizer = ByteLevelBPETokenizer.train(text, vocab_size=1000)
    seconds = time.perf_counter() - start
    print(f"trained a 1,000-token byte-level BPE on 1 MB in {seconds:.2f} s")
    assert tokenizer.vocab_size == 1000
    assert seconds <= 10.0
