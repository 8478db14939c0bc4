"""Byte-level BPE, the tokenizer of GPT-2, Llama 3 and SmolLM2: any text, and no ``<unk>``.

Lesson 01's BPE works on characters, so a character it never saw becomes ``<unk>``. A
byte-level BPE works on the UTF-8 bytes of the text instead: its 256 base tokens spell every
string there is (Chinese, emoji, code), and merges glue frequent byte sequences into longer
tokens. Encoding a text takes four steps:

1. **Special tokens** such as ``<|im_start|>`` are cut out of the text first and kept whole:
   each becomes exactly one id, and no merge ever crosses one.
2. **Pre-tokenization**: GPT-2's regex cuts the rest into "words": a run of letters with the
   one space before it (``" cat"``), a run of digits, a run of punctuation, or whitespace.
   Merges never cross a word boundary.
3. **Bytes as printable characters**: each word is spelled in its UTF-8 bytes, byte ``b``
   written as the character ``BYTE_TO_CHAR[b]`` (GPT-2's table). Printable ASCII stays
   itself, the others move to unused code points: space is ``Ġ``, newline is ``Ċ``.
   That is why vocabulary files show ``Ġthe``: " the".
4. **Merges by rank**: while two neighbouring symbols form a known merge, glue the pair with
   the lowest rank (the one learned first) everywhere in the word.

Decoding joins the tokens' bytes and decodes them as UTF-8 with ``errors="replace"``: a token
holding only part of a character (Chinese characters are 3 bytes, emoji 4) shows alone as
"�", and ``token_pieces`` shows its bytes instead, such as ``<e4 bd>``.

Training (``ByteLevelBPETokenizer.train``) counts every neighbouring pair of symbols over all
words, merges the most frequent pair and repeats. It keeps the pair counts up to date after
each merge instead of counting them all again (see ``learn_merges``).

Built in lesson 13 (from GPT-2 to a modern LLM).
"""

from __future__ import annotations

import functools
import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import regex

from course_lib.tokenization._common import _check_text

GPT2_SPLIT_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
"""GPT-2's pre-tokenization: English contractions, letters with one space before them, digits
with one space before them, punctuation with one space before it, then whitespace (a run of
spaces leaves its last space to the word that follows)."""


