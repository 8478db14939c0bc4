"""Tests of course_lib.checks: each checker accepts several genuinely different correct implementations,
and rejects realistic wrong ones with a hint that names the mistake.

Run ``pytest tests/test_checks.py -v``: the ids read ``<exercise>-<checker>-<implementation>``, so the
log shows, per checker, which wrong implementations are rejected and which correct ones accepted.
"""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from course_lib import checks
from course_lib.attention import scaled_dot_product_attention
from course_lib.checks import CheckFailed
from course_lib.feedforward import FeedForward
from course_lib.generation import greedy_decode
from course_lib.multihead import MultiHeadAttention
from course_lib.normalization import LayerNorm

CHECKERS = {
    "01.1": checks.check_embedding_lookup,
    "01.2": checks.check_one_hot_embedding,
    "01.3": checks.check_cosine_similarity_matrix,
    "02.1": checks.check_sinusoidal_positional_encoding,
    "02.2": checks.check_pe_wavelength,
    "02.3": checks.check_add_positional_encoding,
    "03.1": checks.check_attention_scores,
    "03.2": checks.check_scaled_dot_product_attention,
    "03.3": checks.check_softmax_saturation,
    "04.1": checks.check_causal_mask,
    "04.2": checks.check_padding_mask,
    "04.3": checks.check_decoder_self_mask,
    "05.1": checks.check_split_heads,
    "05.2": checks.check_merge_heads,
    "05.3": checks.check_multi_head_attention,
    "05.4": checks.check_mha_parameter_count,
    "06.1": checks.check_layer_norm,
    "06.2": checks.check_feed_forward,
    "06.3": checks.check_residual_sublayer,
    "07.1": checks.check_encoder_layer,
    "07.2": checks.check_encoder_layer_parameter_count,
    "07.3": checks.check_pad_batch,
    "08.1": checks.check_decoder_layer,
    "08.2": checks.check_cross_attention_weights_shape,
    "08.3": checks.check_shift_right,
    "09.1": checks.check_next_token_probs,
    "09.2": checks.check_greedy_decode,
    "09.3": checks.check_sequence_log_prob,
}
CLASS_EXERCISES = {"05.3", "06.2", "07.1", "08.1"}

CORRECT: list[tuple[str, object]] = []  # (exercise id, implementation)
WRONG: list[tuple[str, object, str]] = []  # (exercise id, implementation, text the hint must contain)


def correct(exercise_id):
    def register(implementation):
        CORRECT.append((exercise_id, implementation))
        return implementation

    return register


def wrong(exercise_id, hint_text):
    def register(implementation):
        WRONG.append((exercise_id, implementation, hint_text))
        return implementation

    return register


# ---------------------------------------------------------------------------------------------
# 01.1 embedding_lookup
# ---------------------------------------------------------------------------------------------


@correct("01.1")
def lookup_by_indexing(token_ids, table):
    return table[token_ids]


@correct("01.1")
def lookup_with_f_embedding(token_ids, table):
    return F.embedding(token_ids, table)


@correct("01.1")
def lookup_in_a_loop(token_ids, table):
    B, T = token_ids.shape
    out = torch.empty(B, T, table.shape[1], dtype=table.dtype)
    for b in range(B):
        for t in range(T):
            out[b, t] = table[token_ids[b, t]]
    return out


@wrong("01.1", "off by one")
def lookup_off_by_one(token_ids, table):
    return table[token_ids - 1]


@wrong("01.1", "flattened to (B*T, d)")
def lookup_flattened(token_ids, table):
    return table.index_select(0, token_ids.flatten())


@wrong("01.1", "wrong output shape: expected (2, 5, 4), got (2, 4, 5)")
def lookup_feature_first(token_ids, table):
    return table[token_ids].transpose(1, 2)


@wrong("01.1", "scaled by sqrt(d)")
def lookup_scaled(token_ids, table):
    return table[token_ids] * math.sqrt(table.shape[1])


# ---------------------------------------------------------------------------------------------
# 01.2 one_hot_embedding
# ---------------------------------------------------------------------------------------------


@correct("01.2")
def one_hot_matmul(token_ids, table):
    return F.one_hot(token_ids, table.shape[0]).to(table.dtype) @ table


@correct("01.2")
def one_hot_einsum(token_ids, table):
    one_hot = F.one_hot(token_ids, num_classes=table.shape[0]).to(table.dtype)  # (B, T, V)
    return torch.einsum("btv,vd->btd", one_hot, table)


@correct("01.2")
def one_hot_broadcast_sum(token_ids, table):
    one_hot = F.one_hot(token_ids, table.shape[0]).to(table.dtype)  # (B, T, V)
    return (one_hot[..., None] * table).sum(dim=-2)  # (B, T, d)


@wrong("01.2", "you returned the one-hot matrix")
def one_hot_only(token_ids, table):
    return F.one_hot(token_ids, table.shape[0]).float()


@wrong("01.2", "num_classes=V")
def one_hot_without_num_classes(token_ids, table):
    return F.one_hot(token_ids).to(table.dtype) @ table


@wrong("01.2", ".float() gives float32 whatever the table is; convert with .to(table.dtype)")
def one_hot_always_float32(token_ids, table):
    return F.one_hot(token_ids, table.shape[0]).float() @ table


@wrong("01.2", "F.one_hot gives int64 (long) vectors")
def one_hot_left_as_int64(token_ids, table):
    return F.one_hot(token_ids, num_classes=table.shape[0]) @ table


@wrong("01.2", "the output is float32 but the table is float64")
def one_hot_converts_the_table(token_ids, table):
    return F.one_hot(token_ids, table.shape[0]).float() @ table.float()


@wrong("01.2", "scaled by sqrt(d)")
def one_hot_scaled(token_ids, table):
    return F.one_hot(token_ids, table.shape[0]).float() @ table * table.shape[1] ** 0.5


@wrong("01.2", "flattened to (B*T, d)")
def one_hot_flattened(token_ids, table):
    return F.one_hot(token_ids.flatten(), table.shape[0]).float() @ table


# ---------------------------------------------------------------------------------------------
# 01.3 cosine_similarity_matrix
# ---------------------------------------------------------------------------------------------


@correct("01.3")
def cosine_normalise_then_matmul(x):
    unit = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return unit @ unit.T


@correct("01.3")
def cosine_eps_added_to_the_norm(x):
    unit = x / (x.norm(dim=-1, keepdim=True) + 1e-8)
    return unit @ unit.T


@correct("01.3")
def cosine_nan_to_num(x):
    norms = x.norm(dim=-1, keepdim=True)
    return torch.nan_to_num((x @ x.T) / (norms * norms.T), nan=0.0)


@correct("01.3")
def cosine_with_f_cosine_similarity(x):
    return F.cosine_similarity(x.unsqueeze(1), x.unsqueeze(0), dim=-1)


@correct("01.3")
def cosine_in_a_loop(x):
    N = x.shape[0]
    out = torch.empty(N, N, dtype=x.dtype)
    for i in range(N):
        for j in range(N):
            out[i, j] = torch.dot(x[i], x[j]) / (max(x[i].norm(), 1e-8) * max(x[j].norm(), 1e-8))
    return out


@wrong("01.3", "0/0 = NaN")
def cosine_without_a_zero_row_guard(x):
    unit = x / x.norm(dim=-1, keepdim=True)
    return unit @ unit.T


@wrong("01.3", "0/0 = NaN")
def cosine_loop_without_a_guard(x):
    N = x.shape[0]
    out = torch.empty(N, N, dtype=x.dtype)
    for i in range(N):
        for j in range(N):
            out[i, j] = torch.dot(x[i], x[j]) / (x[i].norm() * x[j].norm())
    return out


@wrong("01.3", "a zero row must have similarity 0 with every row")
def cosine_nan_replaced_by_one(x):
    norms = x.norm(dim=-1, keepdim=True)
    return torch.nan_to_num((x @ x.T) / (norms * norms.T), nan=1.0)


@wrong("01.3", "itself included")
def cosine_diagonal_forced_to_one(x):
    return F.cosine_similarity(x.unsqueeze(1), x.unsqueeze(0), dim=-1).fill_diagonal_(1.0)


@wrong("01.3", "plain dot products")
def cosine_without_normalising(x):
    return x @ x.T


@wrong("01.3", "normalised over the wrong dimension")
def cosine_normalised_over_columns(x):
    unit = x / x.norm(dim=0, keepdim=True)
    return unit @ unit.T


@wrong("01.3", "cosine distance")
def cosine_distance(x):
    unit = F.normalize(x, dim=-1)
    return 1 - unit @ unit.T


@wrong("01.3", "x.T @ x (d, d)")
def cosine_of_columns(x):
    unit = F.normalize(x, dim=-1)
    return unit.T @ unit


# ---------------------------------------------------------------------------------------------
# 02.1 sinusoidal_positional_encoding
# ---------------------------------------------------------------------------------------------


def _angles(seq_len, d_model, base, position_offset=0, exponent_factor=1.0):
    positions = torch.arange(seq_len, dtype=torch.float64)[:, None] + position_offset  # (seq_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64) * exponent_factor  # (d_model/2,)
    return positions * torch.exp(-math.log(base) * two_i / d_model)  # (seq_len, d_model/2)


def _interleave(first, second):
    return torch.stack([first, second], dim=-1).flatten(-2)  # (seq_len, d_model)


@correct("02.1")
def pe_vectorised(seq_len, d_model, base=10000.0):
    angles = _angles(seq_len, d_model, base)
    return _interleave(torch.sin(angles), torch.cos(angles)).to(torch.get_default_dtype())


