"""Proof: each reference implementation equals PyTorch's own, in float64 with copied weights."""

import pytest
import torch
import torch.nn.functional as F
from conftest import max_abs_diff, report
from torch import nn
from torch_copy import copy_decoder_layer, copy_encoder_layer, copy_mha, copy_norm

from course_lib.attention import scaled_dot_product_attention
from course_lib.decoder import Decoder, DecoderLayer
from course_lib.encoder import Encoder, EncoderLayer
from course_lib.masks import causal_mask, combine_masks, padding_mask
from course_lib.multihead import MultiHeadAttention
from course_lib.normalization import layer_norm

TOL = 1e-12


def random_padded_ids(B, T, pad_id=0, vocab=20):
    """Token ids with a different amount of right padding per row (every row keeps >= 1 token)."""
    ids = torch.randint(1, vocab, (B, T))
    for row in range(B):
        n_real = T - (row % max(T - 1, 1))
        ids[row, n_real:] = pad_id
    return ids


@pytest.mark.parametrize("shape", [(3, 5, 8), (2, 4, 7, 16), (1, 1, 1, 4)])
def test_attention_equals_sdpa_without_mask(shape):
    *batch, T, d = shape
    q, k = torch.randn(*batch, T, d), torch.randn(*batch, T + 2, d)
    v = torch.randn(*batch, T + 2, d + 3)  # d_v != d_k
    ours, weights = scaled_dot_product_attention(q, k, v)
    theirs = F.scaled_dot_product_attention(q, k, v)
    diff = max_abs_diff(ours, theirs)
    report(f"scaled_dot_product_attention vs F.sdpa, no mask, {shape}", diff)
    assert diff < TOL
    assert torch.allclose(weights.sum(-1), torch.ones(()), atol=TOL)


@pytest.mark.parametrize("kind", ["causal", "padding", "combined", "random"])
def test_attention_equals_sdpa_with_mask(kind):
    B, H, T, d = 3, 2, 6, 8
    q, k, v = torch.randn(B, H, T, d), torch.randn(B, H, T, d), torch.randn(B, H, T, 5)
    ids = random_padded_ids(B, T)
    mask = {
        "causal": causal_mask(T),
        "padding": padding_mask(ids, 0),
        "combined": combine_masks(causal_mask(T), padding_mask(ids, 0)),
        "random": (torch.rand(B, H, T, T) > 0.4) | torch.eye(T, dtype=torch.bool),
    }[kind]
    ours, _ = scaled_dot_product_attention(q, k, v, mask)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    diff = max_abs_diff(ours, theirs)
    report(f"scaled_dot_product_attention vs F.sdpa, {kind} mask", diff)
    assert diff < TOL


def test_fully_masked_row_gives_zero_weights_and_output_not_nan():
    q, k, v = torch.randn(2, 4, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 3)
    mask = torch.ones(2, 4, 5, dtype=torch.bool)
    mask[0, 2] = False  # query 2 of batch 0 may attend to nothing
    output, weights = scaled_dot_product_attention(q, k, v, mask)
    assert not torch.isnan(output).any() and not torch.isnan(weights).any()
    assert torch.equal(weights[0, 2], torch.zeros(5))
    assert torch.equal(output[0, 2], torch.zeros(3))
    assert torch.allclose(weights[0, 1].sum(), torch.tensor(1.0))


def test_fully_masked_row_has_finite_gradients():
    q = torch.randn(1, 3, 4, requires_grad=True)
    k = torch.randn(1, 3, 4, requires_grad=True)
    v = torch.randn(1, 3, 4, requires_grad=True)
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    output, _ = scaled_dot_product_attention(q, k, v, mask)
    output.sum().backward()
    for tensor in (q, k, v):
        assert torch.isfinite(tensor.grad).all()


