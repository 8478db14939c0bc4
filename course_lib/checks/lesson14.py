"""Checkers of exercises 14: a real chat LLM (a Q4_1 block read back, the induction score, the logit lens)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checks._machinery import (
    _call,
    _checker,
    _compare,
    _dtype_name,
    _require_tensor,
    _shape,
)
from course_lib.interpretability import induction_score, logit_lens
from course_lib.normalization import RMSNorm, rms_norm
from course_lib.pretrained.quantization import dequantize_q4_1

# ---------------------------------------------------------------------------------------------
# 14.1 one Q4_1 block of GGUF, read back as 32 floats
# ---------------------------------------------------------------------------------------------


def _q4_1_block(d: float, m: float, packed: torch.Tensor) -> torch.Tensor:
    """20 bytes: d and m as little-endian float16, then the 16 bytes of packed 4-bit codes."""
    scale = torch.tensor([d], dtype=torch.float16).view(torch.uint8)  # (2,)
    minimum = torch.tensor([m], dtype=torch.float16).view(torch.uint8)  # (2,)
    return torch.cat([scale, minimum, packed.to(torch.uint8)])  # (20,)


def _q4_1_variants(block: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """What the usual mistakes give on one block (each a (32,) tensor)."""
    d16, m16 = block[0:2].view(torch.float16), block[2:4].view(torch.float16)  # (1,) each
    d, m = d16.float(), m16.float()  # (1,) each
    packed = block[4:]  # (16,)
    low, high = packed & 0x0F, packed >> 4  # (16,) each
    q = torch.cat([low, high]).float()  # (32,)
    swapped_d = block[0:2].flip(0).contiguous().view(torch.float16).float()  # (1,): read big-endian
    swapped_m = block[2:4].flip(0).contiguous().view(torch.float16).float()  # (1,)
    nibble_order = (
        "nibble order: byte j holds weight j in its LOW 4 bits (byte & 0x0F) and weight j + 16 in its HIGH 4 bits "
        "(byte >> 4), so the 32 codes are torch.cat([low, high]), not low and high side by side"
    )
    return [
        ("nibble order: the low 4 bits come first: weights 0-15 are byte & 0x0F and weights 16-31 are byte >> 4 "
         "(you put the high halves first)", d * torch.cat([high, low]).float() + m),
        (nibble_order, d * torch.stack([low, high], dim=-1).flatten().float() + m),
        (nibble_order, d * torch.stack([high, low], dim=-1).flatten().float() + m),
        ("forgot the minimum: each weight is d * q + m, and m (bytes 2-3) is usually negative", d * q),
        ("the codes are unsigned, 0 to 15 (Q4_1 has a minimum m instead of a sign): do not subtract 8",
         d * (q - 8) + m),
        ("the codes are unsigned, 0 to 15 (Q4_1 has a minimum m instead of a sign): do not subtract 8",
         d * (q - 8)),
        ("the float16 numbers were read big-endian: GGUF stores them little-endian, which is how "
         "block[0:2].view(torch.float16) reads them; do not reverse the bytes", swapped_d * q + swapped_m),
        ("read the two bytes as bfloat16: d and m are IEEE float16, block[0:2].view(torch.float16)",
         block[0:2].view(torch.bfloat16).float() * q + block[2:4].view(torch.bfloat16).float()),
        ("d and m swapped: bytes 0-1 are the scale d, bytes 2-3 the minimum m; weight = d * q + m", m * q + d),
        ("subtracted the minimum: weight = d * q + m (m is the lowest level, already negative when it should be)",
         d * q - m),
        ("computed in float16: convert d and m to float32 first (.float()), then d * q + m; float16 keeps only "
         "about 3 significant digits", d16 * q.half() + m16),
    ]  # fmt: skip


@_checker("14.1", "dequantize_q4_1_block")
def check_dequantize_q4_1_block(ex, dequantize_fn):
    """14.1: ``dequantize_q4_1_block(block (20,) uint8) -> (32,) float32``: bytes 0-1 the scale ``d`` and bytes 2-3
    the minimum ``m`` (little-endian float16), bytes 4-19 the 32 unsigned 4-bit codes ``q`` (byte j: weight j in
    the low 4 bits, weight j + 16 in the high 4 bits); weight = ``d * q + m``."""
    pattern = torch.tensor([0x21] * 16)  # low nibble 1, high nibble 2: 16 ones, then 16 twos
    counting = torch.arange(16) | ((15 - torch.arange(16)) << 4)  # codes 0..15, then 15..0
    settings = [  # (d, m, packed bytes, what the case is)
        (1.0, 0.0, pattern, "every byte 0x21"),
        (0.5, -4.0, counting, "codes 0..15 then 15..0"),
    ]
    for index in range(4):
        d = float(ex.randn(1).abs().item() * 0.05 + 0.005)
        m = float(-(ex.randn(1).abs().item() * 0.5 + 0.05))
        packed = ex.randint(0, 256, (16,))
        settings.append((d, m, packed, f"random block {index + 1}"))
    for d, m, packed, what in settings:
        block = _q4_1_block(d, m, packed)  # (20,) uint8
        d16, m16 = block[0:2].view(torch.float16).item(), block[2:4].view(torch.float16).item()
        case = f"d={d16:.4g}, m={m16:.4g}, {what}: bytes {block.numpy().tobytes().hex(' ')}"
        got = _call(ex, dequantize_fn, block, case=case)
        expected = dequantize_q4_1(block)  # (32,) float32
        _require_tensor(ex, got, "result", case, "(32,) of weights")
        if got.shape == (1, 32) or got.shape == (32, 1):
            ex.fail(
                f"wrong shape: expected (32,), got {_shape(got)}",
                "return the 32 weights of the block as a 1-D tensor: d and m are one number each, so index "
                "them (d[0]) or .flatten() the result",
                case,
            )
        _compare(
            ex, got, expected, case=case, what="result", variants=_q4_1_variants(block), any_float=True,
            shape_hint="one block holds 32 weights: return a (32,) tensor, the 16 low halves first",
        )  # fmt: skip
        if got.dtype == torch.float16:
            ex.fail(
                "the weights were computed in float16",
                "convert d and m to float32 (.float()) and compute d * q + m in float32",
                case,
            )
    return f"correct on {len(settings)} blocks (nibble order, minimum, scale read as little-endian float16)"


# ---------------------------------------------------------------------------------------------
# 14.2 the induction score of every head
# ---------------------------------------------------------------------------------------------


def _causal_attention_weights(ex, n_layers: int, n_heads: int, T: int, dtype: torch.dtype) -> torch.Tensor:
    """Random attention weights (n_layers, n_heads, T, T): each row a softmax over the keys up to the query."""
    scores = ex.randn(n_layers, n_heads, T, T, dtype=dtype, scale=2.0)  # (n_layers, n_heads, T, T)
    allowed = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T): True = may attend
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)  # (n_layers, n_heads, T, T)


def _stripe_mean(weights: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Mean of weights[..., queries[n], keys[n]] over n (keys may wrap around, as Python indexing does)."""
    return weights[..., queries, keys % weights.shape[-1]].mean(dim=-1)  # (...)