@correct("02.1")
def pe_in_a_loop(seq_len, d_model, base=10000.0):
    pe = torch.zeros(seq_len, d_model)
    for pos in range(seq_len):
        for i in range(d_model // 2):
            angle = pos / base ** (2 * i / d_model)
            pe[pos, 2 * i] = math.sin(angle)
            pe[pos, 2 * i + 1] = math.cos(angle)
    return pe


@correct("02.1")
def pe_float32_annotated_style(seq_len, d_model, base=10000.0):
    position = torch.arange(0, seq_len).unsqueeze(1).float()
    div_term = torch.exp(torch.arange(0, d_model, 2).float() * -(math.log(base) / d_model))
    pe = torch.zeros(seq_len, d_model, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


@wrong("02.1", "sin and cos swapped")
def pe_swapped(seq_len, d_model, base=10000.0):
    angles = _angles(seq_len, d_model, base)
    return _interleave(torch.cos(angles), torch.sin(angles))


@wrong("02.1", "not interleaved")
def pe_blocks(seq_len, d_model, base=10000.0):
    angles = _angles(seq_len, d_model, base)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


@wrong("02.1", "exponent is doubled")
def pe_doubled_exponent(seq_len, d_model, base=10000.0):
    angles = _angles(seq_len, d_model, base, exponent_factor=2.0)
    return _interleave(torch.sin(angles), torch.cos(angles))


@wrong("02.1", "positions start at 1")
def pe_from_one(seq_len, d_model, base=10000.0):
    angles = _angles(seq_len, d_model, base, position_offset=1)
    return _interleave(torch.sin(angles), torch.cos(angles))


@wrong("02.1", "ignores base")
def pe_fixed_base(seq_len, d_model, base=10000.0):
    angles = _angles(seq_len, d_model, 10000.0)
    return _interleave(torch.sin(angles), torch.cos(angles))


@wrong("02.1", "each dimension got its own frequency")
def pe_frequency_per_dimension(seq_len, d_model, base=10000.0):
    positions = torch.arange(seq_len, dtype=torch.float64)[:, None]
    dims = torch.arange(d_model, dtype=torch.float64)
    angles = positions / base ** (dims / d_model)
    return torch.where(dims.long() % 2 == 0, torch.sin(angles), torch.cos(angles))


# ---------------------------------------------------------------------------------------------
# 02.2 pe_wavelength
# ---------------------------------------------------------------------------------------------


@correct("02.2")
def wavelength_formula(i, d_model, base=10000.0):
    return 2 * math.pi * base ** (2 * i / d_model)


@correct("02.2")
def wavelength_from_frequency_tensor(i, d_model, base=10000.0):
    frequency = torch.exp(torch.tensor(-2.0 * i / d_model, dtype=torch.float64) * math.log(base))
    return math.tau / frequency


@wrong("02.2", "forgot the 2*pi")
def wavelength_without_two_pi(i, d_model, base=10000.0):
    return base ** (2 * i / d_model)


@wrong("02.2", "the exponent is i/d_model")
def wavelength_i_over_d(i, d_model, base=10000.0):
    return 2 * math.pi * base ** (i / d_model)


@wrong("02.2", "returned the frequency")
def wavelength_is_frequency(i, d_model, base=10000.0):
    return 1 / base ** (2 * i / d_model)


@wrong("02.2", "must be a number")
def wavelength_as_string(i, d_model, base=10000.0):
    return f"{2 * math.pi * base ** (2 * i / d_model):.3f}"


# ---------------------------------------------------------------------------------------------
# 02.3 add_positional_encoding
# ---------------------------------------------------------------------------------------------


@correct("02.3")
def add_pe_broadcast(x):
    _, T, d_model = x.shape
    return x + pe_vectorised(T, d_model).to(x.dtype)[None]


@correct("02.3")
def add_pe_position_by_position(x):
    out = x.clone()
    _, T, d_model = x.shape
    for pos in range(T):
        for i in range(d_model // 2):
            angle = pos / 10000.0 ** (2 * i / d_model)
            out[:, pos, 2 * i] += math.sin(angle)
            out[:, pos, 2 * i + 1] += math.cos(angle)
    return out


@wrong("02.3", "forgot x")
def add_pe_returns_pe(x):
    _, T, d_model = x.shape
    return pe_vectorised(T, d_model).to(x.dtype).expand_as(x)


@wrong("02.3", "T = x.shape[1]")
def add_pe_sequence_first(x):
    pe = pe_vectorised(max(x.shape[0], x.shape[1]), x.shape[2]).to(x.dtype)
    return x + pe[: x.shape[0]].unsqueeze(1)  # code written for (T, B, d_model) inputs


@wrong("02.3", "changed in place")
def add_pe_in_place(x):
    x += pe_vectorised(x.shape[1], x.shape[2]).to(x.dtype)
    return x


@wrong("02.3", "multiplied x by PE")
def add_pe_multiplied(x):
    return x * pe_vectorised(x.shape[1], x.shape[2]).to(x.dtype)


# ---------------------------------------------------------------------------------------------
# 03.1 attention_scores
# ---------------------------------------------------------------------------------------------


@correct("03.1")
def scores_matmul(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


@correct("03.1")
def scores_einsum(q, k):
    return torch.einsum("...id,...jd->...ij", q / q.shape[-1] ** 0.5, k)


@correct("03.1")
def scores_with_tensor_sqrt(q, k):
    return torch.matmul(q, k.mT) / torch.sqrt(torch.tensor(k.shape[-1]))


@wrong("03.1", "no scaling")
def scores_unscaled(q, k):
    return q @ k.transpose(-2, -1)


@wrong("03.1", "scaled by d_k instead of sqrt(d_k)")
def scores_by_d(q, k):
    return q @ k.transpose(-2, -1) / q.shape[-1]


@wrong("03.1", "you applied softmax")
def scores_softmaxed(q, k):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)


@wrong("03.1", "k.transpose(-2, -1)")
def scores_with_k_dot_T(q, k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch warns that .T on a batched tensor is deprecated
        return q @ k.T / math.sqrt(q.shape[-1])


@wrong("03.1", "square root of a sequence length")
def scores_scaled_by_number_of_keys(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(k.shape[-2])


@wrong("03.1", "square root of a sequence length")
def scores_scaled_by_number_of_queries(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-2])


@wrong("03.1", "swapped q and k")
def scores_swapped(q, k):
    return k @ q.transpose(-2, -1) / math.sqrt(q.shape[-1])


# ---------------------------------------------------------------------------------------------
# 03.2 scaled_dot_product_attention
# ---------------------------------------------------------------------------------------------


def _attention(q, k, v, mask=None, *, dim=-1, divisor=None, fill=float("-inf"), invert=False, zero_rows=True):
    """A configurable attention used to write the wrong implementations below."""
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if divisor is None else divisor(q, v))
    if mask is not None:
        allowed = ~mask if invert else mask
        scores = scores.masked_fill(~allowed, fill)
    weights = torch.softmax(scores, dim=dim)
    if mask is not None and zero_rows:
        weights = weights.masked_fill(~allowed, 0.0)
    return weights @ v, weights


@correct("03.2")
def attention_masked_fill(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return weights @ v, weights


@correct("03.2")
def attention_einsum_additive_mask(q, k, v, mask=None):
    scores = torch.einsum("...qd,...kd->...qk", q, k) / q.shape[-1] ** 0.5
    if mask is not None:
        additive = torch.zeros(mask.shape, dtype=q.dtype).masked_fill(~mask, float("-inf"))
        scores = scores + additive
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)  # fully masked rows: 0/0 -> 0
    return torch.einsum("...qk,...kv->...qv", weights, v), weights


@correct("03.2")
def attention_where_and_renormalise(q, k, v, mask=None):
    scores = q @ k.mT / math.sqrt(k.shape[-1])
    if mask is None:
        mask = torch.ones((), dtype=torch.bool)
    scores = torch.where(mask, scores, torch.full_like(scores, -1e30))
    exp = torch.exp(scores - scores.amax(dim=-1, keepdim=True)) * mask  # blocked keys get exactly 0
    total = exp.sum(dim=-1, keepdim=True)
    weights = torch.where(total > 0, exp / total.clamp_min(1e-300), torch.zeros_like(exp))
    return weights @ v, weights


@correct("03.2")
def attention_mask_part_not_written_yet(q, k, v, mask=None):
    """The mask part is optional until lesson 04: its stub still raises."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        raise NotImplementedError("Exercise 03.2: not implemented yet (write your code here)")
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def test_attention_without_the_optional_mask_part_says_so(capsys):
    checks.check_scaled_dot_product_attention(attention_mask_part_not_written_yet)
    printed = capsys.readouterr().out
    assert printed.startswith("✓ 03.2 scaled_dot_product_attention: correct on the 2 cases without a mask")
    assert "optional until lesson 04, is still to do" in printed


@wrong("03.2", "softmax over the wrong dimension")
def attention_softmax_over_queries(q, k, v, mask=None):
    return _attention(q, k, v, mask, dim=-2)


@wrong("03.2", "softmax over the wrong dimension")
def attention_wrong_dimension_and_mask_stub(q, k, v, mask=None):
    if mask is not None:
        raise NotImplementedError("Exercise 03.2: not implemented yet (write your code here)")
    return _attention(q, k, v, None, dim=-2)


@wrong("03.2", "square root of a sequence length")
def attention_scaled_by_number_of_keys(q, k, v, mask=None):
    return _attention(q, k, v, mask, divisor=lambda q, v: math.sqrt(v.shape[-2]))


@wrong("03.2", "no scaling")
def attention_unscaled(q, k, v, mask=None):
    return _attention(q, k, v, mask, divisor=lambda q, v: 1.0)


@wrong("03.2", "scaled by d_k instead of sqrt(d_k)")
def attention_scaled_by_d(q, k, v, mask=None):
    return _attention(q, k, v, mask, divisor=lambda q, v: q.shape[-1])


@wrong("03.2", "value size d_v instead of the key size d_k")
def attention_scaled_by_value_size(q, k, v, mask=None):
    return _attention(q, k, v, mask, divisor=lambda q, v: math.sqrt(v.shape[-1]))


@wrong("03.2", "inverted mask")
def attention_inverted_mask(q, k, v, mask=None):
    return _attention(q, k, v, mask, invert=True)


@wrong("03.2", "mask applied as 0 instead of -inf")
def attention_scores_times_mask(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores * mask
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


@wrong("03.2", "NaN on a fully masked row")
def attention_nan_rows(q, k, v, mask=None):
    return _attention(q, k, v, mask, zero_rows=False)


@wrong("03.2", "must give zero weights, not uniform ones")
def attention_minus_1e9(q, k, v, mask=None):
    return _attention(q, k, v, mask, fill=-1e9, zero_rows=False)


@wrong("03.2", "mask was applied after the softmax")
def attention_mask_after_softmax(q, k, v, mask=None):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ v, weights


@wrong("03.2", "returned (weights, output)")
def attention_pair_swapped(q, k, v, mask=None):
    output, weights = attention_masked_fill(q, k, v, mask)
    return weights, output


@wrong("03.2", "return a pair: (output, weights)")
def attention_output_only(q, k, v, mask=None):
    return attention_masked_fill(q, k, v, mask)[0]


# ---------------------------------------------------------------------------------------------
# 03.3 softmax_saturation
# ---------------------------------------------------------------------------------------------


def _saturation_draws(d, keys_first=False):
    generator = torch.Generator().manual_seed(0)
    if keys_first:
        k = torch.randn(10, d, generator=generator, dtype=torch.float64)
        q = torch.randn(d, generator=generator, dtype=torch.float64)
    else:
        q = torch.randn(d, generator=generator, dtype=torch.float64)
        k = torch.randn(10, d, generator=generator, dtype=torch.float64)
    return q, k


@correct("03.3")
def saturation_vectorised(d):
    q, k = _saturation_draws(d)
    scores = k @ q
    return torch.softmax(scores, dim=-1).max().item(), torch.softmax(scores / math.sqrt(d), dim=-1).max().item()


@correct("03.3")
def saturation_with_python_floats(d):
    q, k = _saturation_draws(d)
    scores = [float(torch.dot(key, q)) for key in k]

    def largest_weight(values):
        top = max(values)
        exps = [math.exp(v - top) for v in values]
        return max(exps) / sum(exps)

    return largest_weight(scores), largest_weight([s / math.sqrt(d) for s in scores])


@wrong("03.3", "return (unscaled, scaled) in that order")
def saturation_swapped(d):
    unscaled, scaled = saturation_vectorised(d)
    return scaled, unscaled


@wrong("03.3", "scaled by d instead of sqrt(d)")
def saturation_scaled_by_d(d):
    q, k = _saturation_draws(d)
    scores = k @ q
    return torch.softmax(scores, dim=-1).max().item(), torch.softmax(scores / d, dim=-1).max().item()


@wrong("03.3", "draw q first and then k")
def saturation_keys_first(d):
    q, k = _saturation_draws(d, keys_first=True)
    scores = k @ q
    return torch.softmax(scores, dim=-1).max().item(), torch.softmax(scores / math.sqrt(d), dim=-1).max().item()


@wrong("03.3", "not a list")
def saturation_returns_a_list(d):
    return list(saturation_vectorised(d))


@wrong("03.3", "convert it with .item()")
def saturation_returns_one_element_tensors(d):
    q, k = _saturation_draws(d)
    scores = k @ q
    return torch.softmax(scores, dim=-1).max(), torch.softmax(scores / math.sqrt(d), dim=-1).max()


@wrong("03.3", "must be one number")
def saturation_returns_weights(d):
    q, k = _saturation_draws(d)
    scores = k @ q
    return torch.softmax(scores, dim=-1), torch.softmax(scores / math.sqrt(d), dim=-1)


# ---------------------------------------------------------------------------------------------
# 04.1 causal_mask
# ---------------------------------------------------------------------------------------------


@correct("04.1")
def causal_tril(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool))


@correct("04.1")
def causal_by_comparison(T):
    positions = torch.arange(T)
    return positions[None, :] <= positions[:, None]


@correct("04.1")
def causal_not_triu(T):
    return ~torch.triu(torch.ones(T, T), diagonal=1).bool()


@wrong("04.1", "transposed")
def causal_upper(T):
    return torch.triu(torch.ones(T, T, dtype=torch.bool))


@wrong("04.1", "inverted mask")
def causal_inverted(T):
    return torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)


@wrong("04.1", "the diagonal is missing")
def causal_without_diagonal(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1)


@wrong("04.1", "wrong dtype: got a float32 mask")
def causal_float(T):
    return torch.tril(torch.ones(T, T, dtype=torch.float32))


@wrong("04.1", "additive float mask")
def causal_additive(T):
    return torch.zeros(T, T).masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))


# ---------------------------------------------------------------------------------------------
# 04.2 padding_mask
# ---------------------------------------------------------------------------------------------


@correct("04.2")
def padding_indexing(token_ids, pad_id):
    return (token_ids != pad_id)[:, None, None, :]


@correct("04.2")
def padding_unsqueeze(token_ids, pad_id):
    return token_ids.ne(pad_id).unsqueeze(1).unsqueeze(2)


@correct("04.2")
def padding_loop(token_ids, pad_id):
    B, T = token_ids.shape
    mask = torch.zeros(B, 1, 1, T, dtype=torch.bool)
    for b in range(B):
        for t in range(T):
            mask[b, 0, 0, t] = bool(token_ids[b, t] != pad_id)
    return mask


@wrong("04.2", "inverted mask")
def padding_inverted(token_ids, pad_id):
    return (token_ids == pad_id)[:, None, None, :]


@wrong("04.2", "wrong output shape: expected (2, 1, 1, 5), got (2, 5)")
def padding_without_broadcast_dims(token_ids, pad_id):
    return token_ids != pad_id


@wrong("04.2", "ignores pad_id")
def padding_always_zero(token_ids, pad_id):
    return (token_ids != 0)[:, None, None, :]


@wrong("04.2", "wrong dtype")
def padding_float(token_ids, pad_id):
    return (token_ids != pad_id).float()[:, None, None, :]


@wrong("04.2", "T goes last")
def padding_on_queries(token_ids, pad_id):
    return (token_ids != pad_id)[:, None, :, None]


# ---------------------------------------------------------------------------------------------
# 04.3 decoder_self_mask
# ---------------------------------------------------------------------------------------------


@correct("04.3")
def decoder_mask_and(tgt_ids, pad_id):
    T = tgt_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return causal & (tgt_ids != pad_id)[:, None, None, :]


@correct("04.3")
def decoder_mask_logical_and_expand(tgt_ids, pad_id):
    B, T = tgt_ids.shape
    keys = tgt_ids.ne(pad_id).view(B, 1, 1, T).expand(B, 1, T, T)
    causal = torch.arange(T)[None, :] <= torch.arange(T)[:, None]
    return torch.logical_and(keys, causal)


@correct("04.3")
def decoder_mask_loop(tgt_ids, pad_id):
    B, T = tgt_ids.shape
    mask = torch.zeros(B, 1, T, T, dtype=torch.bool)
    for b in range(B):
        for i in range(T):
            for j in range(i + 1):
                mask[b, 0, i, j] = bool(tgt_ids[b, j] != pad_id)
    return mask


@wrong("04.3", "forgot the padding part")
def decoder_mask_causal_only(tgt_ids, pad_id):
    B, T = tgt_ids.shape
    return torch.ones(T, T, dtype=torch.bool).tril().expand(B, 1, T, T)


@wrong("04.3", "combined with OR")
def decoder_mask_or(tgt_ids, pad_id):
    T = tgt_ids.shape[1]
    return torch.ones(T, T, dtype=torch.bool).tril() | (tgt_ids != pad_id)[:, None, None, :]


@wrong("04.3", "applied to the query rows instead of the key columns")
def decoder_mask_padding_on_rows(tgt_ids, pad_id):
    T = tgt_ids.shape[1]
    return torch.ones(T, T, dtype=torch.bool).tril() & (tgt_ids != pad_id)[:, None, :, None]


@wrong("04.3", "also blocked the padded query rows")
def decoder_mask_rows_and_columns(tgt_ids, pad_id):
    T = tgt_ids.shape[1]
    real = tgt_ids != pad_id
    return torch.ones(T, T, dtype=torch.bool).tril() & real[:, None, None, :] & real[:, None, :, None]


@wrong("04.3", "wrong output shape: expected (2, 1, 5, 5), got (2, 5, 5)")
def decoder_mask_without_head_dim(tgt_ids, pad_id):
    T = tgt_ids.shape[1]
    return torch.ones(T, T, dtype=torch.bool).tril() & (tgt_ids != pad_id)[:, None, :]


# ---------------------------------------------------------------------------------------------
# 05.1 split_heads and 05.2 merge_heads
# ---------------------------------------------------------------------------------------------


@correct("05.1")
def split_view_transpose(x, n_heads):
    B, T, d_model = x.shape
    return x.view(B, T, n_heads, d_model // n_heads).transpose(1, 2)


@correct("05.1")
def split_stack_slices(x, n_heads):
    d_head = x.shape[-1] // n_heads
    return torch.stack([x[..., h * d_head : (h + 1) * d_head] for h in range(n_heads)], dim=1)


@correct("05.1")
def split_unflatten_movedim(x, n_heads):
    return x.unflatten(-1, (n_heads, -1)).movedim(2, 1).contiguous()


@wrong("05.1", "without the transpose")
def split_reshape_only(x, n_heads):
    B, T, d_model = x.shape
    return x.reshape(B, n_heads, T, d_model // n_heads)


@wrong("05.1", "split as (d_head, n_heads)")
def split_heads_last(x, n_heads):
    B, T, d_model = x.shape
    return x.view(B, T, d_model // n_heads, n_heads).permute(0, 3, 1, 2)


@wrong("05.1", "forgot the transpose")
def split_no_transpose(x, n_heads):
    B, T, d_model = x.shape
    return x.view(B, T, n_heads, d_model // n_heads)


@correct("05.2")
def merge_transpose_reshape(x):
    B, n_heads, T, d_head = x.shape
    return x.transpose(1, 2).reshape(B, T, n_heads * d_head)


@correct("05.2")
def merge_cat_heads(x):
    return torch.cat([x[:, h] for h in range(x.shape[1])], dim=-1)


@correct("05.2")
def merge_permute_contiguous_view(x):
    B, n_heads, T, d_head = x.shape
    return x.permute(0, 2, 1, 3).contiguous().view(B, T, -1)


@wrong("05.2", "merged without the transpose")
def merge_reshape_only(x):
    B, n_heads, T, d_head = x.shape
    return x.reshape(B, T, n_heads * d_head)


@wrong("05.2", "interleaved")
def merge_interleaved(x):
    B, n_heads, T, d_head = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, T, -1)


@wrong("05.2", ".contiguous().view")
def merge_view_after_transpose(x):
    B, n_heads, T, d_head = x.shape
    return x.transpose(1, 2).view(B, T, n_heads * d_head)


@wrong("05.2", "wrong output shape")
def merge_keeps_heads(x):
    return x.transpose(1, 2)


# ---------------------------------------------------------------------------------------------
# 05.3 MultiHeadAttention
# ---------------------------------------------------------------------------------------------


class MHAViewTranspose(nn.Module):
    """Correct: projections, view/transpose into heads, the course's attention, merge, output projection;
    nn.Dropout on the weights in training mode."""

    def __init__(self, d_model, n_heads, dropout=0.0, bias=True):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.attention_weights = None

    def split(self, x):
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)

    def merge(self, x):
        B, _, T, _ = x.shape
        return x.transpose(1, 2).reshape(B, T, -1)

    def attend(self, q, k, v, mask):
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.dropout(weights) @ v, weights

    def forward(self, query, key, value, mask=None):
        q, k, v = self.split(self.w_q(query)), self.split(self.w_k(key)), self.split(self.w_v(value))
        heads, weights = self.attend(q, k, v, mask)
        self.attention_weights = weights
        return self.w_o(self.merge(heads))


class MHAHeadLoop(nn.Module):
    """Correct: one head at a time with einsum and an additive mask, weights stacked afterwards; F.dropout
    per head (so a different random draw from nn.Dropout on all the weights at once)."""

    def __init__(self, d_model, n_heads, dropout=0.0, bias=True):
        super().__init__()
        self.n_heads, self.p = n_heads, dropout
        self.w_q, self.w_k = nn.Linear(d_model, d_model, bias=bias), nn.Linear(d_model, d_model, bias=bias)
        self.w_v, self.w_o = nn.Linear(d_model, d_model, bias=bias), nn.Linear(d_model, d_model, bias=bias)
        self.attention_weights = None

    def forward(self, query, key, value, mask=None):
        d_head = query.shape[-1] // self.n_heads
        q, k, v = self.w_q(query), self.w_k(key), self.w_v(value)
        outputs, all_weights = [], []
        for h in range(self.n_heads):
            part = slice(h * d_head, (h + 1) * d_head)
            scores = torch.einsum("bqd,bkd->bqk", q[..., part], k[..., part]) / math.sqrt(d_head)
            if mask is not None:
                head_mask = mask.expand(query.shape[0], self.n_heads, scores.shape[1], scores.shape[2])[:, h]
                scores = scores + torch.zeros_like(scores).masked_fill(~head_mask, float("-inf"))
            weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
            outputs.append(F.dropout(weights, self.p, self.training) @ v[..., part])
            all_weights.append(weights)
        self.attention_weights = torch.stack(all_weights, dim=1)
        return self.w_o(torch.cat(outputs, dim=-1))


@wrong("05.3", "missing attributes: w_o")
class MHAWithOutProj(MHAViewTranspose):
    def __init__(self, d_model, n_heads, dropout=0.0, bias=True):
        super().__init__(d_model, n_heads, dropout, bias)
        self.out_proj = self.w_o
        del self.w_o

    def forward(self, query, key, value, mask=None):
        return self.out_proj(super().forward(query, key, value, mask))


@wrong("05.3", "forgot the output projection")
class MHANoOutputProjection(MHAViewTranspose):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.split(self.w_q(query)), self.split(self.w_k(key)), self.split(self.w_v(value))
        heads, self.attention_weights = scaled_dot_product_attention(q, k, v, mask)
        return self.merge(heads)


@wrong("05.3", "without the transpose")
class MHANoTranspose(MHAViewTranspose):
    def split(self, x):
        B, T, _ = x.shape
        return x.reshape(B, self.n_heads, T, self.d_head)

    def merge(self, x):
        B, _, T, _ = x.shape
        return x.reshape(B, T, -1)


@wrong("05.3", "scaled by sqrt(d_model) instead of sqrt(d_head)")
class MHAScaledByDModel(MHAViewTranspose):
    def attend(self, q, k, v, mask):
        return scaled_dot_product_attention(q / math.sqrt(self.n_heads), k, v, mask)


@wrong("05.3", "scaled twice")
class MHAScaledTwice(MHAViewTranspose):
    def attend(self, q, k, v, mask):
        return scaled_dot_product_attention(q / math.sqrt(self.d_head), k, v, mask)


@wrong("05.3", "inverted mask")
class MHAInvertedMask(MHAViewTranspose):
    def attend(self, q, k, v, mask):
        return scaled_dot_product_attention(q, k, v, None if mask is None else ~mask)


@wrong("05.3", "inverted mask")
class MHAOwnAttentionBlocksWhereTrue(MHAViewTranspose):
    def attend(self, q, k, v, mask):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return self.dropout(weights) @ v, weights


@wrong("05.3", "no dropout on the attention weights")
class MHAWithoutDropout(MHAViewTranspose):
    def attend(self, q, k, v, mask):
        return scaled_dot_product_attention(q, k, v, mask)


@wrong("05.3", "dropout was applied to the layer's output")
class MHADropoutOnTheOutput(MHAWithoutDropout):
    def forward(self, query, key, value, mask=None):
        return self.dropout(super().forward(query, key, value, mask))


@wrong("05.3", "dropout was applied to the merged heads")
class MHADropoutOnTheMergedHeads(MHAWithoutDropout):
    def merge(self, x):
        return self.dropout(super().merge(x))


@wrong("05.3", "dropout must do nothing in eval mode")
class MHADropoutAlsoInEval(MHAViewTranspose):
    def attend(self, q, k, v, mask):
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return F.dropout(weights, self.dropout.p, training=True) @ v, weights


@wrong("05.3", "not rescaled")
class MHADropoutWithoutRescaling(MHAViewTranspose):
    def attend(self, q, k, v, mask):
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        if self.training:
            keep = torch.rand_like(weights) >= self.dropout.p
            return (weights * keep) @ v, weights
        return heads, weights


@wrong("05.3", "computed from the query")
class MHASelfAttentionOnly(MHAViewTranspose):
    def forward(self, query, key, value, mask=None):
        return super().forward(query, query, query, mask)


@wrong("05.3", ".attention_weights not stored")
class MHAForgetsWeights(MHAViewTranspose):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.split(self.w_q(query)), self.split(self.w_k(key)), self.split(self.w_v(value))
        heads, _ = scaled_dot_product_attention(q, k, v, mask)
        return self.w_o(self.merge(heads))


@wrong("05.3", "pass bias=bias to every nn.Linear")
class MHAIgnoresBias(MHAViewTranspose):
    def __init__(self, d_model, n_heads, dropout=0.0, bias=True):
        super().__init__(d_model, n_heads, dropout, bias=True)


@wrong("05.3", "keep one map per head")
class MHAAveragedWeights(MHAViewTranspose):
    def forward(self, query, key, value, mask=None):
        output = super().forward(query, key, value, mask)
        self.attention_weights = self.attention_weights.mean(dim=1)
        return output


@wrong("05.3", "MultiHeadAttention(d_model, n_heads, dropout=0.0, bias=True)")
class MHAWithoutBiasArgument(MHAViewTranspose):
    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)


@wrong("05.3", "pass the class itself")
def mha_instance_instead_of_class():
    return MHAViewTranspose(8, 2)


CORRECT += [("05.3", MHAViewTranspose), ("05.3", MHAHeadLoop)]


# ---------------------------------------------------------------------------------------------
# 05.4 mha_parameter_count
# ---------------------------------------------------------------------------------------------


@correct("05.4")
def mha_count_formula(d_model, bias=True):
    return 4 * d_model * d_model + (4 * d_model if bias else 0)


@correct("05.4")
def mha_count_by_building_layers(d_model, bias=True):
    layers = [nn.Linear(d_model, d_model, bias=bias) for _ in range(4)]
    return sum(p.numel() for layer in layers for p in layer.parameters())


@wrong("05.4", "forgot the biases")
def mha_count_without_biases(d_model, bias=True):
    return 4 * d_model * d_model


@wrong("05.4", "forgot the output projection w_o")
def mha_count_three_layers(d_model, bias=True):
    return 3 * d_model * d_model + (3 * d_model if bias else 0)


@wrong("05.4", "counted biases although bias=False")
def mha_count_ignores_bias_flag(d_model, bias=True):
    return 4 * d_model * d_model + 4 * d_model


@wrong("05.4", "one bias per layer")
def mha_count_scalar_biases(d_model, bias=True):
    return 4 * d_model * d_model + (4 if bias else 0)


@wrong("05.4", "return an int, not a float")
def mha_count_as_a_float(d_model, bias=True):
    return 4 * (d_model * d_model + (d_model if bias else 0)) / 1


@wrong("05.4", "return a Python int")
def mha_count_as_a_tensor(d_model, bias=True):
    return sum(p.numel() for p in MultiHeadAttention(d_model, 1, bias=bias).parameters()) * torch.ones(())


# ---------------------------------------------------------------------------------------------
# 06.1 layer_norm
# ---------------------------------------------------------------------------------------------


@correct("06.1")
def layer_norm_by_hand(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias


@correct("06.1")
def layer_norm_var_mean_rsqrt(x, weight, bias, eps=1e-5):
    variance, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
    return torch.addcmul(bias, (x - mean) * torch.rsqrt(variance + eps), weight)


@correct("06.1")
def layer_norm_functional(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


@wrong("06.1", "unbiased variance")
def layer_norm_unbiased(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dim=-1, keepdim=True) + eps) * weight + bias


@wrong("06.1", "eps outside the square root")
def layer_norm_eps_outside(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    std = x.var(dim=-1, keepdim=True, unbiased=False).sqrt()
    return (x - mean) / (std + eps) * weight + bias


@wrong("06.1", "unbiased variance and eps outside the square root")
def layer_norm_annotated_transformer(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    std = x.std(-1, keepdim=True)
    return weight * (x - mean) / (std + eps) + bias


@wrong("06.1", "normalised over the wrong dimension")
def layer_norm_first_dimension(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=0, keepdim=True)
    variance = x.var(dim=0, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias


@wrong("06.1", "forgot to scale by weight and shift by bias")
def layer_norm_without_affine(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False) + eps)


@wrong("06.1", "a global mean")
def layer_norm_global_mean(x, weight, bias, eps=1e-5):
    mean = x.mean()
    variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias


@wrong("06.1", "a global mean")
def layer_norm_global_statistics(x, weight, bias, eps=1e-5):
    return (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps) * weight + bias


@wrong("06.1", "ignores eps")
def layer_norm_fixed_eps(x, weight, bias, eps=1e-5):
    return layer_norm_by_hand(x, weight, bias)


# ---------------------------------------------------------------------------------------------
# 06.2 FeedForward
# ---------------------------------------------------------------------------------------------


class FeedForwardFunctional(nn.Module):
    """Correct: the activation function chosen by name, nn.Dropout on the hidden activations."""

    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation = F.relu if activation == "relu" else F.gelu
        self.last_hidden = None

    def forward(self, x):
        hidden = self.activation(self.linear1(x))
        self.last_hidden = hidden
        return self.linear2(self.dropout(hidden))


class FeedForwardWithModules(nn.Module):
    """Correct: activation as a module chosen by name, explicit matmuls, F.dropout with training=self.training."""

    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.activation = {"relu": nn.ReLU(), "gelu": nn.GELU()}[activation]
        self.linear2 = nn.Linear(d_ff, d_model)
        self.p = dropout
        self.last_hidden = None

    def forward(self, x):
        hidden = self.activation(x @ self.linear1.weight.T + self.linear1.bias)
        self.last_hidden = hidden.detach()
        hidden = F.dropout(hidden, self.p, training=self.training)
        return torch.addmm(self.linear2.bias, hidden.flatten(0, 1), self.linear2.weight.T).view(x.shape)


class FeedForwardOwnDropoutMask(FeedForwardFunctional):
    """Correct: dropout written by hand (another random draw than nn.Dropout's, in the right place)."""

    def forward(self, x):
        hidden = self.activation(self.linear1(x))
        self.last_hidden = hidden
        if self.training and self.dropout.p > 0:
            keep = torch.rand(hidden.shape, dtype=hidden.dtype).flip(-1) >= self.dropout.p
            hidden = hidden * keep / (1 - self.dropout.p)
        return self.linear2(hidden)


CORRECT += [("06.2", FeedForwardFunctional), ("06.2", FeedForwardWithModules), ("06.2", FeedForwardOwnDropoutMask)]


@wrong("06.2", "no activation between the layers")
class FeedForwardNoActivation(FeedForwardFunctional):
    def forward(self, x):
        return self.linear2(self.linear1(x))


@wrong("06.2", "applied ReLU to the output too")
class FeedForwardReluTwice(FeedForwardFunctional):
    def forward(self, x):
        return F.relu(self.linear2(F.relu(self.linear1(x))))


@wrong("06.2", "added the residual inside FeedForward")
class FeedForwardWithResidual(FeedForwardFunctional):
    def forward(self, x):
        return x + super().forward(x)


@wrong("06.2", "missing attributes: linear1, linear2")
class FeedForwardSequential(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))

    def forward(self, x):
        return self.net(x)


@wrong("06.2", "used GELU")
class FeedForwardGelu(FeedForwardFunctional):
    def forward(self, x):
        return self.linear2(F.gelu(self.linear1(x)))


@wrong("06.2", "the activation argument is ignored")
class FeedForwardAlwaysRelu(FeedForwardFunctional):
    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__(d_model, d_ff, "relu", dropout)


@wrong("06.2", "the tanh approximation of GELU")
class FeedForwardTanhGelu(FeedForwardFunctional):
    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0):
        super().__init__(d_model, d_ff, activation, dropout)
        if activation == "gelu":
            self.activation = nn.GELU(approximate="tanh")


@wrong("06.2", ".last_hidden not kept")
class FeedForwardWithoutLastHidden(FeedForwardFunctional):
    def forward(self, x):
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


@wrong("06.2", "last_hidden is taken before the activation")
class FeedForwardLastHiddenBeforeActivation(FeedForwardFunctional):
    def forward(self, x):
        pre_activation = self.linear1(x)
        self.last_hidden = pre_activation
        return self.linear2(self.dropout(self.activation(pre_activation)))


@wrong("06.2", "no dropout: create self.dropout")
class FeedForwardWithoutDropout(FeedForwardFunctional):
    def forward(self, x):
        self.last_hidden = self.activation(self.linear1(x))
        return self.linear2(self.last_hidden)


@wrong("06.2", "dropout on the input x")
class FeedForwardDropoutOnTheInput(FeedForwardFunctional):
    def forward(self, x):
        self.last_hidden = self.activation(self.linear1(x))
        return self.linear2(self.activation(self.linear1(self.dropout(x))))


@wrong("06.2", "dropout before the activation")
class FeedForwardDropoutBeforeTheActivation(FeedForwardFunctional):
    def forward(self, x):
        self.last_hidden = self.activation(self.linear1(x))
        return self.linear2(self.activation(self.dropout(self.linear1(x))))


@wrong("06.2", "dropout was applied to the output")
class FeedForwardDropoutOnTheOutput(FeedForwardFunctional):
    def forward(self, x):
        self.last_hidden = self.activation(self.linear1(x))
        return self.dropout(self.linear2(self.last_hidden))


@wrong("06.2", "dropout must do nothing in eval mode")
class FeedForwardDropoutAlsoInEval(FeedForwardFunctional):
    def forward(self, x):
        self.last_hidden = self.activation(self.linear1(x))
        return self.linear2(F.dropout(self.last_hidden, self.dropout.p, training=True))


# ---------------------------------------------------------------------------------------------
# 06.3 residual_sublayer
# ---------------------------------------------------------------------------------------------


@correct("06.3")
def residual_if_else(x, sublayer, norm, norm_first):
    if norm_first:
        return x + sublayer(norm(x))
    return norm(x + sublayer(x))


@correct("06.3")
def residual_in_steps(x, sublayer, norm, norm_first):
    sublayer_input = norm(x) if norm_first else x
    summed = x + sublayer(sublayer_input)
    return summed if norm_first else norm(summed)


@wrong("06.3", "post-norm and pre-norm confused")
def residual_swapped(x, sublayer, norm, norm_first):
    return residual_if_else(x, sublayer, norm, not norm_first)


@wrong("06.3", "forgot the residual")
def residual_missing(x, sublayer, norm, norm_first):
    return sublayer(norm(x)) if norm_first else norm(sublayer(x))


@wrong("06.3", "add the un-normalised x")
def residual_adds_normalised(x, sublayer, norm, norm_first):
    if norm_first:
        h = norm(x)
        return h + sublayer(h)
    return norm(x + sublayer(x))


@wrong("06.3", "on the sublayer's branch")
def residual_norm_on_the_branch(x, sublayer, norm, norm_first):
    if norm_first:
        return x + sublayer(norm(x))
    return x + norm(sublayer(x))


@wrong("06.3", "normalised twice")
def residual_norm_twice(x, sublayer, norm, norm_first):
    if norm_first:
        return norm(x + sublayer(norm(x)))
    return norm(x + sublayer(x))


# ---------------------------------------------------------------------------------------------
# 07.1 EncoderLayer
# ---------------------------------------------------------------------------------------------


class EncoderLayerComposed(nn.Module):
    """Correct: the course's attention and MLP, PyTorch's nn.LayerNorm, an explicit if/else."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.ff = FeedForward(d_model, d_ff)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.self_attn(h, h, h, mask)
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + self.self_attn(x, x, x, mask))
        return self.norm2(x + self.ff(x))


class EncoderLayerWithHelpers(nn.Module):
    """Correct: the learner's own attention and MLP classes and a residual helper."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MHAHeadLoop(d_model, n_heads)
        self.ff = FeedForwardFunctional(d_model, d_ff)
        self.norm1, self.norm2 = LayerNorm(d_model), LayerNorm(d_model)

    def forward(self, x, mask=None):
        x = residual_in_steps(x, lambda h: self.self_attn(h, h, h, mask), self.norm1, self.norm_first)
        return residual_in_steps(x, self.ff, self.norm2, self.norm_first)


CORRECT += [("07.1", EncoderLayerComposed), ("07.1", EncoderLayerWithHelpers)]


@wrong("07.1", "post-norm and pre-norm confused")
class EncoderLayerAlwaysPreNorm(EncoderLayerComposed):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False):
        super().__init__(d_model, n_heads, d_ff, dropout, activation, norm_first=True)


@wrong("07.1", "forgot the residual connections")
class EncoderLayerNoResidual(EncoderLayerComposed):
    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            return self.ff(self.norm2(self.self_attn(h, h, h, mask)))
        x = self.norm1(self.self_attn(x, x, x, mask))
        return self.norm2(self.ff(x))


@wrong("07.1", "the mask was ignored")
class EncoderLayerIgnoresMask(EncoderLayerComposed):
    def forward(self, x, mask=None):
        return super().forward(x, None)


@wrong("07.1", "norm1 and norm2 swapped")
class EncoderLayerSwappedNorms(EncoderLayerComposed):
    def forward(self, x, mask=None):
        self.norm1, self.norm2 = self.norm2, self.norm1
        try:
            return super().forward(x, mask)
        finally:
            self.norm1, self.norm2 = self.norm2, self.norm1


@wrong("07.1", "on the sublayer's branch")
class EncoderLayerNormOnTheBranch(EncoderLayerComposed):
    def forward(self, x, mask=None):
        if self.norm_first:
            return super().forward(x, mask)
        x = x + self.norm1(self.self_attn(x, x, x, mask))
        return x + self.norm2(self.ff(x))


@wrong("07.1", "missing attributes: self_attn")
class EncoderLayerOtherNames(EncoderLayerComposed):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False):
        super().__init__(d_model, n_heads, d_ff, dropout, activation, norm_first)
        self.attention = self.self_attn
        del self.self_attn

    def forward(self, x, mask=None):
        return self.norm2(x + self.ff(self.norm1(x + self.attention(x, x, x, mask))))


