"""Positional information: sinusoidal encodings and learned position embeddings.

Built in lesson 02 (positional encoding).
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib._validation import (
    as_float,
    as_int,
    require_dtype,
    require_float_tensor,
    require_positive_int,
    require_rank,
    require_size,
)


def _check_positions(where: str, x: torch.Tensor, d_model: int, start, max_len: int) -> int:
    """Check ``x`` (B, T, d_model) and ``start``; return ``start`` as an int with start + T <= max_len."""
    expected = f"(B, T, d_model) with d_model={d_model}"
    require_rank(where, "x", x, expected, 3)
    require_size(where, "x", x, -1, d_model, expected)
    require_float_tensor(where, "x", x, expected)
    start = as_int(where, "start", start, minimum=0)
    T = x.shape[1]
    if start + T > max_len:
        raise ValueError(
            f"{where}: positions {start}..{start + T - 1} exceed max_len={max_len}; "
            f"x has T={T} positions starting at start={start}"
        )
    return start


def sinusoidal_positional_encoding(seq_len: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed sinusoidal encoding of "Attention Is All You Need" (section 3.5).

    Position ``pos`` and dimension pair ``i`` get
    ``PE[pos, 2i] = sin(pos / base**(2i/d_model))`` and
    ``PE[pos, 2i+1] = cos(pos / base**(2i/d_model))``: sin on even, cos on odd dimensions.

    Shapes:
        returns: (seq_len, d_model)

    Built in lesson 02 (positional encoding).
    """
    where = "sinusoidal_positional_encoding"
    seq_len = require_positive_int(where, "seq_len", seq_len)
    d_model = require_positive_int(where, "d_model", d_model)
    if d_model % 2 != 0:
        raise ValueError(f"{where}: d_model must be even (sin/cos pairs), got {d_model}")
    base = as_float(where, "base", base, "a positive finite number (e.g. 10000.0)", low=0.0, low_open=True)

    positions = torch.arange(seq_len, dtype=torch.float64).unsqueeze(1)  # (seq_len, 1)
    pair_index = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d_model/2,)
    frequencies = base ** (-pair_index / d_model)  # (d_model/2,)
    angles = positions * frequencies  # (seq_len, d_model/2)

    encoding = torch.zeros(seq_len, d_model, dtype=torch.float64)  # (seq_len, d_model)
    encoding[:, 0::2] = torch.sin(angles)
    encoding[:, 1::2] = torch.cos(angles)
    return encoding.to(torch.get_default_dtype())


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal encoding to a batch of embeddings.

    The table is a buffer (saved with the model, never trained).

    Shapes:
        x: (B, T, d_model) -> (B, T, d_model)

    Built in lesson 02 (positional encoding).
    """

    def __init__(self, d_model: int, max_len: int = 512, base: float = 10000.0):
        super().__init__()
        self.d_model = require_positive_int("SinusoidalPositionalEncoding", "d_model", d_model)
        self.max_len = require_positive_int("SinusoidalPositionalEncoding", "max_len", max_len)
        self.register_buffer("encoding", sinusoidal_positional_encoding(max_len, d_model, base), persistent=False)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Add the encodings of positions start .. start + T - 1 (start > 0 when a cache holds the earlier ones)."""
        start = _check_positions("SinusoidalPositionalEncoding.forward", x, self.d_model, start, self.max_len)
        T = x.shape[1]
        return x + self.encoding[start : start + T].to(x.dtype)  # (B, T, d_model)


class LearnedPositionalEmbedding(nn.Module):
    """A trainable vector per position, as in BERT and GPT-2.

    Shapes:
        x: (B, T, d_model) -> (B, T, d_model), the position vectors added

    Built in lesson 02 (positional encoding).
    """

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len = require_positive_int("LearnedPositionalEmbedding", "max_len", max_len)
        self.d_model = require_positive_int("LearnedPositionalEmbedding", "d_model", d_model)
        self.weight = nn.Parameter(torch.randn(self.max_len, self.d_model) * 0.02)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Add the vectors of positions start .. start + T - 1 (start > 0 when a cache holds the earlier ones)."""
        where = "LearnedPositionalEmbedding.forward"
        start = _check_positions(where, x, self.d_model, start, self.max_len)
        require_dtype(where, "x", x, self.weight.dtype, "the position table")
        T = x.shape[1]
        return x + self.weight[start : start + T]  # (B, T, d_model)
