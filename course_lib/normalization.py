"""Normalisation layers: rescale each token's features before a sublayer.

* ``layer_norm`` / ``LayerNorm``: subtract the mean, divide by the standard deviation,
  then scale and shift. Built in lesson 06 (MLP, residual connections and layer norm).
* ``rms_norm`` / ``RMSNorm``: only divide by the root mean square, then scale (no mean,
  no bias), as in Llama. Built in lesson 13 (from GPT-2 to a modern LLM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_lib._validation import require_min_rank, require_positive_int, require_rank, shape_text

HALF_PRECISION = (torch.float16, torch.bfloat16)


def _require_same_float_dtype(where: str, x: torch.Tensor, **parameters: torch.Tensor) -> None:
    """Raise unless ``x`` is floating point and every parameter has the same dtype."""
    if not x.is_floating_point():
        raise ValueError(f"{where}: x must be a floating-point tensor, got dtype {x.dtype}; convert with x.float()")
    for name, parameter in parameters.items():
        if parameter.dtype != x.dtype:
            raise ValueError(
                f"{where}: {name} must have the dtype of x ({x.dtype}), got {parameter.dtype}; "
                f"convert one of them, e.g. {name}.to(x.dtype)"
            )


def _upcast_half(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32, so sums of squares neither overflow nor lose precision."""
    return x.float() if x.dtype in HALF_PRECISION else x


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise over the last dimension, then scale by ``weight`` and shift by ``bias``.

    Uses the *biased* variance (divide by d, not d - 1) and puts ``eps`` inside the
    square root, exactly as ``torch.nn.functional.layer_norm``. float16/bfloat16 input
    is computed in float32 and cast back (as PyTorch does): in float16 the squares
    overflow once |x - mean| exceeds about 256. ``x``, ``weight`` and ``bias`` must
    share one floating-point dtype.

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
    _require_same_float_dtype(where, x, weight=weight, bias=bias)
    x_work = _upcast_half(x)  # float16/bfloat16 -> float32: the variance would overflow in float16
    mean = x_work.mean(dim=-1, keepdim=True)  # (..., 1)
    centered = x_work - mean  # (..., d)
    variance = (centered * centered).mean(dim=-1, keepdim=True)  # (..., 1), biased: divide by d
    x_hat = centered * torch.rsqrt(variance + eps)  # (..., d): rsqrt(v) = 1 / sqrt(v), one op instead of two
    return (x_hat * weight.to(x_work.dtype) + bias.to(x_work.dtype)).to(x.dtype)  # (..., d)


class LayerNorm(nn.Module):
    """``layer_norm`` with a learnable ``weight`` (ones) and ``bias`` (zeros).

    Parameter names match ``nn.LayerNorm`` so weights copy across directly. While
    ``course_lib.activations.recording`` runs, ``recorder`` keeps the ``output``.

    ``fused`` (default False) chooses the readable ``layer_norm`` above; ``use_fast_path(model)``
    sets it to True for PyTorch's fused kernel ``F.layer_norm``: the same function in one
    kernel (``tests/test_fast_path.py`` proves the two equal).

    Shapes:
        x: (..., d_model) -> (..., d_model)

    Built in lesson 06 (MLP, residual connections and layer norm).
    """

    recorder = None  # None, or the function course_lib.activations.recording hands over

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        require_positive_int("LayerNorm", "d_model", d_model)
        self.d_model = d_model
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_min_rank("LayerNorm.forward", "x", x, f"(..., d_model) with d_model={self.d_model}", 1)
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"LayerNorm.forward: x must be (..., d_model) with d_model={self.d_model}, got {shape_text(x)}"
            )
        if self.fused:  # the fast path: one PyTorch kernel, after the readable path's checks
            _require_same_float_dtype("layer_norm", x, weight=self.weight, bias=self.bias)
            output = F.layer_norm(x, (self.d_model,), self.weight, self.bias, self.eps)  # (..., d_model)
        else:
            output = layer_norm(x, self.weight, self.bias, self.eps)  # (..., d_model)
        if self.recorder is not None:
            self.recorder(output=output)
        return output


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Divide each token's features by their root mean square, then scale by ``weight``.

    ``x / sqrt(mean(x**2) + eps) * weight`` over the last dimension. Unlike layer norm
    there is no mean subtraction and no bias: Llama and most modern LLMs keep only the
    rescaling, which is cheaper and trains as well. Equal to ``F.rms_norm``.

    float16/bfloat16 input is computed in float32 and cast back at the end (as
    ``F.rms_norm`` does): the mean of squares of activations in the hundreds would
    overflow float16. ``x`` and ``weight`` must share one floating-point dtype.

    Shapes:
        x: (..., d), weight: (d,) -> (..., d)

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """
    where = "rms_norm"
    require_min_rank(where, "x", x, "(..., d)", 1)
    d = x.shape[-1]
    require_rank(where, "weight", weight, f"(d,) with d={d}", 1)
    if weight.shape[0] != d:
        raise ValueError(
            f"{where}: weight must be (d,) with d={d} like the last dimension of x {shape_text(x)}, "
            f"got {shape_text(weight)}"
        )
    if not eps > 0:
        raise ValueError(f"{where}: eps must be > 0 (it keeps an all-zero token from dividing by zero), got {eps!r}")
    _require_same_float_dtype(where, x, weight=weight)
    x_work = _upcast_half(x)  # float16/bfloat16 -> float32
    mean_square = (x_work * x_work).mean(dim=-1, keepdim=True)  # (..., 1)
    x_hat = x_work * torch.rsqrt(mean_square + eps)  # (..., d), root mean square 1
    return (x_hat * weight.to(x_work.dtype)).to(x.dtype)  # (..., d)


class RMSNorm(nn.Module):
    """``rms_norm`` with a learnable ``weight`` (ones) and no bias.

    The parameter name matches ``nn.RMSNorm`` and Hugging Face's ``LlamaRMSNorm``, so
    weights copy across directly. While ``course_lib.activations.recording`` runs,
    ``recorder`` keeps the ``output``.

    ``fused`` (default False) chooses the readable ``rms_norm``; ``use_fast_path(model)`` sets
    it to True for PyTorch's ``F.rms_norm`` (equal; ``tests/test_fast_path.py``).

    Shapes:
        x: (..., d_model) -> (..., d_model)

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """

    recorder = None  # None, or the function course_lib.activations.recording hands over

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        require_positive_int("RMSNorm", "d_model", d_model)
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not eps > 0:
            raise ValueError(f"RMSNorm: eps must be a number > 0, got {eps!r}")
        self.d_model = d_model
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(d_model))
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_min_rank("RMSNorm.forward", "x", x, f"(..., d_model) with d_model={self.d_model}", 1)
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"RMSNorm.forward: x must be (..., d_model) with d_model={self.d_model}, got {shape_text(x)}"
            )
        if self.fused:  # the fast path: PyTorch's kernel, after the readable path's checks
            _require_same_float_dtype("rms_norm", x, weight=self.weight)
            output = F.rms_norm(x, (self.d_model,), self.weight, self.eps)  # (..., d_model)
        else:
            output = rms_norm(x, self.weight, self.eps)  # (..., d_model)
        if self.recorder is not None:
            self.recorder(output=output)
        return output

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"
