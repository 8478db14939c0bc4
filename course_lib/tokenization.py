"""Tokenizers: from text to a list of integer ids and back.

Three ways to cut text into tokens, all with the same interface
(``tokenize``, ``encode``, ``decode``, ``vocab_size``):

* ``WordTokenizer``: one token per word or punctuation mark;
* ``CharTokenizer``: one token per character;
* ``BPETokenizer``: byte-pair encoding, subword pieces learned from a corpus by
  merging the most frequent neighbouring pair again and again.

Every vocabulary starts with the same four special tokens:
``<pad>`` = 0 (fills short sequences in a batch), ``<unk>`` = 1 (anything not in the
vocabulary), ``<bos>`` = 2 (beginning of sequence) and ``<eos>`` = 3 (end of sequence).

These tokenizers are written to be read, not to be fast.

Built in lesson 01 (tokens and embeddings).
"""

from __future__ import annotations

import re
from collections import Counter

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

WORD_PATTERN = re.compile(r"\w+|[^\w\s]")
"""A word is a run of letters/digits; every other non-space character is a token of its own."""

SPACE_MARK = "▁"
"""BPE writes the space before a word as this visible mark, so ``decode`` can put spaces back."""

BPE_WORD_PATTERN = re.compile(r" ?\w+| ?[^\w\s]")
"""BPE pre-split: a word or a punctuation mark together with the one space before it."""


def _check_corpus(where: str, corpus) -> list[str]:
    """Accept one string or a list of strings; return a list of strings."""
    if isinstance(corpus, str):
        corpus = [corpus]
    if not isinstance(corpus, (list, tuple)) or not all(isinstance(text, str) for text in corpus):
        raise ValueError(f"{where}: corpus must be a list of strings, got {type(corpus).__name__}")
    if not any(text.strip() for text in corpus):
        raise ValueError(f"{where}: corpus is empty; give at least one non-empty string")
    return list(corpus)


def _check_text(where: str, text) -> None:
    if not isinstance(text, str):
        raise ValueError(f"{where}: text must be a str, got {type(text).__name__}")


def _normalize(text: str) -> str:
    """Lower-case and turn every run of whitespace into one space."""
    return " ".join(text.lower().split())


class _VocabularyTokenizer:
    """What every tokenizer shares: the vocabulary (token <-> id) and encode/decode.

    A subclass says how to cut text into token strings (``tokenize``) and how to glue
    token strings back into text (``_join``).
    """

    def __init__(self, tokens: list[str]):
        where = type(self).__name__
        if list(tokens[: len(SPECIAL_TOKENS)]) != list(SPECIAL_TOKENS):
            raise ValueError(f"{where}: the vocabulary must start with {list(SPECIAL_TOKENS)}, got {list(tokens[:4])}")
        if len(set(tokens)) != len(tokens):
            duplicates = sorted(token for token, count in Counter(tokens).items() if count > 1)
            raise ValueError(f"{where}: the vocabulary has duplicate tokens {duplicates}")
        self.id_to_token: list[str] = list(tokens)
        self.token_to_id: dict[str, int] = {token: index for index, token in enumerate(tokens)}

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary, special tokens included (V)."""
        return len(self.id_to_token)

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    def tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def _join(self, tokens: list[str]) -> str:
        raise NotImplementedError

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Text -> token ids. A token missing from the vocabulary becomes ``<unk>`` (id 1)."""
        _check_text(f"{type(self).__name__}.encode", text)
        ids = [self.token_to_id.get(token, UNK_ID) for token in self.tokenize(text)]
        return ([BOS_ID] if add_bos else []) + ids + ([EOS_ID] if add_eos else [])

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Token ids (a list of ints or a 1-D tensor) -> text."""
        tokens = self.ids_to_tokens(ids)
        if skip_special_tokens:
            tokens = [token for token in tokens if token not in SPECIAL_TOKENS]
        return self._join(tokens)

    def ids_to_tokens(self, ids) -> list[str]:
        """Look up the token string of every id."""
        where = f"{type(self).__name__}.decode"
        if hasattr(ids, "tolist"):  # a tensor or an array
            ids = ids.tolist()
        if not isinstance(ids, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ValueError(f"{where}: ids must be a list of ints or a 1-D integer tensor, got {ids!r}")
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"{where}: id {i} is outside the vocabulary [0, {self.vocab_size})")
        return [self.id_to_token[i] for i in ids]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class WordTokenizer(_VocabularyTokenizer):
    """One token per word or punctuation mark, lower-cased.

    ``WordTokenizer.from_corpus(corpus)`` builds the vocabulary: the special tokens, then
    every word of the corpus seen at least ``min_count`` times, most frequent first
    (ties in alphabetical order). Any other word is encoded as ``<unk>``.

    Example:
        >>> tok = WordTokenizer.from_corpus(["the cat sat.", "the dog sat."])
        >>> tok.tokenize("The cat sat.")
        ['the', 'cat', 'sat', '.']

    Built in lesson 01 (tokens and embeddings).
    """

    @classmethod
    def from_corpus(cls, corpus: list[str], min_count: int = 1) -> WordTokenizer:
        corpus = _check_corpus("WordTokenizer.from_corpus", corpus)
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"WordTokenizer.from_corpus: min_count must be an int >= 1, got {min_count!r}")
        counts = Counter(word for text in corpus for word in WORD_PATTERN.findall(text.lower()))
        words = sorted((word for word, count in counts.items() if count >= min_count), key=lambda w: (-counts[w], w))
        return cls(list(SPECIAL_TOKENS) + [word for word in words if word not in SPECIAL_TOKENS])

    def tokenize(self, text: str) -> list[str]:
        """Lower-case, then split into words and punctuation marks."""
        _check_text("WordTokenizer.tokenize", text)
        return WORD_PATTERN.findall(text.lower())

    def _join(self, tokens: list[str]) -> str:
        text = " ".join(tokens)
        return re.sub(r" ([.,!?;:])", r"\1", text)  # no space before . , ! ? ; :


class CharTokenizer(_VocabularyTokenizer):
    """One token per character (case kept, spaces included).

    ``CharTokenizer.from_corpus(corpus)`` builds the vocabulary: the special tokens, then
    every character of the corpus in sorted order. Tiny vocabulary, long sequences.

    Built in lesson 01 (tokens and embeddings).
    """

    @classmethod
    def from_corpus(cls, corpus: list[str]) -> CharTokenizer:
        corpus = _check_corpus("CharTokenizer.from_corpus", corpus)
        characters = sorted(set("".join(corpus)))
        return cls(list(SPECIAL_TOKENS) + characters)

    def tokenize(self, text: str) -> list[str]:
        _check_text("CharTokenizer.tokenize", text)
        return list(text)

    def _join(self, tokens: list[str]) -> str:
        return "".join(tokens)


def _merge_pair(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Replace every neighbouring ``pair`` in ``symbols`` (left to right) by the two glued together."""
    merged = []
    index = 0
    while index < len(symbols):
        if index + 1 < len(symbols) and (symbols[index], symbols[index + 1]) == pair:
            merged.append(symbols[index] + symbols[index + 1])
            index += 2
        else:
            merged.append(symbols[index])
            index += 1
    return tuple(merged)