def _induction_variants(weights: torch.Tensor, period: int) -> list[tuple[str, torch.Tensor]]:
    T = weights.shape[-1]
    second = torch.arange(period, T)  # (period,): the queries of the second copy
    everywhere = torch.arange(T)  # (T,)
    tail = torch.arange(period - 1, T)  # (period + 1,): every query whose key i - period + 1 exists
    transposed = weights.transpose(-1, -2)  # (..., T, T): keys and queries swapped
    return [
        ("off by one: you measured attention to i - period, the earlier copy of the current token itself; an "
         "induction head attends to the token AFTER it, i - period + 1 (the one to predict next)",
         _stripe_mean(weights, second, second - period)),
        ("off by one: the token after the earlier copy of the current token is at i - period + 1, not i - period + 2",
         _stripe_mean(weights, second, second - period + 2)),
        ("that is the previous-token score (key i - 1); the induction head's key is i - period + 1",
         _stripe_mean(weights, second, second - 1)),
        ("averaged over the first copy too: only the period positions of the second copy, i = period .. 2 * period "
         "- 1, have an earlier copy of their token", _stripe_mean(weights, tail, tail - period + 1)),
        ("averaged over the first copy too: only the period positions of the second copy, i = period .. 2 * period "
         "- 1, have an earlier copy of their token (a negative index wraps around to the end)",
         _stripe_mean(weights, everywhere, everywhere - period + 1)),
        ("averaged over the first copy too: divide by period (the positions of the second copy), not by T",
         weights[..., second, second - period + 1].sum(dim=-1) / T),
        ("summed instead of averaged: the score is the MEAN weight over the period positions of the second copy",
         weights[..., second, second - period + 1].sum(dim=-1)),
        ("swapped the axes: weights[..., query, key] has the queries (the attending positions) on the rows, the "
         "second-to-last dimension, and the keys on the columns", _stripe_mean(transposed, second, second - period + 1)),
    ]  # fmt: skip


