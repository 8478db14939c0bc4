"""Layer normalisation: rescale each token's features to mean 0 and variance 1.

Built in lesson 06 (MLP, residual connections and layer norm).
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib._validation import require_min_rank, require_positive_int, require_rank, shape_text


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise over the last dimension, then scale by ``weight`` and shift by ``bias``.

    Uses the *biased* variance (divide by d, not d - 1) and puts ``eps`` inside the
    square root, exactly as ``torch.nn.functional.layer_norm``.

    Shapes:
        x: (..., d), weight: (d,), bias: (d,) -> (..., d)

    Built in lesson 06 (MLP, residual connections and layer norm).
    """
    where = "layer_norm"
    require_min_rank(where, "x", x, "(..., d)", 1)
    d = x.shape[-1]
    require_rank(where, "weight", weight, f"(d,) with d={d}", 1)
    require_rank(where, "bias", bias, f"(d,) with d={d}", 1)
    if weight.shape[0] != d or bias.shape[0] != d:
        raise ValueError(
            f"{where}: weight and bias must be (d,) with d={d} like the last dimension of x {shape_text(x)}, "
            f"got {shape_text(weight)} and {shape_text(bias)}"
        )
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # (..., 1), biased: divide by d
    x_hat = (x - mean) / torch.sqrt(variance + eps)  # (..., d)
    return x_hat * weight + bias  # (..., d)


class LayerNorm(nn.Module):
    """``layer_norm`` with a learnable ``weight`` (ones) and ``bias`` (zeros).

    Parameter names match ``nn.LayerNorm`` so weights copy across directly.

    Shapes:
        x: (..., d_model) -> (..., d_model)

    Built in lesson 06 (MLP, residual connections and layer norm).
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        require_positive_int("LayerNorm", "d_model", d_model)
        self.d_model = d_model
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_min_rank("LayerNorm.forward", "x", x, f"(..., d_model) with d_model={self.d_model}", 1)
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"LayerNorm.forward: x must be (..., d_model) with d_model={self.d_model}, got {shape_text(x)}"
            )
        return layer_norm(x, self.weight, self.bias, self.eps)  # (..., d_model)