@pytest.mark.parametrize("shape", [(4, 10), (2, 3, 16), (2, 3, 5, 7)])
def test_layer_norm_equals_f_layer_norm(shape):
    x = torch.randn(*shape) * 3 + 1
    weight, bias = torch.randn(shape[-1]), torch.randn(shape[-1])
    for eps in (1e-5, 1e-12, 0.1):
        diff = max_abs_diff(layer_norm(x, weight, bias, eps), F.layer_norm(x, (shape[-1],), weight, bias, eps))
        report(f"layer_norm vs F.layer_norm, {shape}, eps={eps}", diff)
        assert diff < TOL


def test_gradcheck_attention_and_layer_norm():
    q = torch.randn(2, 3, 4, requires_grad=True)
    k = torch.randn(2, 5, 4, requires_grad=True)
    v = torch.randn(2, 5, 3, requires_grad=True)
    mask = torch.rand(2, 3, 5) > 0.3
    mask[:, :, 0] = True
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v)[0], (q, k, v))
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask)[0], (q, k, v))
    x = torch.randn(3, 6, requires_grad=True)
    w = torch.randn(6, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: layer_norm(x, w, b), (x, w, b))


@pytest.mark.parametrize("use_mask", [False, True])
def test_multi_head_attention_equals_nn_multihead_attention(use_mask):
    B, T_q, T_k, d_model, n_heads = 3, 5, 7, 16, 4
    theirs = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
    ours = MultiHeadAttention(d_model, n_heads)
    copy_mha(ours, theirs)
    query, key = torch.randn(B, T_q, d_model), torch.randn(B, T_k, d_model)
    value = torch.randn(B, T_k, d_model)
    if use_mask:
        key_ids = random_padded_ids(B, T_k)
        mask = padding_mask(key_ids, 0)  # (B, 1, 1, T_k), True = may attend
        out_theirs, w_theirs = theirs(
            query, key, value, key_padding_mask=~mask[:, 0, 0, :], average_attn_weights=False
        )  # PyTorch: True = blocked
        out_ours = ours(query, key, value, mask=mask)
    else:
        out_theirs, w_theirs = theirs(query, key, value, average_attn_weights=False)
        out_ours = ours(query, key, value)
    diff_out = max_abs_diff(out_ours, out_theirs)
    diff_w = max_abs_diff(ours.attention_weights, w_theirs)
    report(f"MultiHeadAttention vs nn.MultiheadAttention output, mask={use_mask}", diff_out)
    report(f"MultiHeadAttention vs nn.MultiheadAttention per-head weights, mask={use_mask}", diff_w)
    assert ours.attention_weights.shape == (B, n_heads, T_q, T_k)
    assert diff_out < TOL and diff_w < TOL


def test_multi_head_attention_causal_mask_equals_attn_mask():
    B, T, d_model, n_heads = 2, 6, 12, 3
    theirs = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
    ours = MultiHeadAttention(d_model, n_heads)
    copy_mha(ours, theirs)
    x = torch.randn(B, T, d_model)
    mask = causal_mask(T)
    out_theirs, w_theirs = theirs(x, x, x, attn_mask=~mask, average_attn_weights=False)
    out_ours = ours(x, x, x, mask=mask)
    diff = max(max_abs_diff(out_ours, out_theirs), max_abs_diff(ours.attention_weights, w_theirs))
    report("MultiHeadAttention vs nn.MultiheadAttention, causal attn_mask", diff)
    assert diff < TOL


LAYER_CASES = [(norm_first, activation) for norm_first in (False, True) for activation in ("relu", "gelu")]


