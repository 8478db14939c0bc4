"""One token per word or punctuation mark.

Built in lesson 01 (tokens and embeddings).
"""

from __future__ import annotations

import re
from collections import Counter

from course_lib.tokenization._common import SPECIAL_TOKENS, _check_corpus, _check_text, _VocabularyTokenizer

WORD_PATTERN = re.compile(r"\w+|[^\w\s]")
"""A word is a run of letters/digits; every other non-space character is a token of its own."""


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
