"""Byte-pair encoding on characters, trained by the course.

Built in lesson 01 (tokens and embeddings).
"""

from __future__ import annotations

import re
from collections import Counter

from course_lib.tokenization._common import (
    SPECIAL_TOKENS,
    UNK,
    _check_corpus,
    _check_text,
    _normalize,
    _VocabularyTokenizer,
)

SPACE_MARK = "▁"
"""BPE writes the space before a word as this visible mark, so ``decode`` can put spaces back."""

BPE_WORD_PATTERN = re.compile(r" ?\w+| ?[^\w\s]")
"""BPE pre-split: a word or a punctuation mark together with the one space before it."""


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