# ---------------------------------------------------------------------------------------------
# 07.2 encoder_layer_parameter_count
# ---------------------------------------------------------------------------------------------


@correct("07.2")
def encoder_count_formula(d_model, d_ff):
    attention = 4 * (d_model * d_model + d_model)
    feed_forward = (d_model * d_ff + d_ff) + (d_ff * d_model + d_model)
    norms = 2 * (2 * d_model)
    return attention + feed_forward + norms


@correct("07.2")
def encoder_count_from_pytorch_layer(d_model, d_ff):
    layer = nn.TransformerEncoderLayer(d_model, nhead=1, dim_feedforward=d_ff)
    return sum(p.numel() for p in layer.parameters())


@wrong("07.2", "forgot the layer norms' parameters")
def encoder_count_without_norms(d_model, d_ff):
    return encoder_count_formula(d_model, d_ff) - 4 * d_model


@wrong("07.2", "forgot the attention's biases")
def encoder_count_without_attention_biases(d_model, d_ff):
    return 4 * d_model * d_model + (2 * d_model * d_ff + d_ff + d_model) + 4 * d_model


@wrong("07.2", "forgot the output projection w_o")
def encoder_count_without_output_projection(d_model, d_ff):
    return 3 * (d_model * d_model + d_model) + 2 * d_model * d_ff + d_ff + d_model + 4 * d_model


