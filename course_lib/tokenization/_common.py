"""What the lesson 01 tokenizers share: the special tokens, input checks and the vocabulary.

Built in lesson 01 (tokens and embeddings).
"""

from __future__ import annotations

from collections import Counter

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


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
