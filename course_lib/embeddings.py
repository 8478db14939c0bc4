"""Token embeddings: a lookup table from token ids to vectors.

Built in lesson 01 (tokens and embeddings).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course_lib._validation import INTEGER_DTYPES, require_positive_int, require_rank


def checked_token_ids(where: str, token_ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Raise a ValueError naming ``where`` unless ``token_ids`` are integer ids in [0, V) on the
    table's device; return them as int64/int32, the index types PyTorch accepts.

    Shapes:
        token_ids (B, T) or (T,), table (V, d_model) -> token_ids, same shape

    Built in lesson 01 (tokens and embeddings).
    """
    require_rank(where, "token_ids", token_ids, "(B, T) or (T,)", (1, 2))
    if token_ids.dtype not in INTEGER_DTYPES:
        raise ValueError(
            f"{where}: token_ids must be an integer tensor (int64, int32, int16, int8 or uint8), "
            f"got dtype {token_ids.dtype}"
        )
    if token_ids.device != table.device:
        raise ValueError(f"{where}: token_ids are on {token_ids.device} but the table is on {table.device}")
    V = table.shape[0]
    if token_ids.numel():
        low, high = torch.stack((token_ids.min(), token_ids.max())).tolist()  # one device sync, not two
        if low < 0 or high >= V:
            raise ValueError(f"{where}: token ids must lie in [0, V) with V={V}, got values from {low} to {high}")
    if token_ids.dtype not in (torch.int64, torch.int32):
        token_ids = token_ids.long()  # a uint8 index would be read as a bool mask; int8/int16 are not indices
    return token_ids


def embedding_lookup(token_ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Pick row ``token_ids[b, t]`` of ``table`` for every token.

    The same as ``one_hot(token_ids, V) @ table``, without building the one-hot matrix.

    Shapes:
        token_ids: (B, T) integer ids in [0, V)
        table: (V, d_model)
        returns: (B, T, d_model)

    Built in lesson 01 (tokens and embeddings).
    """
    where = "embedding_lookup"
    require_rank(where, "table", table, "(V, d_model)", 2)
    token_ids = checked_token_ids(where, token_ids, table)
    return table[token_ids]  # (B, T, d_model)


class TokenEmbedding(nn.Module):
    """Token embedding scaled by sqrt(d_model), as in the paper (section 3.4).

    The scale keeps the embeddings' size comparable to the positional encoding
    that is added next. GPT-style models pass ``scale=False``.

    ``fused`` (default False) looks rows up with ``embedding_lookup`` above;
    ``use_fast_path(model)`` (lesson 09) sets it to True for PyTorch's ``F.embedding``: the same
    rows, with a faster backward pass.

    Shapes:
        token_ids: (B, T) -> (B, T, d_model)

    Built in lesson 01 (tokens and embeddings).
    """

    def __init__(self, vocab_size: int, d_model: int, scale: bool = True):
        super().__init__()
        vocab_size = require_positive_int("TokenEmbedding", "vocab_size", vocab_size)
        d_model = require_positive_int("TokenEmbedding", "d_model", d_model)
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.scale = math.sqrt(d_model) if scale else 1.0
        self.weight = nn.Parameter(torch.randn(vocab_size, d_model) * d_model**-0.5)
        self.fused = False

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        where = "TokenEmbedding.forward"
        require_rank(where, "token_ids", token_ids, "(B, T)", 2, hint="add a batch dimension with ids.unsqueeze(0)")
        if self.fused:  # the fast path: PyTorch's kernel, after the same checks
            embeddings = F.embedding(checked_token_ids(where, token_ids, self.weight), self.weight)  # (B, T, d_model)
        else:
            embeddings = embedding_lookup(token_ids, self.weight)  # (B, T, d_model)
        if self.scale == 1.0:
            return embeddings  # no scaling (GPT-style)
        return embeddings * self.scale  # (B, T, d_model)
