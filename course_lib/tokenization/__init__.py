"""Tokenizers: from text to a list of integer ids and back.

Three ways to cut text into tokens, all with the same interface
(``tokenize``, ``encode``, ``decode``, ``vocab_size``), built in lesson 01:

* ``WordTokenizer`` (``word.py``): one token per word or punctuation mark;
* ``CharTokenizer`` (``char.py``): one token per character;
* ``BPETokenizer`` (``bpe.py``): byte-pair encoding, subword pieces learned from a corpus by
  merging the most frequent neighbouring pair again and again.

Every vocabulary of these three starts with the same four special tokens:
``<pad>`` = 0 (fills short sequences in a batch), ``<unk>`` = 1 (anything not in the
vocabulary), ``<bos>`` = 2 (beginning of sequence) and ``<eos>`` = 3 (end of sequence).

And the tokenizer of real LLMs, built in lesson 13:

* ``ByteLevelBPETokenizer`` (``byte_level_bpe.py``): GPT-2-style BPE on UTF-8 bytes, so any
  text encodes without ``<unk>``; it reads SmolLM2's vocabulary and merges from its GGUF file.

These tokenizers are written to be read, not to be fast.

Built in lesson 01 (tokens and embeddings) and lesson 13 (from GPT-2 to a modern LLM).
"""

from course_lib.tokenization._common import (
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
    PAD,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK,
    UNK_ID,
)
from course_lib.tokenization.bpe import (
    BPE_WORD_PATTERN,
    SPACE_MARK,
    BPETokenizer,
)
from course_lib.tokenization.byte_level_bpe import (
    BYTE_TO_CHAR,
    CHAR_TO_BYTE,
    GPT2_SPLIT_PATTERN,
    ByteLevelBPETokenizer,
    bytes_to_symbols,
    learn_merges,
    split_on_special_tokens,
    symbols_to_bytes,
)
from course_lib.tokenization.char import CharTokenizer
from course_lib.tokenization.word import WORD_PATTERN, WordTokenizer

__all__ = [
    "BOS",
    "BOS_ID",
    "BPE_WORD_PATTERN",
    "BYTE_TO_CHAR",
    "CHAR_TO_BYTE",
    "EOS",
    "EOS_ID",
    "GPT2_SPLIT_PATTERN",
    "PAD",
    "PAD_ID",
    "SPACE_MARK",
    "SPECIAL_TOKENS",
    "UNK",
    "UNK_ID",
    "WORD_PATTERN",
    "BPETokenizer",
    "ByteLevelBPETokenizer",
    "CharTokenizer",
    "WordTokenizer",
    "bytes_to_symbols",
    "learn_merges",
    "split_on_special_tokens",
    "symbols_to_bytes",
]
