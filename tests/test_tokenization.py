"""Tests of the course's tokenizers (lesson 01).

The expected vocabularies and BPE merges below are worked out by hand in the comments,
from the rules in the docstrings, not copied from the implementation's output.
"""

import pytest
import torch

from course_lib.example import RUNNING_SENTENCE
from course_lib.tokenization import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    BPETokenizer,
    CharTokenizer,
    WordTokenizer,
)

# ---------------------------------------------------------------- special tokens


@pytest.mark.parametrize(
    "make",
    [
        lambda: WordTokenizer.from_corpus(["the cat sat."]),
        lambda: CharTokenizer.from_corpus(["the cat sat."]),
        lambda: BPETokenizer.train(["the cat sat."], vocab_size=20),
    ],
    ids=["word", "char", "bpe"],
)
def test_special_tokens_come_first_with_fixed_ids(make):
    tokenizer = make()
    assert tokenizer.id_to_token[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert [tokenizer.token_to_id[token] for token in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
    ids = tokenizer.encode("the cat", add_bos=True, add_eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the cat"
    assert tokenizer.decode([BOS_ID]).strip() == "<bos>"


# ---------------------------------------------------------------- words


def test_word_vocabulary_is_ordered_by_count_then_alphabet():
    # Counts: "the" 2, "sat" 2, "." 2, "cat" 1, "dog" 1.
    # Sorted by (-count, word): ".", "sat", "the" (count 2; "." sorts before letters), then "cat", "dog".
    tokenizer = WordTokenizer.from_corpus(["The cat sat.", "the dog sat."])
    assert tokenizer.id_to_token == ["<pad>", "<unk>", "<bos>", "<eos>", ".", "sat", "the", "cat", "dog"]
    assert tokenizer.vocab_size == 9
    assert tokenizer.encode("The dog sat.") == [6, 8, 5, 4]


def test_word_tokenize_lowercases_and_splits_punctuation():
    tokenizer = WordTokenizer.from_corpus(["x"])
    assert tokenizer.tokenize("Hello, World! It's 2 cats.") == [
        "hello", ",", "world", "!", "it", "'", "s", "2", "cats", "."
    ]  # fmt: skip


def test_word_round_trip_of_the_running_sentence():
    tokenizer = WordTokenizer.from_corpus([RUNNING_SENTENCE])
    ids = tokenizer.encode(RUNNING_SENTENCE)
    assert len(ids) == len(RUNNING_SENTENCE.split())
    assert UNK_ID not in ids
    assert tokenizer.decode(ids) == RUNNING_SENTENCE
    # "the" appears twice, so it gets the same id twice.
    assert ids[0] == ids[4]


def test_word_decode_puts_punctuation_back_against_the_word():
    tokenizer = WordTokenizer.from_corpus(["the cat sat, then slept."])
    assert tokenizer.decode(tokenizer.encode("the cat sat, then slept.")) == "the cat sat, then slept."


def test_word_unknown_words_become_unk():
    tokenizer = WordTokenizer.from_corpus(["the cat sat"])
    ids = tokenizer.encode("the zebra sat")
    assert ids == [tokenizer.token_to_id["the"], UNK_ID, tokenizer.token_to_id["sat"]]
    assert tokenizer.decode(ids) == "the <unk> sat"


def test_word_min_count_drops_rare_words():
    tokenizer = WordTokenizer.from_corpus(["a a b"], min_count=2)
    assert tokenizer.id_to_token[4:] == ["a"]
    assert tokenizer.encode("a b") == [4, UNK_ID]


# ---------------------------------------------------------------- characters


def test_char_vocabulary_is_sorted_characters_and_round_trips():
    tokenizer = CharTokenizer.from_corpus(["Hi, hi"])
    # Characters: " ", ",", "H", "h", "i" in code-point order.
    assert tokenizer.id_to_token[4:] == [" ", ",", "H", "h", "i"]
    assert tokenizer.encode("hi H") == [7, 8, 4, 6]
    assert tokenizer.decode(tokenizer.encode("Hi, hi")) == "Hi, hi"
    assert tokenizer.encode("hit") == [7, 8, UNK_ID]


# ---------------------------------------------------------------- BPE


def test_bpe_learns_merges_in_the_expected_order():
    # "hug hug hugs bug" is cut into the words  hug  ▁hug  ▁hugs  ▁bug  (▁ = the space before a word).
    # Pair counts over the character spellings:
    #   (u,g) 4, (h,u) 3, (▁,h) 2, (g,s) 1, (▁,b) 1, (b,u) 1        -> merge (u,g)
    # words: h ug | ▁ h ug | ▁ h ug s | ▁ b ug
    #   (h,ug) 3, (▁,h) 2, (ug,s) 1, (▁,b) 1, (b,ug) 1               -> merge (h,ug)
    # words: hug | ▁ hug | ▁ hug s | ▁ b ug
    #   (▁,hug) 2, (hug,s) 1, (▁,b) 1, (b,ug) 1                      -> merge (▁,hug)
    # words: hug | ▁hug | ▁hug s | ▁ b ug
    #   every pair now occurs once, below min_frequency=2             -> stop
    tokenizer = BPETokenizer.train(["hug hug hugs bug"], vocab_size=100)
    assert tokenizer.merges == [("u", "g"), ("h", "ug"), ("▁", "hug")]
    alphabet = sorted("hugs▁b")
    assert tokenizer.id_to_token == list(SPECIAL_TOKENS) + alphabet + ["ug", "hug", "▁hug"]


def test_bpe_breaks_ties_alphabetically():
    # Same corpus with min_frequency=1: after the three merges above, the pairs
    # (▁hug,s), (▁,b), (b,ug) all occur once. "b" < "▁" (U+2581), so (b,ug) goes first.
    # Then (▁,bug) and (▁hug,s) tie; "▁" is a prefix of "▁hug", so (▁,bug) goes first.
    tokenizer = BPETokenizer.train(["hug hug hugs bug"], vocab_size=100, min_frequency=1)
    assert tokenizer.merges == [
        ("u", "g"), ("h", "ug"), ("▁", "hug"), ("b", "ug"), ("▁", "bug"), ("▁hug", "s")
    ]  # fmt: skip


def test_bpe_tie_between_equally_frequent_pairs():
    # "ab ab cd cd" -> words  ab  ▁ab  ▁cd  ▁cd.
    # Counts: (a,b) 2, (c,d) 2, (▁,c) 2, (▁,a) 1: three pairs tie at 2, (a,b) is first alphabetically.
    # Then (c,d) 2, (▁,c) 2, (▁,ab) 1: "c" < "▁", so (c,d). Then (▁,cd) 2. Then only (▁,ab) 1: stop.
    tokenizer = BPETokenizer.train(["ab ab cd cd"], vocab_size=100)
    assert tokenizer.merges == [("a", "b"), ("c", "d"), ("▁", "cd")]


def test_bpe_stops_at_vocab_size():
    # 4 special tokens + 6 characters = 10; vocab_size=11 leaves room for one merge.
    tokenizer = BPETokenizer.train(["hug hug hugs bug"], vocab_size=11)
    assert tokenizer.vocab_size == 11
    assert tokenizer.merges == [("u", "g")]


def test_bpe_encodes_by_replaying_the_merges():
    tokenizer = BPETokenizer.train(["hug hug hugs bug"], vocab_size=100)
    # "hugs": h u g s -> h ug s -> hug s.   " bug": ▁ b u g -> ▁ b ug (no merge uses b).
    assert tokenizer.tokenize("hugs bug") == ["hug", "s", "▁", "b", "ug"]
    assert tokenizer.tokenize("Hug hug") == ["hug", "▁hug"]
    assert tokenizer.decode(tokenizer.encode("hugs bug")) == "hugs bug"


def test_bpe_unknown_characters_become_unk():
    tokenizer = BPETokenizer.train(["hug hug hugs bug"], vocab_size=100)
    assert tokenizer.tokenize("hugz") == ["hug", "<unk>"]
    assert tokenizer.encode("hugz")[-1] == UNK_ID


def test_bpe_round_trip_on_a_larger_corpus():
    corpus = [
        "the cat sat on the mat.",
        "the dog sat on the log.",
        "a cat and a dog were tired, so they slept.",
        RUNNING_SENTENCE,
    ]
    tokenizer = BPETokenizer.train(corpus, vocab_size=60)
    assert tokenizer.vocab_size <= 60
    for text in corpus:
        ids = tokenizer.encode(text)
        assert UNK_ID not in ids
        assert tokenizer.decode(ids) == text
        # Merging only ever shortens: never more tokens than characters.
        assert len(ids) <= len(text)
    assert len(tokenizer.encode(RUNNING_SENTENCE)) < len(RUNNING_SENTENCE)


def test_bpe_training_is_deterministic():
    corpus = ["the cat sat on the mat", "the dog sat on the log"]
    first = BPETokenizer.train(corpus, vocab_size=40)
    second = BPETokenizer.train(list(reversed(corpus)), vocab_size=40)
    assert first.merges == second.merges
    assert first.id_to_token == second.id_to_token


def test_decode_accepts_a_tensor():
    tokenizer = WordTokenizer.from_corpus([RUNNING_SENTENCE])
    ids = torch.tensor(tokenizer.encode(RUNNING_SENTENCE))
    assert tokenizer.decode(ids) == RUNNING_SENTENCE


# ---------------------------------------------------------------- validation


def test_empty_or_wrong_corpus_is_rejected():
    with pytest.raises(ValueError, match=r"WordTokenizer.from_corpus: corpus is empty"):
        WordTokenizer.from_corpus(["", "  "])
    with pytest.raises(ValueError, match=r"CharTokenizer.from_corpus: corpus must be a list of strings"):
        CharTokenizer.from_corpus([1, 2])
    with pytest.raises(ValueError, match=r"BPETokenizer.train: corpus must be a list of strings"):
        BPETokenizer.train(None, vocab_size=10)


def test_bpe_vocab_size_too_small_is_rejected():
    # "ab" has 2 characters, so the smallest vocabulary is 4 + 2 = 6.
    with pytest.raises(ValueError, match=r"vocab_size must be an int >= 6"):
        BPETokenizer.train(["ab"], vocab_size=5)


def test_decode_rejects_ids_outside_the_vocabulary():
    tokenizer = WordTokenizer.from_corpus(["a b"])
    with pytest.raises(ValueError, match=r"WordTokenizer.decode: id 6 is outside the vocabulary \[0, 6\)"):
        tokenizer.decode([4, 6])
    with pytest.raises(ValueError, match=r"must be a list of ints"):
        tokenizer.decode("a b")


def test_encode_rejects_non_text():
    tokenizer = CharTokenizer.from_corpus(["ab"])
    with pytest.raises(ValueError, match=r"CharTokenizer.encode: text must be a str, got list"):
        tokenizer.encode(["a", "b"])


def test_vocabulary_must_start_with_special_tokens_and_have_no_duplicates():
    with pytest.raises(ValueError, match=r"must start with"):
        WordTokenizer(["a", "b"])
    with pytest.raises(ValueError, match=r"duplicate tokens \['a'\]"):
        WordTokenizer(list(SPECIAL_TOKENS) + ["a", "a"])
    with pytest.raises(ValueError, match=r"min_count must be an int >= 1"):
        WordTokenizer.from_corpus(["a"], min_count=0)