def _count_pairs(word_counts: dict[tuple[str, ...], int]) -> Counter:
    """How often each neighbouring pair of symbols occurs, weighted by the word's count."""
    pair_counts: Counter = Counter()
    for symbols, count in word_counts.items():
        for pair in zip(symbols[:-1], symbols[1:], strict=True):
            pair_counts[pair] += count
    return pair_counts


class BPETokenizer(_VocabularyTokenizer):
    """Byte-pair encoding (Sennrich et al., 2016) on characters, trained by the course.

    Training (``BPETokenizer.train``):

    1. Lower-case the corpus and cut it into words; the space before a word is kept as
       the mark ``▁``, so ``"the cat"`` becomes the words ``the`` and ``▁cat``.
    2. Start with every word spelled as single characters; the vocabulary is the special
       tokens plus every character seen.
    3. Count every pair of neighbouring symbols over all words, merge the most frequent
       pair everywhere, and add the glued symbol to the vocabulary. Ties go to the pair
       that comes first in alphabetical order, so training is deterministic.
    4. Repeat until the vocabulary has ``vocab_size`` tokens or no pair occurs at least
       ``min_frequency`` times. Merges never cross word boundaries.

    Encoding spells each word in characters and replays the merges in the order they were
    learned. A character never seen in training becomes ``<unk>``.

    Built in lesson 01 (tokens and embeddings).
    """

    def __init__(self, tokens: list[str], merges: list[tuple[str, str]]):
        super().__init__(tokens)
        for left, right in merges:
            if left + right not in self.token_to_id:
                raise ValueError(
                    f"BPETokenizer: merge {(left, right)} makes {left + right!r}, which is not in the vocabulary"
                )
        self.merges: list[tuple[str, str]] = list(merges)

    @staticmethod
    def split_words(text: str) -> list[str]:
        """Lower-case and cut into words, writing the space before a word as ``▁``."""
        return [word.replace(" ", SPACE_MARK) for word in BPE_WORD_PATTERN.findall(_normalize(text))]

    @classmethod
    def train(cls, corpus: list[str], vocab_size: int, min_frequency: int = 2) -> BPETokenizer:
        where = "BPETokenizer.train"
        corpus = _check_corpus(where, corpus)
        if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
            raise ValueError(f"{where}: min_frequency must be an int >= 1, got {min_frequency!r}")

        word_counts: Counter = Counter()
        for text in corpus:
            for word in cls.split_words(text):
                word_counts[tuple(word)] += 1  # the word spelled as characters

        alphabet = sorted({character for symbols in word_counts for character in symbols})
        tokens = list(SPECIAL_TOKENS) + alphabet
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < len(tokens):
            raise ValueError(
                f"{where}: vocab_size must be an int >= {len(tokens)} "
                f"(4 special tokens + {len(alphabet)} characters of the corpus), got {vocab_size!r}"
            )

        merges: list[tuple[str, str]] = []
        while len(tokens) < vocab_size:
            pair_counts = _count_pairs(word_counts)
            if not pair_counts:
                break
            # Most frequent first; among equals, the alphabetically first pair.
            best_pair, best_count = min(pair_counts.items(), key=lambda item: (-item[1], item[0]))
            if best_count < min_frequency:
                break
            merges.append(best_pair)
            new_token = best_pair[0] + best_pair[1]
            if new_token not in tokens:
                tokens.append(new_token)
            word_counts = Counter({_merge_pair(symbols, best_pair): n for symbols, n in word_counts.items()})
        return cls(tokens, merges)

    def tokenize(self, text: str) -> list[str]:
        """Text -> subword pieces, e.g. ``['the', '▁c', 'at']``. Unseen characters become ``<unk>``."""
        _check_text("BPETokenizer.tokenize", text)
        pieces: list[str] = []
        for word in self.split_words(text):
            symbols = tuple(character if character in self.token_to_id else UNK for character in word)
            for pair in self.merges:  # replay the merges in the order they were learned
                symbols = _merge_pair(symbols, pair)
            pieces.extend(symbols)
        return pieces

    def _join(self, tokens: list[str]) -> str:
        return "".join(tokens).replace(SPACE_MARK, " ")

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"