@pytest.mark.parametrize(("norm_first", "activation"), LAYER_CASES)
@pytest.mark.parametrize("mask_kind", ["none", "padding", "causal"])
def test_encoder_layer_equals_nn_transformer_encoder_layer(norm_first, activation, mask_kind):
    B, T, d_model, n_heads, d_ff = 3, 6, 16, 4, 24
    theirs = nn.TransformerEncoderLayer(
        d_model, n_heads, d_ff, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    )
    ours = EncoderLayer(d_model, n_heads, d_ff, dropout=0.0, activation=activation, norm_first=norm_first)
    copy_encoder_layer(ours, theirs)
    x = torch.randn(B, T, d_model)
    ids = random_padded_ids(B, T)
    if mask_kind == "padding":
        out_theirs = theirs(x, src_key_padding_mask=ids == 0)
        out_ours = ours(x, mask=padding_mask(ids, 0))
        real = ids != 0  # PyTorch's fast path may zero padded positions; compare the real ones
        out_theirs, out_ours = out_theirs[real], out_ours[real]
    elif mask_kind == "causal":
        out_theirs = theirs(x, src_mask=~causal_mask(T))
        out_ours = ours(x, mask=causal_mask(T))
    else:
        out_theirs, out_ours = theirs(x), ours(x)
    diff = max_abs_diff(out_ours, out_theirs)
    report(f"EncoderLayer vs nn.TransformerEncoderLayer, norm_first={norm_first}, {activation}, {mask_kind}", diff)
    assert diff < TOL


@pytest.mark.parametrize(("norm_first", "activation"), LAYER_CASES)
def test_decoder_layer_equals_nn_transformer_decoder_layer(norm_first, activation):
    B, T, S, d_model, n_heads, d_ff = 3, 5, 7, 16, 4, 24
    theirs = nn.TransformerDecoderLayer(
        d_model, n_heads, d_ff, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    )
    ours = DecoderLayer(d_model, n_heads, d_ff, dropout=0.0, activation=activation, norm_first=norm_first)
    copy_decoder_layer(ours, theirs)
    x, memory = torch.randn(B, T, d_model), torch.randn(B, S, d_model)
    tgt_ids, src_ids = random_padded_ids(B, T), random_padded_ids(B, S)
    out_theirs = theirs(
        x,
        memory,
        tgt_mask=~causal_mask(T),
        tgt_key_padding_mask=tgt_ids == 0,
        memory_key_padding_mask=src_ids == 0,
    )
    self_mask = combine_masks(causal_mask(T), padding_mask(tgt_ids, 0))
    out_ours = ours(x, memory, self_mask=self_mask, memory_mask=padding_mask(src_ids, 0))
    diff = max_abs_diff(out_ours, out_theirs)
    report(f"DecoderLayer vs nn.TransformerDecoderLayer, norm_first={norm_first}, {activation}", diff)
    assert diff < TOL


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_decoder_core_equals_nn_transformer(norm_first):
    B, S, T, d_model, n_heads, d_ff, n_layers = 2, 7, 5, 16, 4, 32, 2
    theirs = nn.Transformer(
        d_model, n_heads, n_layers, n_layers, d_ff, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    encoder = Encoder(n_layers, d_model, n_heads, d_ff, norm_first=norm_first)
    decoder = Decoder(n_layers, d_model, n_heads, d_ff, norm_first=norm_first)
    for ours, their_layer in zip(encoder.layers, theirs.encoder.layers, strict=True):
        copy_encoder_layer(ours, their_layer)
    for ours, their_layer in zip(decoder.layers, theirs.decoder.layers, strict=True):
        copy_decoder_layer(ours, their_layer)
    copy_norm(encoder.norm, theirs.encoder.norm)
    copy_norm(decoder.norm, theirs.decoder.norm)
    src, tgt = torch.randn(B, S, d_model), torch.randn(B, T, d_model)
    src_ids = random_padded_ids(B, S)
    out_theirs = theirs(
        src,
        tgt,
        tgt_mask=~causal_mask(T),
        src_key_padding_mask=src_ids == 0,
        memory_key_padding_mask=src_ids == 0,
    )
    src_mask = padding_mask(src_ids, 0)
    memory = encoder(src, src_mask)
    out_ours = decoder(tgt, memory, self_mask=causal_mask(T), memory_mask=src_mask)
    diff = max_abs_diff(out_ours, out_theirs)
    report(f"Encoder + Decoder vs nn.Transformer, norm_first={norm_first}", diff)
    assert diff < TOL