@wrong("07.2", "counted only one of the feed-forward's two linear layers")
def encoder_count_one_ff_layer(d_model, d_ff):
    return 4 * (d_model * d_model + d_model) + d_model * d_ff + d_ff + 4 * d_model


@wrong("07.2", "forgot the biases of the linear layers")
def encoder_count_without_linear_biases(d_model, d_ff):
    return 4 * d_model * d_model + 2 * d_model * d_ff + 4 * d_model


# ---------------------------------------------------------------------------------------------
# 07.3 pad_batch
# ---------------------------------------------------------------------------------------------


@correct("07.3")
def pad_with_full_and_loop(sequences, pad_id):
    T_max = max(len(s) for s in sequences)
    batch = torch.full((len(sequences), T_max), pad_id, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        batch[row, : len(sequence)] = torch.tensor(sequence)
    return batch


@correct("07.3")
def pad_with_pad_sequence(sequences, pad_id):
    return pad_sequence([torch.tensor(s) for s in sequences], batch_first=True, padding_value=pad_id)


@correct("07.3")
def pad_with_list_comprehension(sequences, pad_id):
    T_max = max(map(len, sequences))
    return torch.tensor([s + [pad_id] * (T_max - len(s)) for s in sequences])


@wrong("07.3", "padded on the left")
def pad_on_the_left(sequences, pad_id):
    T_max = max(map(len, sequences))
    return torch.tensor([[pad_id] * (T_max - len(s)) + s for s in sequences])


@wrong("07.3", "batch_first=True")
def pad_sequence_time_first(sequences, pad_id):
    return pad_sequence([torch.tensor(s) for s in sequences], padding_value=pad_id)


@wrong("07.3", "changed in place")
def pad_by_extending_the_lists(sequences, pad_id):
    T_max = max(map(len, sequences))
    for s in sequences:
        s.extend([pad_id] * (T_max - len(s)))
    return torch.tensor(sequences)


@wrong("07.3", "ignores pad_id")
def pad_with_zeros(sequences, pad_id):
    T_max = max(map(len, sequences))
    batch = torch.zeros(len(sequences), T_max, dtype=torch.long)
    for row, s in enumerate(sequences):
        batch[row, : len(s)] = torch.tensor(s)
    return batch


@wrong("07.3", "wrong dtype: got float32")
def pad_as_floats(sequences, pad_id):
    T_max = max(map(len, sequences))
    return torch.tensor([s + [pad_id] * (T_max - len(s)) for s in sequences], dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# 08.1 DecoderLayer
# ---------------------------------------------------------------------------------------------


class DecoderLayerComposed(nn.Module):
    """Correct: the course's parts, nn.LayerNorm, an explicit if/else."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.cross_attn = MultiHeadAttention(d_model, n_heads)
        self.ff = FeedForward(d_model, d_ff)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.self_attn(h, h, h, self_mask)
            x = x + self.cross_attn(self.norm2(x), memory, memory, memory_mask)
            return x + self.ff(self.norm3(x))
        x = self.norm1(x + self.self_attn(x, x, x, self_mask))
        x = self.norm2(x + self.cross_attn(x, memory, memory, memory_mask))
        return self.norm3(x + self.ff(x))


class DecoderLayerWithHelpers(nn.Module):
    """Correct: the learner's own classes, a list of (sublayer, norm) pairs and a residual helper."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn, self.cross_attn = MHAViewTranspose(d_model, n_heads), MHAHeadLoop(d_model, n_heads)
        self.ff = FeedForwardWithModules(d_model, d_ff)
        self.norm1, self.norm2, self.norm3 = LayerNorm(d_model), LayerNorm(d_model), LayerNorm(d_model)

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        steps = [
            (lambda h: self.self_attn(h, h, h, self_mask), self.norm1),
            (lambda h: self.cross_attn(h, memory, memory, memory_mask), self.norm2),
            (self.ff, self.norm3),
        ]
        for sublayer, norm in steps:
            x = residual_if_else(x, sublayer, norm, self.norm_first)
        return x


CORRECT += [("08.1", DecoderLayerComposed), ("08.1", DecoderLayerWithHelpers)]


@wrong("08.1", "cross-attention must attend to the encoder output")
class DecoderLayerCrossToItself(DecoderLayerComposed):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, x, x, self_mask))
        x = self.norm2(x + self.cross_attn(x, x, x, self_mask))
        return self.norm3(x + self.ff(x))