def _printable_byte_table() -> dict[int, str]:
    """GPT-2's table from a byte (0..255) to a printable character.

    The 188 bytes that are already printable Latin-1 characters (``!`` to ``~``, ``¡`` to ``¬``,
    ``®`` to ``ÿ``) stand for themselves. The other 68 (space, control characters, ...) are
    given the characters 256, 257, ... in byte order: space (byte 32) becomes chr(256 + 32) = "Ġ".
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {}
    n_moved = 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + n_moved)
            n_moved += 1
    return table


BYTE_TO_CHAR: dict[int, str] = _printable_byte_table()
"""Byte -> the printable character that spells it in a vocabulary (32 -> "Ġ", 10 -> "Ċ")."""
CHAR_TO_BYTE: dict[str, int] = {char: byte for byte, char in BYTE_TO_CHAR.items()}
"""The inverse table: printable character -> byte."""


def bytes_to_symbols(data: bytes) -> list[str]:
    """Spell bytes in the printable alphabet, one character per byte: b" hi" -> ["Ġ", "h", "i"]."""
    return [BYTE_TO_CHAR[byte] for byte in data]


def symbols_to_bytes(token: str) -> bytes:
    """The bytes a vocabulary entry stands for: "Ġhi" -> b" hi"."""
    return bytes(CHAR_TO_BYTE[char] for char in token)


def _neighbour_pairs(symbols: list) -> list[tuple]:
    """Every pair of neighbouring symbols: [a, b, c] -> [(a, b), (b, c)]."""
    return list(zip(symbols[:-1], symbols[1:], strict=True))


def _merge_pair(symbols: list, pair: tuple) -> list:
    """Glue every neighbouring ``pair`` in ``symbols``, left to right (``a a a`` -> ``aa a``)."""
    merged = []
    index = 0
    while index < len(symbols):
        if index + 1 < len(symbols) and symbols[index] == pair[0] and symbols[index + 1] == pair[1]:
            merged.append(symbols[index] + symbols[index + 1])
            index += 2
        else:
            merged.append(symbols[index])
            index += 1
    return merged


@functools.lru_cache(maxsize=32)
def _special_pattern(special_tokens: tuple[str, ...]):
    """A regex that finds special tokens; the longest wins where two start at the same place."""
    if not special_tokens:
        return None
    alternatives = sorted(special_tokens, key=len, reverse=True)
    return regex.compile("(" + "|".join(regex.escape(token) for token in alternatives) + ")")


def split_on_special_tokens(text: str, special_tokens: Sequence[str]) -> list[tuple[str, bool]]:
    """Cut ``text`` into ``(piece, is_special)`` parts, in order; empty pieces are left out.

    >>> split_on_special_tokens("<|im_start|>user\\nhi", ["<|im_start|>"])
    [('<|im_start|>', True), ('user\\nhi', False)]
    """
    pattern = _special_pattern(tuple(special_tokens))
    if pattern is None:
        return [(text, False)] if text else []
    parts = pattern.split(text)  # text, special, text, special, ..., text
    return [(part, index % 2 == 1) for index, part in enumerate(parts) if part]


def _check_utf8_text(where: str, text) -> None:
    """Raise unless ``text`` is a str that UTF-8 can encode (a lone surrogate such as "\\ud800" cannot)."""
    _check_text(where, text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{where}: text must be valid Unicode, got a lone surrogate {text[error.start]!r} at index {error.start}"
        ) from None


class _GreaterPairFirst:
    """Heap key: among pairs with the same count, the greater pair (as bytes) comes out first."""

    __slots__ = ("pair",)

    def __init__(self, pair: tuple[bytes, bytes]):
        self.pair = pair

    def __lt__(self, other: _GreaterPairFirst) -> bool:
        return self.pair > other.pair


def learn_merges(word_counts: dict[bytes, int], n_new_tokens: int) -> list[tuple[bytes, bytes]]:
    """BPE training on words given as bytes with their counts: the merges, in the order learned.

    Each step merges the most frequent neighbouring pair of symbols; among pairs with the same
    count, the greatest pair, comparing ``(left, right)`` as byte strings. It stops once the
    merges have made ``n_new_tokens`` distinct new symbols, or when no pair is left.

    Counting every pair again after each merge would cost a pass over all words per merge. Here
    the counts are kept up to date instead:

    * ``pair_counts``: pair -> how often it occurs, weighted by the word counts;
    * ``words_with_pair``: pair -> the indices of the words where it occurs;
    * a heap of ``(-count, pair)`` to find the best pair. A pair whose count changes is pushed
      again, and an entry whose count is out of date is skipped when it comes out.

    A merge of ``(a, b)`` touches only the words that contain it: for each, the pairs of its old
    spelling are taken away from the counts and the pairs of its new spelling are added.

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    words = [[bytes([byte]) for byte in word] for word in word_counts]  # each word spelled as single bytes
    counts = list(word_counts.values())
    pair_counts: Counter = Counter()
    words_with_pair: defaultdict = defaultdict(set)
    for index, symbols in enumerate(words):
        for pair in _neighbour_pairs(symbols):
            pair_counts[pair] += counts[index]
            words_with_pair[pair].add(index)
    heap = [(-count, _GreaterPairFirst(pair)) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[bytes, bytes]] = []
    new_symbols: set[bytes] = set()
    while len(new_symbols) < n_new_tokens and heap:
        negative_count, key = heapq.heappop(heap)
        best = key.pair
        if pair_counts.get(best, 0) != -negative_count:
            continue  # stale: this pair's count has changed since the entry was pushed
        merges.append(best)
        new_symbols.add(best[0] + best[1])  # a set: two pairs can glue into the same bytes
        changed = set()
        for index in words_with_pair.pop(best):
            old, count = words[index], counts[index]
            new = _merge_pair(old, best)
            old_pairs, new_pairs = _neighbour_pairs(old), _neighbour_pairs(new)
            for pair in old_pairs:
                pair_counts[pair] -= count
            for pair in new_pairs:
                pair_counts[pair] += count
            for pair in set(old_pairs) - set(new_pairs):
                words_with_pair[pair].discard(index)
            for pair in new_pairs:
                words_with_pair[pair].add(index)
            changed.update(old_pairs, new_pairs)
            words[index] = new
        for pair in changed:
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], _GreaterPairFirst(pair)))
            else:
                del pair_counts[pair]
                words_with_pair.pop(pair, None)
    return merges


