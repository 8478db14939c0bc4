"""One token per character.

Built in lesson 01 (tokens and embeddings).
"""

from __future__ import annotations

from course_lib.tokenization._common import SPECIAL_TOKENS, _check_corpus, _check_text, _VocabularyTokenizer


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