@wrong("08.1", "cross-attention must attend to the encoder output")
class DecoderLayerCrossKeysFromX(DecoderLayerComposed):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, x, x, self_mask))
        x = self.norm2(x + self.cross_attn(x, x, memory, memory_mask))
        return self.norm3(x + self.ff(x))


@wrong("08.1", "the queries come from the decoder (x)")
class DecoderLayerCrossQueriesFromMemory(DecoderLayerComposed):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, x, x, self_mask))
        x = self.norm2(x + self.cross_attn(memory, x, x, None))
        return self.norm3(x + self.ff(x))


@wrong("08.1", "the cross-attention's queries come from memory")
class DecoderLayerCrossOnMemoryOnly(DecoderLayerComposed):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, x, x, self_mask))
        x = self.norm2(x + self.cross_attn(memory, memory, memory, memory_mask))
        return self.norm3(x + self.ff(x))


@wrong("08.1", "the cross-attention got self_mask")
class DecoderLayerCrossGetsTheSelfMask(DecoderLayerComposed):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, x, x, self_mask))
        x = self.norm2(x + self.cross_attn(x, memory, memory, self_mask))
        return self.norm3(x + self.ff(x))


@wrong("08.1", "the self-attention attends to memory")
class DecoderLayerSelfAttentionOnMemory(DecoderLayerComposed):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, memory, memory, memory_mask))
        x = self.norm2(x + self.cross_attn(x, memory, memory, memory_mask))
        return self.norm3(x + self.ff(x))