class ByteLevelBPETokenizer:
    """GPT-2-style byte-level BPE: ``encode(text) -> ids`` and ``decode(ids) -> text`` for any text.

    Args:
        tokens: the vocabulary, id ``i`` is ``tokens[i]``, written in the printable byte alphabet
            (``"Ġthe"`` is " the"); special tokens are written as themselves.
        merges: the merges in rank order (first = learned first), each a pair ``("Ġ", "t")``
            or a string ``"Ġ t"`` as GGUF files and ``merges.txt`` store them.
        special_tokens: tokens matched whole in the text before anything else, such as
            ``<|im_start|>``; each must be in ``tokens``.

    A byte with no token of its own is dropped by ``encode``, as Hugging Face's tokenizer does.
    SmolLM2's vocabulary lacks 21 of the 256 bytes, which its training text never held: six
    control characters, the bytes no UTF-8 text contains (C0, C1, F5 to FF), and F1, F2, which
    start only unassigned code points. ``missing_bytes`` lists them.

    ``ByteLevelBPETokenizer.train(text, vocab_size)`` learns a vocabulary from a text.

    Example:
        >>> tokenizer = ByteLevelBPETokenizer.train("the cat sat on the mat " * 20, vocab_size=270)
        >>> tokenizer.token_pieces(tokenizer.encode("the cat"))
        ['the', ' cat']

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """

    def __init__(self, tokens: Sequence[str], merges: Iterable, special_tokens: Iterable[str] = ()):
        where = "ByteLevelBPETokenizer"
        tokens = list(tokens)
        if not all(isinstance(token, str) and token for token in tokens):
            raise ValueError(f"{where}: tokens must be a list of non-empty strings, got {tokens[:5]!r}...")
        if len(set(tokens)) != len(tokens):
            duplicates = sorted(token for token, count in Counter(tokens).items() if count > 1)
            raise ValueError(f"{where}: the vocabulary has duplicate tokens {duplicates[:5]}")
        self.id_to_token: list[str] = tokens
        self.token_to_id: dict[str, int] = {token: index for index, token in enumerate(tokens)}

        self.special_tokens: list[str] = list(special_tokens)
        for token in self.special_tokens:
            if token not in self.token_to_id:
                raise ValueError(f"{where}: special token {token!r} is not in the vocabulary")
        self._special_set = set(self.special_tokens)
        for token in tokens:
            if token not in self._special_set and not set(token) <= CHAR_TO_BYTE.keys():
                raise ValueError(
                    f"{where}: token {token!r} is not written in the printable byte alphabet "
                    "(BYTE_TO_CHAR); list it in special_tokens if it is one"
                )

        self.merges: list[tuple[str, str]] = [self._check_merge(where, merge) for merge in merges]
        self.merge_ranks: dict[tuple[str, str], int] = {}
        for rank, pair in enumerate(self.merges):
            self.merge_ranks.setdefault(pair, rank)  # a repeated merge keeps its first rank
        self.missing_bytes: list[int] = [byte for byte in range(256) if BYTE_TO_CHAR[byte] not in self.token_to_id]
        self._word_cache: dict[str, list[int]] = {}

    def _check_merge(self, where: str, merge) -> tuple[str, str]:
        pair = tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge)
        if len(pair) != 2 or not all(isinstance(part, str) and part for part in pair):
            raise ValueError(f"{where}: a merge must be a pair of tokens or a string 'left right', got {merge!r}")
        for part in (*pair, pair[0] + pair[1]):
            if part not in self.token_to_id:
                raise ValueError(f"{where}: merge {merge!r} needs {part!r}, which is not in the vocabulary")
        return pair

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary, special tokens included (V)."""
        return len(self.id_to_token)

    # ------------------------------------------------------------------ encoding

    def pre_tokenize(self, text: str) -> list[str]:
        """Cut text into special tokens and GPT-2 regex words: ``"hi there!"`` -> ``["hi", " there", "!"]``."""
        _check_utf8_text("ByteLevelBPETokenizer.pre_tokenize", text)
        words = []
        for piece, is_special in split_on_special_tokens(text, self.special_tokens):
            words.extend([piece] if is_special else GPT2_SPLIT_PATTERN.findall(piece))
        return words

    def bpe(self, word: str) -> list[str]:
        """One word -> its tokens (printable spelling), replaying the merges by rank.

        >>> tokenizer.bpe(" cat")  # doctest: +SKIP
        ['Ġcat']
        """
        symbols = [char for char in bytes_to_symbols(word.encode("utf-8")) if char in self.token_to_id]
        while len(symbols) > 1:
            ranks = [self.merge_ranks.get(pair) for pair in _neighbour_pairs(symbols)]
            known = [(rank, index) for index, rank in enumerate(ranks) if rank is not None]
            if not known:
                break
            _, first = min(known)  # the pair learned earliest
            symbols = _merge_pair(symbols, (symbols[first], symbols[first + 1]))
        return symbols

    def _encode_word(self, word: str) -> list[int]:
        if word not in self._word_cache:
            if len(self._word_cache) > 100_000:
                self._word_cache.clear()
            self._word_cache[word] = [self.token_to_id[token] for token in self.bpe(word)]
        return self._word_cache[word]

    def encode(self, text: str) -> list[int]:
        """Text -> token ids. Special tokens in the text become their one id each.

        Built in lesson 13 (from GPT-2 to a modern LLM).
        """
        _check_utf8_text("ByteLevelBPETokenizer.encode", text)
        ids: list[int] = []
        for piece, is_special in split_on_special_tokens(text, self.special_tokens):
            if is_special:
                ids.append(self.token_to_id[piece])
                continue
            for word in GPT2_SPLIT_PATTERN.findall(piece):
                ids.extend(self._encode_word(word))
        return ids

    # ------------------------------------------------------------------ decoding

    def _check_ids(self, where: str, ids) -> list[int]:
        if hasattr(ids, "tolist"):  # a tensor or an array
            ids = ids.tolist()
        if isinstance(ids, int) and not isinstance(ids, bool):
            ids = [ids]
        if not isinstance(ids, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ValueError(f"{where}: ids must be a list of ints or a 1-D integer tensor, got {ids!r}")
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"{where}: id {i} is outside the vocabulary [0, {self.vocab_size})")
        return list(ids)

    def piece_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for: ``Ġthe`` -> b" the"; a special token -> its UTF-8 text."""
        if hasattr(token_id, "item"):  # a 0-d tensor or a numpy integer
            token_id = token_id.item()
        (token_id,) = self._check_ids("ByteLevelBPETokenizer.piece_bytes", [token_id])
        token = self.id_to_token[token_id]
        if token in self._special_set:
            return token.encode("utf-8")
        return symbols_to_bytes(token)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Token ids (a list of ints or a 1-D tensor) -> text: join the bytes, then decode UTF-8.

        Bytes that are not valid UTF-8 (part of a character) become "�".

        Built in lesson 13 (from GPT-2 to a modern LLM).
        """
        ids = self._check_ids("ByteLevelBPETokenizer.decode", ids)
        if skip_special_tokens:
            ids = [i for i in ids if self.id_to_token[i] not in self._special_set]
        return b"".join(self.piece_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def ids_to_tokens(self, ids) -> list[str]:
        """The vocabulary entries of the ids, in the printable byte alphabet (``Ġthe``)."""
        return [self.id_to_token[i] for i in self._check_ids("ByteLevelBPETokenizer.ids_to_tokens", ids)]

    def token_pieces(self, ids) -> list[str]:
        """A readable piece per id: its text, or ``<e4 bd>`` when its bytes are not whole characters.

        ``decode`` of a token holding 2 of the 3 bytes of "你" gives "�"; this shows the bytes.
        """
        pieces = []
        for i in self._check_ids("ByteLevelBPETokenizer.token_pieces", ids):
            data = self.piece_bytes(i)
            try:
                pieces.append(data.decode("utf-8"))
            except UnicodeDecodeError:
                pieces.append("<" + " ".join(f"{byte:02x}" for byte in data) + ">")
        return pieces

    def __repr__(self) -> str:
        return (
            f"ByteLevelBPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={len(self.special_tokens)})"
        )

    # ------------------------------------------------------------------ training

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Iterable[str] = ()) -> ByteLevelBPETokenizer:
        """Learn a byte-level BPE from ``text``: a vocabulary of ``vocab_size`` tokens.

        The vocabulary is the special tokens (ids 0, 1, ...), then the 256 bytes in byte order,
        then one token per merge. Special tokens in the text are cut out before counting, so
        no merge crosses them. Training is deterministic: the most frequent pair wins, and among
        equals the greatest pair as byte strings. It stops early if no pair is left to merge.

        Built in lesson 13 (from GPT-2 to a modern LLM).
        """
        where = "ByteLevelBPETokenizer.train"
        _check_utf8_text(where, text)
        special_tokens = list(special_tokens)
        if not all(isinstance(token, str) and token for token in special_tokens):
            raise ValueError(f"{where}: special_tokens must be non-empty strings, got {special_tokens!r}")
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"{where}: special_tokens has duplicates: {special_tokens!r}")
        n_base = len(special_tokens) + 256
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < n_base:
            raise ValueError(
                f"{where}: vocab_size must be an int >= {n_base} "
                f"({len(special_tokens)} special tokens + 256 bytes), got {vocab_size!r}"
            )

        word_counts: Counter = Counter()
        for piece, is_special in split_on_special_tokens(text, special_tokens):
            if not is_special:
                word_counts.update(word.encode("utf-8") for word in GPT2_SPLIT_PATTERN.findall(piece))

        byte_merges = learn_merges(dict(word_counts), vocab_size - n_base)
        tokens = special_tokens + [BYTE_TO_CHAR[byte] for byte in range(256)]
        merges = []
        for left, right in byte_merges:
            pair = ("".join(bytes_to_symbols(left)), "".join(bytes_to_symbols(right)))
            merges.append(pair)
            tokens.append(pair[0] + pair[1])
        tokens = list(dict.fromkeys(tokens))  # a token made by two different merges is listed once
        return cls(tokens, merges, special_tokens)
