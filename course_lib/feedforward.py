"""The position-wise feed-forward network (the Transformer's MLP).

* ``FeedForward``: linear -> ReLU/GELU -> linear. Built in lesson 06 (MLP, residual
  connections and layer norm).
* ``SwiGLU``: Llama's gated MLP. Built in lesson 13 (from GPT-2 to a modern LLM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_lib._validation import (
    require_choice,
    require_dtype,
    require_float_tensor,
    require_min_rank,
    require_positive_int,
    require_rank,
    require_size,
)

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,  # exact GELU (BERT, nn.Transformer's "gelu")
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's approximation
}


class FeedForward(nn.Module):
    """linear1 -> activation -> dropout -> linear2, applied to every position on its own.

    While ``course_lib.activations.recording`` runs, ``recorder`` keeps ``pre_activation``,
    ``hidden`` (after the activation) and ``output``. With ``keep_hidden`` (default True) the last
    hidden activations stay on ``.last_hidden`` for plotting; ``use_fast_path(model)`` turns that off
    (see ``use_fast_path`` for why).

    Shapes:
        x: (B, T, d_model) -> hidden (B, T, d_ff) -> (B, T, d_model)

    Built in lesson 06 (MLP, residual connections and layer norm).
    """

    recorder = None  # None, or the function course_lib.activations.recording hands over

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        require_positive_int("FeedForward", "d_model", d_model)
        require_positive_int("FeedForward", "d_ff", d_ff)
        require_choice("FeedForward", "activation", activation, ACTIVATIONS)
        self.d_model = d_model
        self.d_ff = d_ff
        self.activation_name = activation
        self.activation = ACTIVATIONS[activation]
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.keep_hidden = True
        self.last_hidden: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        where = "FeedForward.forward"
        expected = f"(B, T, d_model) with d_model={self.d_model}"
        require_rank(where, "x", x, expected, 3)
        require_size(where, "x", x, -1, self.d_model, expected)
        require_float_tensor(where, "x", x, expected)
        require_dtype(where, "x", x, self.linear1.weight.dtype, "the module's weights")
        pre_activation = self.linear1(x)  # (B, T, d_ff)
        hidden = self.activation(pre_activation)  # (B, T, d_ff)
        if self.keep_hidden:
            self.last_hidden = hidden.detach()  # kept for plotting the MLP activations
        output = self.linear2(self.dropout(hidden))  # (B, T, d_model)
        if self.recorder is not None:
            self.recorder(pre_activation=pre_activation, hidden=hidden, output=output)
        return output


class SwiGLU(nn.Module):
    """Llama's gated MLP: ``down(silu(gate(x)) * up(x))``.

    Two projections to d_ff run side by side: ``up`` carries the content and ``gate``,
    through SiLU (x * sigmoid(x)), decides how much of each hidden feature passes. Their
    element-wise product goes back to d_model through ``down``. With three matrices
    instead of two, Llama uses d_ff of about 8/3 * d_model rather than GPT's 4 * d_model
    to keep the parameter count comparable. Equal to Hugging Face's ``LlamaMLP``
    (``gate_proj``, ``up_proj``, ``down_proj``).

    While ``course_lib.activations.recording`` runs, ``recorder`` keeps ``gate`` (after SiLU),
    ``up``, ``hidden`` (their product) and ``output``.

    Shapes:
        x: (..., d_model) -> gate, up (..., d_ff) -> (..., d_model)

    Built in lesson 13 (from GPT-2 to a modern LLM).
    """

    recorder = None  # None, or the function course_lib.activations.recording hands over

    def __init__(self, d_model: int, d_ff: int, bias: bool = False):
        super().__init__()
        require_positive_int("SwiGLU", "d_model", d_model)
        require_positive_int("SwiGLU", "d_ff", d_ff)
        self.d_model = d_model
        self.d_ff = d_ff
        self.gate = nn.Linear(d_model, d_ff, bias=bias)
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.keep_hidden = True  # as in FeedForward: use_fast_path turns it off
        self.last_hidden: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        where = "SwiGLU.forward"
        expected = f"(..., d_model) with d_model={self.d_model}"
        require_min_rank(where, "x", x, expected, 1)
        require_size(where, "x", x, -1, self.d_model, expected)
        require_float_tensor(where, "x", x, expected)
        require_dtype(where, "x", x, self.gate.weight.dtype, "the module's weights")
        gate = F.silu(self.gate(x))  # (..., d_ff): how much of each hidden feature passes
        up = self.up(x)  # (..., d_ff)
        hidden = gate * up  # (..., d_ff): the gate scales each hidden feature
        if self.keep_hidden:
            self.last_hidden = hidden.detach()  # kept for plotting the MLP activations
        output = self.down(hidden)  # (..., d_model)
        if self.recorder is not None:
            self.recorder(gate=gate, up=up, hidden=hidden, output=output)
        return output