@wrong("08.1", "on the sublayer's branch")
class DecoderLayerNormOnTheBranch(DecoderLayerComposed):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        if self.norm_first:
            return super().forward(x, memory, self_mask, memory_mask)
        x = x + self.norm1(self.self_attn(x, x, x, self_mask))
        x = x + self.norm2(self.cross_attn(x, memory, memory, memory_mask))
        return x + self.norm3(self.ff(x))


@wrong("08.1", "the self_mask was ignored")
class DecoderLayerNoCausalMask(DecoderLayerComposed):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return super().forward(x, memory, None, memory_mask)


@wrong("08.1", "the memory_mask was ignored")
class DecoderLayerNoMemoryMask(DecoderLayerComposed):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return super().forward(x, memory, self_mask, None)


@wrong("08.1", "sublayers are in the wrong order")
class DecoderLayerCrossFirst(DecoderLayerComposed):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        if self.norm_first:
            x = x + self.cross_attn(self.norm1(x), memory, memory, memory_mask)
            h = self.norm2(x)
            x = x + self.self_attn(h, h, h, self_mask)
            return x + self.ff(self.norm3(x))
        x = self.norm1(x + self.cross_attn(x, memory, memory, memory_mask))
        x = self.norm2(x + self.self_attn(x, x, x, self_mask))
        return self.norm3(x + self.ff(x))


