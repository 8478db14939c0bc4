"""Reading what a trained model does, from one record of its forward pass (lesson 14).

Two classic measurements, both read from ``course_lib.activations.run_with_record``:

* **Attention heads with a job.** Feed a sequence of random tokens ``x`` followed by ``x`` again.
  A *previous-token head* puts its weight on the token just before the query
  (``previous_token_score``). An *induction head* looks for the earlier copy of the current token
  and attends to the token that came **after** it, which is the one to predict next: at position
  ``i`` of the second copy it attends to ``i - period + 1`` (``induction_score``). Random tokens
  can only be predicted by copying, so a high score means the head copies.
* **The logit lens.** The residual stream after each block has the shape of the model's output
  before its last two steps. Send it through the final norm and the output layer anyway, and it
  says which token the model "would predict" if it stopped at that layer (``logit_lens``).

Built in lesson 14 (a real chat LLM).
"""

from __future__ import annotations

import torch
from torch import nn

from course_lib._validation import require_min_rank, require_positive_int, shape_text
from course_lib.activations import ActivationRecord


def repeated_random_tokens(
    period: int, low: int, high: int, generator: torch.Generator | None = None, batch: int = 1
) -> torch.Tensor:
    """``period`` random token ids in ``[low, high)``, then the same ids again.

    Shapes:
        -> (batch, 2 * period), int64; ``ids[:, period:]`` equals ``ids[:, :period]``

    Built in lesson 14 (a real chat LLM).
    """
    where = "repeated_random_tokens"
    period = require_positive_int(where, "period", period)
    batch = require_positive_int(where, "batch", batch)
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low < high):
        raise ValueError(f"{where}: need integers 0 <= low < high, got low={low!r}, high={high!r}")
    first = torch.randint(low, high, (batch, period), generator=generator)  # (batch, period)
    return torch.cat([first, first], dim=1)  # (batch, 2 * period)


def _check_weights(where: str, weights: torch.Tensor) -> None:
    require_min_rank(where, "weights", weights, "(..., T, T) attention weights", 2)
    if weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"{where}: weights must be (..., T, T) self-attention weights, got {shape_text(weights)}")


def induction_score(weights: torch.Tensor, period: int) -> torch.Tensor:
    """How much each head attends like an induction head on a sequence ``x, x`` (``x`` of ``period`` tokens).

    At a position ``i`` of the second copy, the current token appeared before at ``i - period``,
    and the token that followed it sits at ``i - period + 1``: the score is the attention weight
    from ``i`` to ``i - period + 1``, averaged over the ``period`` positions of the second copy.
    The last ``2 * period`` positions must hold the two copies (anything before them is ignored).

    Shapes:
        weights (..., T, T), e.g. (n_layers, n_heads, T, T) -> (...), e.g. (n_layers, n_heads)

    Built in lesson 14 (a real chat LLM).
    """
    where = "induction_score"
    _check_weights(where, weights)
    period = require_positive_int(where, "period", period)
    T = weights.shape[-1]
    if T < 2 * period:
        raise ValueError(f"{where}: weights {shape_text(weights)} are too short for two copies of period={period}")
    queries = torch.arange(T - period, T, device=weights.device)  # (period,): the second copy
    keys = queries - period + 1  # (period,): the token after the earlier copy of each query's token
    return weights[..., queries, keys].mean(dim=-1)  # (...)


def previous_token_score(weights: torch.Tensor) -> torch.Tensor:
    """How much each head attends to the token just before the query: the mean of ``weights[..., i, i - 1]``
    over the positions ``i = 1 .. T - 1``.

    Shapes:
        weights (..., T, T) -> (...)

    Built in lesson 14 (a real chat LLM).
    """
    where = "previous_token_score"
    _check_weights(where, weights)
    if weights.shape[-1] < 2:
        raise ValueError(f"{where}: weights must have T >= 2 positions, got {shape_text(weights)}")
    return torch.diagonal(weights, offset=-1, dim1=-2, dim2=-1).mean(dim=-1)  # (...): entries (i, i - 1)


def attention_weights(record: ActivationRecord, batch_index: int = 0) -> torch.Tensor:
    """Every layer's attention weights of one sequence of a record, stacked.

    Shapes:
        record of a model with n_layers blocks -> (n_layers, n_heads, T, T)

    Built in lesson 14 (a real chat LLM).
    """
    return record.stack("blocks.{}.self_attn.weights")[:, batch_index]  # (n_layers, n_heads, T, T)


def residual_stream(record: ActivationRecord) -> torch.Tensor:
    """The residual stream of a record: what enters block 0, then what leaves each block.

    Row 0 is the input of the first block (the token embeddings of a Llama); row ``l`` is the
    stream after block ``l`` (``blocks.{l-1}.residual_out``).

    Shapes:
        -> (n_layers + 1, B, T, d_model)

    Built in lesson 14 (a real chat LLM).
    """
    first = record["blocks.0.residual_in"]  # (B, T, d_model)
    after_each = record.stack("blocks.{}.residual_out")  # (n_layers, B, T, d_model)
    return torch.cat([first[None], after_each], dim=0)  # (n_layers + 1, B, T, d_model)


@torch.no_grad()
def logit_lens(residuals: torch.Tensor, final_norm: nn.Module, lm_head: nn.Module) -> torch.Tensor:
    """Next-token probabilities read from any point of the residual stream.

    The model's own output is ``softmax(lm_head(final_norm(stream after the last block)))``. The
    logit lens applies the same two steps to the stream after an earlier block.

    Shapes:
        residuals (..., d_model), e.g. (n_layers + 1, B, T, d_model) -> probabilities (..., V)

    Built in lesson 14 (a real chat LLM).
    """
    require_min_rank("logit_lens", "residuals", residuals, "(..., d_model)", 1)
    return torch.softmax(lm_head(final_norm(residuals)), dim=-1)  # (..., V)