@_checker("14.2", "induction_score")
def check_induction_score(ex, induction_score_fn):
    """14.2: ``induction_score(weights (n_layers, n_heads, T, T), period) -> (n_layers, n_heads)`` with T = 2 * period
    (a sequence x of period tokens, then x again): the mean over the second copy, i = period .. T - 1, of
    ``weights[..., i, i - period + 1]``."""
    settings = [  # n_layers, n_heads, period, dtype
        (2, 3, 5, torch.float64),
        (1, 4, 8, torch.float32),
        (3, 2, 3, torch.float64),
        (4, 1, 6, torch.float64),
        (2, 2, 2, torch.float32),
    ]
    for n_layers, n_heads, period, dtype in settings:
        weights = _causal_attention_weights(ex, n_layers, n_heads, 2 * period, dtype)  # (n_layers, n_heads, T, T)
        case = f"weights {_shape(weights)} = (n_layers, n_heads, T, T), period={period} {_dtype_name(dtype)}"
        got = _call(ex, induction_score_fn, weights, period, case=case, default_dtype=dtype)
        expected = induction_score(weights, period)  # (n_layers, n_heads)
        shape_hint = (
            f"one score per layer and head: ({n_layers}, {n_heads}); take the entries over the last two dimensions "
            "(torch.diagonal(..., dim1=-2, dim2=-1) or weights[..., queries, keys]) and average over the positions"
        )
        _compare(ex, got, expected, case=case, variants=_induction_variants(weights, period), shape_hint=shape_hint)
    return f"correct on {len(settings)} cases (several layers, heads and periods; float32 and float64)"


# ---------------------------------------------------------------------------------------------
# 14.3 the logit lens
# ---------------------------------------------------------------------------------------------


def _lens_error_hint(error: Exception) -> str:
    text = str(error)
    if any(word in text for word in ("shape", "size", "mat1", "d_model")):
        return (
            "apply final_norm first (it works on the d_model numbers of each position), then lm_head (d_model -> V), "
            "then the softmax: torch.softmax(lm_head(final_norm(residuals)), dim=-1)"
        )
    return "read the error message; call the modules you are given: final_norm(residuals), then lm_head(...)"


@_checker("14.3", "logit_lens")
def check_logit_lens(ex, logit_lens_fn):
    """14.3: ``logit_lens(residuals (..., d_model), final_norm, lm_head) -> (..., V)``: the next-token probabilities
    the model's own final norm and output layer read from the residual stream,
    ``softmax(lm_head(final_norm(residuals)))`` over the vocabulary."""
    settings = [  # residual shape, V, dtype
        ((4, 5, 8), 11, torch.float64),  # (n_layers + 1, T, d_model)
        ((3, 6, 12), 17, torch.float32),
        ((5, 2, 3, 6), 9, torch.float64),  # (n_layers + 1, B, T, d_model)
        ((2, 1, 10), 23, torch.float64),
    ]
    for shape, V, dtype in settings:
        d_model = shape[-1]
        residuals = ex.randn(*shape, dtype=dtype, scale=3.0) + 1.5  # (..., d_model): the norm matters
        final_norm = RMSNorm(d_model, eps=1e-5).to(dtype)
        final_norm.weight.copy_(1.0 + ex.randn(d_model, dtype=dtype, scale=0.3))
        lm_head = nn.Linear(d_model, V, bias=False).to(dtype)
        lm_head.weight.copy_(ex.randn(V, d_model, dtype=dtype, scale=0.7))
        case = f"residuals {_shape(residuals)}, d_model={d_model}, V={V} {_dtype_name(dtype)}"
        got = _call(
            ex, logit_lens_fn, residuals, final_norm.eval(), lm_head, case=case, default_dtype=dtype,
            error_hint=_lens_error_hint,
        )  # fmt: skip
        expected = logit_lens(residuals, final_norm, lm_head)  # (..., V)
        logits = lm_head(final_norm(residuals))  # (..., V)
        variants = [
            ("skipped the final norm: the model applies final_norm to the residual stream before lm_head, and so "
             "must the lens", torch.softmax(lm_head(residuals), dim=-1)),
            ("used layer norm: call the final_norm module you are given (the model's RMSNorm, with its weight)",
             torch.softmax(lm_head(F.layer_norm(residuals, (d_model,))), dim=-1)),
            ("normalised without the norm's weight: call the final_norm module itself, which scales by its weight",
             torch.softmax(lm_head(rms_norm(residuals, torch.ones_like(final_norm.weight), eps=1e-5)), dim=-1)),
            ("returned logits: turn them into probabilities with a softmax over the vocabulary (dim=-1)", logits),
            ("returned log-probabilities: use softmax, not log_softmax", torch.log_softmax(logits, dim=-1)),
            ("softmax over the wrong dimension: the probabilities of one position sum to 1 over the vocabulary, "
             "the last dimension (dim=-1)", torch.softmax(logits, dim=0)),
            ("softmax over the wrong dimension: the probabilities of one position sum to 1 over the vocabulary, "
             "the last dimension (dim=-1)", torch.softmax(logits, dim=-2)),
        ]  # fmt: skip
        _compare(
            ex, got, expected, case=case, variants=variants,
            shape_hint=f"same leading dimensions as residuals, and V={V} probabilities at the end: {_shape(expected)}",
        )  # fmt: skip
    return f"correct on {len(settings)} cases (3-D and 4-D residual streams; float32 and float64)"