@wrong("08.1", "post-norm and pre-norm confused")
class DecoderLayerAlwaysPostNorm(DecoderLayerComposed):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False):
        super().__init__(d_model, n_heads, d_ff, dropout, activation, norm_first=False)


@wrong("08.1", "missing attributes: norm3")
class DecoderLayerSharedNorm(DecoderLayerComposed):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False):
        super().__init__(d_model, n_heads, d_ff, dropout, activation, norm_first)
        del self.norm3


# ---------------------------------------------------------------------------------------------
# 08.2 cross_attention_weights_shape
# ---------------------------------------------------------------------------------------------


@correct("08.2")
def cross_shape_tuple(B, T, S, n_heads):
    return (B, n_heads, T, S)


@correct("08.2")
def cross_shape_by_running_attention(B, T, S, n_heads):
    attention = MultiHeadAttention(2 * n_heads, n_heads)
    attention(torch.zeros(B, T, 2 * n_heads), torch.zeros(B, S, 2 * n_heads), torch.zeros(B, S, 2 * n_heads))
    return attention.attention_weights.shape


@wrong("08.2", "swapped T and S")
def cross_shape_swapped(B, T, S, n_heads):
    return (B, n_heads, S, T)


@wrong("08.2", "forgot the heads dimension")
def cross_shape_without_heads(B, T, S, n_heads):
    return (B, T, S)


@wrong("08.2", "decoder's self-attention shape")
def cross_shape_self_attention(B, T, S, n_heads):
    return (B, n_heads, T, T)


@wrong("08.2", "heads come right after the batch")
def cross_shape_heads_third(B, T, S, n_heads):
    return (B, T, n_heads, S)


# ---------------------------------------------------------------------------------------------
# 08.3 shift_right
# ---------------------------------------------------------------------------------------------


@correct("08.3")
def shift_with_cat(tgt_ids, bos_id):
    bos = torch.full((tgt_ids.shape[0], 1), bos_id, dtype=tgt_ids.dtype)
    return torch.cat([bos, tgt_ids[:, :-1]], dim=1)


@correct("08.3")
def shift_with_new_full(tgt_ids, bos_id):
    shifted = tgt_ids.new_full(tgt_ids.shape, bos_id)
    shifted[:, 1:] = tgt_ids[:, :-1]
    return shifted


@correct("08.3")
def shift_with_roll(tgt_ids, bos_id):
    shifted = torch.roll(tgt_ids, shifts=1, dims=1)
    shifted[:, 0] = bos_id
    return shifted


@wrong("08.3", "dropped the first token instead of the last")
def shift_drops_first(tgt_ids, bos_id):
    bos = torch.full((tgt_ids.shape[0], 1), bos_id)
    return torch.cat([bos, tgt_ids[:, 1:]], dim=1)


@wrong("08.3", "kept every target token")
def shift_keeps_all(tgt_ids, bos_id):
    bos = torch.full((tgt_ids.shape[0], 1), bos_id)
    return torch.cat([bos, tgt_ids], dim=1)


@wrong("08.3", "rolled the tokens")
def shift_roll_only(tgt_ids, bos_id):
    return torch.roll(tgt_ids, shifts=1, dims=1)


@wrong("08.3", "wrong dtype")
def shift_with_float_bos(tgt_ids, bos_id):
    bos = torch.ones(tgt_ids.shape[0], 1) * bos_id
    return torch.cat([bos, tgt_ids[:, :-1]], dim=1)


@wrong("08.3", "changed in place")
def shift_in_place(tgt_ids, bos_id):
    tgt_ids[:, 1:] = tgt_ids[:, :-1].clone()
    tgt_ids[:, 0] = bos_id
    return tgt_ids


# ---------------------------------------------------------------------------------------------
# 09.1 next_token_probs
# ---------------------------------------------------------------------------------------------


def _keep_top_p(probs, top_p, keep_crossing=True):
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    cumulative = sorted_probs.cumsum(dim=-1)
    keep_sorted = (cumulative - sorted_probs < top_p) if keep_crossing else (cumulative <= top_p)
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def _probs(logits, temperature=1.0, top_k=None, top_p=None, *, k_offset=0, keep_crossing=True, renormalise=True,
           multiply=False, greedy=True, p_first=False):  # fmt: skip
    if temperature == 0 and greedy:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    scaled = logits * temperature if multiply else logits / temperature
    keep = torch.ones_like(scaled, dtype=torch.bool)
    if top_p is not None and p_first:
        keep &= _keep_top_p(torch.softmax(scaled, dim=-1), top_p, keep_crossing)
    if top_k is not None:
        keep &= scaled >= scaled.topk(top_k + k_offset, dim=-1).values[..., -1:]
    if top_p is not None and not p_first:
        keep &= _keep_top_p(torch.softmax(scaled.masked_fill(~keep, float("-inf")), dim=-1), top_p, keep_crossing)
    if renormalise:
        return torch.softmax(scaled.masked_fill(~keep, float("-inf")), dim=-1)
    return torch.softmax(scaled, dim=-1) * keep


@correct("09.1")
def probs_vectorised(logits, temperature=1.0, top_k=None, top_p=None):
    return _probs(logits, temperature, top_k, top_p)


@correct("09.1")
def probs_row_by_row(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature == 0:
        top_k, top_p, temperature = 1, None, 1.0  # greedy: only the most likely token
    rows = logits.reshape(-1, logits.shape[-1]) / temperature
    out = torch.zeros_like(rows)
    for r, row in enumerate(rows):
        order = sorted(range(len(row)), key=lambda i: -float(row[i]))
        kept = order[:top_k] if top_k is not None else order
        if top_p is not None:
            weights = torch.softmax(row[kept], dim=0)
            mass, nucleus = 0.0, []
            for index, weight in zip(kept, weights.tolist(), strict=True):
                nucleus.append(index)
                mass += weight
                if mass >= top_p:
                    break
            kept = nucleus
        out[r, kept] = torch.softmax(row[kept], dim=0)
    return out.view(logits.shape)


@wrong("09.1", "temperature applied the wrong way")
def probs_temperature_multiplied(logits, temperature=1.0, top_k=None, top_p=None):
    return _probs(logits, temperature, top_k, top_p, multiply=True)


@wrong("09.1", "top-k off by one")
def probs_top_k_plus_one(logits, temperature=1.0, top_k=None, top_p=None):
    return _probs(logits, temperature, top_k, top_p, k_offset=1)


@wrong("09.1", "drops the token that crosses p")
def probs_nucleus_without_crossing_token(logits, temperature=1.0, top_k=None, top_p=None):
    return _probs(logits, temperature, top_k, top_p, keep_crossing=False)


@wrong("09.1", "probabilities not renormalised")
def probs_not_renormalised(logits, temperature=1.0, top_k=None, top_p=None):
    return _probs(logits, temperature, top_k, top_p, renormalise=False)


@wrong("09.1", "softmax over the wrong dimension")
def probs_softmax_dim0(logits, temperature=1.0, top_k=None, top_p=None):
    return torch.softmax(logits / temperature, dim=0)


@wrong("09.1", "temperature=0 means greedy")
def probs_temperature_zero_gives_nan(logits, temperature=1.0, top_k=None, top_p=None):
    return _probs(logits, temperature, top_k, top_p, greedy=False)


@wrong("09.1", "temperature=0 means greedy")
def probs_temperature_as_python_division(logits, temperature=1.0, top_k=None, top_p=None):
    return _probs(logits * (1 / temperature), 1.0, top_k, top_p)


@wrong("09.1", "returned the ids of the largest logits")
def probs_greedy_returns_ids(logits, temperature=1.0, top_k=None, top_p=None):
    if temperature == 0:
        return logits.argmax(dim=-1)
    return _probs(logits, temperature, top_k, top_p)


@wrong("09.1", "top-p was applied before top-k")
def probs_top_p_before_top_k(logits, temperature=1.0, top_k=None, top_p=None):
    return _probs(logits, temperature, top_k, top_p, p_first=True)


@wrong("09.1", "ignores top_k")
def probs_ignoring_top_k(logits, temperature=1.0, top_k=None, top_p=None):
    return _probs(logits, temperature, None, top_p)


# ---------------------------------------------------------------------------------------------
# 09.2 greedy_decode
# ---------------------------------------------------------------------------------------------


@correct("09.2")
def greedy_full_forward(model, src_ids, bos_id, eos_id, max_len):
    ids = torch.full((src_ids.shape[0], 1), bos_id, dtype=torch.long)
    done = torch.zeros(src_ids.shape[0], dtype=torch.bool)
    for _ in range(max_len):
        next_ids = model(src_ids, ids)[:, -1].argmax(dim=-1)
        next_ids = torch.where(done, torch.full_like(next_ids, model.config.pad_id), next_ids)
        ids = torch.cat([ids, next_ids[:, None]], dim=1)
        done = done | (next_ids == eos_id)
        if done.all():
            break
    return ids


@correct("09.2")
def greedy_one_row_at_a_time(model, src_ids, bos_id, eos_id, max_len):
    rows = []
    for row in range(src_ids.shape[0]):
        memory, src_mask = model.encode(src_ids[row : row + 1])
        tokens = [bos_id]
        for _ in range(max_len):
            logits = model.decode(torch.tensor([tokens]), memory, src_mask)
            tokens.append(int(logits[0, -1].argmax()))
            if tokens[-1] == eos_id:
                break
        rows.append(tokens)
    length = max(len(tokens) for tokens in rows)
    return torch.tensor([tokens + [model.config.pad_id] * (length - len(tokens)) for tokens in rows])


@correct("09.2")
def greedy_with_the_course_cache(model, src_ids, bos_id, eos_id, max_len):
    return greedy_decode(model, src_ids, bos_id, eos_id, max_len, use_cache=True)


@wrong("09.2", "must start with bos_id")
def greedy_without_bos(model, src_ids, bos_id, eos_id, max_len):
    return greedy_full_forward(model, src_ids, bos_id, eos_id, max_len)[:, 1:]


@wrong("09.2", "did not stop at eos")
def greedy_never_stops(model, src_ids, bos_id, eos_id, max_len):
    return greedy_full_forward(model, src_ids, bos_id, -1, max_len)


@wrong("09.2", "not keep generating")
def greedy_does_not_pad_finished_rows(model, src_ids, bos_id, eos_id, max_len):
    ids = torch.full((src_ids.shape[0], 1), bos_id, dtype=torch.long)
    done = torch.zeros(src_ids.shape[0], dtype=torch.bool)
    for _ in range(max_len):
        next_ids = model(src_ids, ids)[:, -1].argmax(dim=-1)
        ids = torch.cat([ids, next_ids[:, None]], dim=1)
        done = done | (next_ids == eos_id)
        if done.all():
            break
    return ids


@wrong("09.2", "not with eos_id")
def greedy_fills_with_eos(model, src_ids, bos_id, eos_id, max_len):
    ids = greedy_full_forward(model, src_ids, bos_id, eos_id, max_len)
    finished = (ids[:, 1:] == eos_id).cumsum(dim=1) > 0
    finished = torch.cat([torch.zeros_like(finished[:, :1]), finished[:, :-1]], dim=1)  # after the eos itself
    ids[:, 1:][finished] = eos_id
    return ids


@wrong("09.2", "one token too few")
def greedy_stops_one_early(model, src_ids, bos_id, eos_id, max_len):
    return greedy_full_forward(model, src_ids, bos_id, eos_id, max_len - 1)


# ---------------------------------------------------------------------------------------------
# 09.3 sequence_log_prob
# ---------------------------------------------------------------------------------------------


@correct("09.3")
def log_prob_gather(logits, target_ids):
    return torch.log_softmax(logits, dim=-1).gather(-1, target_ids.unsqueeze(-1)).squeeze(-1).sum(dim=-1)


@correct("09.3")
def log_prob_cross_entropy(logits, target_ids):
    B, T, V = logits.shape
    nll = F.cross_entropy(logits.reshape(B * T, V), target_ids.reshape(B * T), reduction="none")
    return -nll.view(B, T).sum(dim=1)


@correct("09.3")
def log_prob_loop(logits, target_ids):
    B, T, _ = logits.shape
    totals = torch.zeros(B, dtype=logits.dtype)
    for b in range(B):
        for t in range(T):
            totals[b] += logits[b, t, target_ids[b, t]] - torch.logsumexp(logits[b, t], dim=0)
    return totals


@wrong("09.3", "averaged over positions")
def log_prob_mean(logits, target_ids):
    return torch.log_softmax(logits, -1).gather(-1, target_ids[..., None]).squeeze(-1).mean(dim=-1)


@wrong("09.3", "forgot log_softmax")
def log_prob_raw_logits(logits, target_ids):
    return logits.gather(-1, target_ids[..., None]).squeeze(-1).sum(dim=-1)


@wrong("09.3", "summed probabilities")
def log_prob_sums_probabilities(logits, target_ids):
    return torch.softmax(logits, -1).gather(-1, target_ids[..., None]).squeeze(-1).sum(dim=-1)


@wrong("09.3", "negative log-likelihood")
def log_prob_nll(logits, target_ids):
    return -log_prob_gather(logits, target_ids)


@wrong("09.3", "wrong output shape")
def log_prob_summed_over_batch(logits, target_ids):
    return log_prob_gather(logits, target_ids).sum()


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------


def _name(implementation) -> str:
    return getattr(implementation, "__name__", type(implementation).__name__)


def _id(exercise_id: str, implementation) -> str:
    return f"{exercise_id}-{CHECKERS[exercise_id].__name__}-{_name(implementation)}"


@pytest.mark.parametrize(
    ("exercise_id", "implementation", "hint_text"),
    [pytest.param(e, impl, text, id=_id(e, impl)) for e, impl, text in WRONG],
)
def test_wrong_implementation_is_rejected_with_a_named_mistake(exercise_id, implementation, hint_text, capsys):
    learner_object = implementation() if implementation is mha_instance_instead_of_class else implementation
    with pytest.raises(CheckFailed, match=re.escape(hint_text)) as failure:
        CHECKERS[exercise_id](learner_object)
    message = str(failure.value)
    assert message.startswith(f"{exercise_id} "), message
    assert "Hint:" in message
    assert "✓" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("exercise_id", "implementation"),
    [pytest.param(e, impl, id=_id(e, impl)) for e, impl in CORRECT],
)
def test_correct_implementation_is_accepted(exercise_id, implementation, capsys):
    CHECKERS[exercise_id](implementation)
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1, printed
    assert printed.startswith(f"✓ {exercise_id} "), printed
    assert ": correct " in printed


def _stub_function(*args, **kwargs):
    raise NotImplementedError("exercise: replace this line with your code")


class _StubClass(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        raise NotImplementedError("exercise: replace this line with your code")


@pytest.mark.parametrize("exercise_id", sorted(CHECKERS))
def test_stub_raising_not_implemented_fails_clearly(exercise_id, capsys):
    stub = _StubClass if exercise_id in CLASS_EXERCISES else _stub_function
    with pytest.raises(CheckFailed, match="not implemented yet") as failure:
        CHECKERS[exercise_id](stub)
    assert "raise NotImplementedError" in str(failure.value)
    assert capsys.readouterr().out == ""


class _MHAStubForward(MHAViewTranspose):
    def forward(self, query, key, value, mask=None):
        raise NotImplementedError("05.3: write forward")


def test_class_stub_with_only_forward_missing_fails_clearly():
    with pytest.raises(CheckFailed, match="not implemented yet"):
        checks.check_multi_head_attention(_MHAStubForward)


@pytest.mark.parametrize("exercise_id", sorted(CHECKERS))
def test_every_checker_has_three_wrong_and_two_correct_implementations(exercise_id):
    n_wrong = sum(1 for e, _, _ in WRONG if e == exercise_id)
    n_correct = sum(1 for e, _ in CORRECT if e == exercise_id)
    assert n_wrong >= 3, f"{exercise_id}: only {n_wrong} wrong implementations"
    assert n_correct >= 2, f"{exercise_id}: only {n_correct} correct implementations"


def test_every_public_checker_is_covered():
    """Every checker of lessons 01-09 is tested here (later lessons have their own test files)."""
    lessons = {f"course_lib.checks.lesson{number:02d}" for number in range(1, 10)}
    public = {name for name in checks.__all__ if name.startswith("check_")}
    assert {name for name in public if getattr(checks, name).__module__ in lessons} == {
        checker.__name__ for checker in CHECKERS.values()
    }


def test_checkfailed_is_an_assertion_error():
    assert issubclass(CheckFailed, AssertionError)


@pytest.mark.parametrize("default_dtype", [torch.float32, torch.float64])
def test_checkers_do_not_depend_on_or_change_the_global_state(default_dtype, capsys):
    torch.set_default_dtype(default_dtype)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected_next_draw = torch.rand(3)
    torch.manual_seed(123)
    checks.check_scaled_dot_product_attention(attention_einsum_additive_mask)
    checks.check_multi_head_attention(MHAHeadLoop)
    assert torch.get_default_dtype() == default_dtype
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected_next_draw)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "✓ 03.2 scaled_dot_product_attention",
        "✓ 05.3 MultiHeadAttention",
    ]


def test_success_line_is_deterministic(capsys):
    checks.check_next_token_probs(probs_row_by_row)
    first = capsys.readouterr().out
    checks.check_next_token_probs(probs_vectorised)
    assert capsys.readouterr().out == first


# ---------------------------------------------------------------------------------------------
# Naming the mistake when several give the learner's result
# ---------------------------------------------------------------------------------------------


def _toy_checker(cases):
    """A checker of ``3 * x`` whose two known mistakes give the same result on the first case [2, 2]."""
    from course_lib.checks._machinery import _checker, _compare

    @_checker("99.1", "toy")
    def check_toy(ex, function):
        for x in cases:
            variants = [("doubled x", x * 2), ("added the first entry", x + x[0])]
            _compare(ex, function(x), x * 3, case=str(x.tolist()), variants=variants)
        return "correct"

    return check_toy


def test_the_later_cases_name_which_of_two_matching_mistakes_it_is(capsys):
    check_toy = _toy_checker([torch.tensor([2.0, 2.0]), torch.tensor([3.0, 5.0]), torch.tensor([1.0, 1.0])])
    with pytest.raises(CheckFailed) as failure:
        check_toy(lambda x: x + x[0])  # on [2, 2] this is also what "doubled x" gives
    message = str(failure.value)
    assert message.startswith("99.1 toy: the output is not right (case: [2.0, 2.0]).")  # the first failing case
    assert message.endswith("Hint: added the first entry")
    with pytest.raises(CheckFailed, match=r"Hint: doubled x$"):
        check_toy(lambda x: 2 * x)
    assert capsys.readouterr().out == ""


def test_mistakes_no_case_can_tell_apart_are_all_named():
    check_toy = _toy_checker([torch.tensor([2.0, 2.0]), torch.tensor([4.0, 4.0])])
    with pytest.raises(CheckFailed) as failure:
        check_toy(lambda x: 2 * x)
    message = str(failure.value)
    assert "(1) doubled x; (2) added the first entry" in message


def test_an_error_after_an_ambiguous_case_reports_that_case():
    check_toy = _toy_checker([torch.tensor([2.0, 2.0]), torch.tensor([4.0, 1.0])])

    def doubled_then_crashes(x):
        if x[1] == 1.0:
            raise RuntimeError("boom")
        return 2 * x

    with pytest.raises(CheckFailed) as failure:
        check_toy(doubled_then_crashes)
    assert "(case: [2.0, 2.0])" in str(failure.value) and "doubled x" in str(failure.value)
