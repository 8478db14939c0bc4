"""The fused fast path (F.scaled_dot_product_attention) equals the readable path."""

import pytest
import torch
from conftest import max_abs_diff, report

from course_lib.masks import causal_mask, combine_masks, padding_mask
from course_lib.models import GPT, GPTConfig, Transformer, TransformerConfig
from course_lib.multihead import MultiHeadAttention, use_fused_attention


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding", "fully masked row"])
def test_fused_multi_head_attention_equals_readable_forward_and_backward(mask_kind):
    B, T, d_model, n_heads = 3, 6, 16, 4
    attention = MultiHeadAttention(d_model, n_heads)
    x = torch.randn(B, T, d_model, requires_grad=True)
    ids = torch.randint(1, 9, (B, T))
    ids[1, 4:] = 0
    mask = {
        "none": None,
        "causal": causal_mask(T),
        "padding": padding_mask(ids, 0),
        "fully masked row": combine_masks(causal_mask(T), torch.arange(T)[:, None] != 2),
    }[mask_kind]

    outputs, gradients = [], []
    for fused in (False, True):
        use_fused_attention(attention, fused)
        x.grad = None
        attention.zero_grad()
        out = attention(x, x, x, mask=mask)
        (out * torch.linspace(-1, 1, d_model)).sum().backward()
        outputs.append(out.detach())
        gradients.append([x.grad.clone()] + [p.grad.clone() for p in attention.parameters()])
    assert attention.attention_weights is None  # the fused path keeps no weights
    diff = max_abs_diff(*outputs)
    grad_diff = max(max_abs_diff(a, b) for a, b in zip(*gradients, strict=True))
    report(f"fused vs readable MultiHeadAttention, {mask_kind}: output", diff)
    report(f"fused vs readable MultiHeadAttention, {mask_kind}: gradients", grad_diff)
    assert diff < 1e-12 and grad_diff < 1e-12
    if mask_kind == "fully masked row":
        assert torch.equal(outputs[1][:, 2], attention.w_o.bias.detach().expand(B, d_model))


def test_fused_gpt_and_transformer_equal_readable():
    gpt = GPT(GPTConfig(vocab_size=20, context_length=16, d_model=32, n_heads=4, n_layers=2)).eval()
    ids = torch.randint(0, 20, (2, 16))
    readable = gpt(ids)
    fused = use_fused_attention(gpt)(ids)
    assert max_abs_diff(readable, fused) < 1e-12

    config = TransformerConfig(
        src_vocab_size=15, tgt_vocab_size=15, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64
    )
    model = Transformer(config).eval()
    src, tgt = torch.randint(1, 15, (2, 7)), torch.randint(1, 15, (2, 5))
    src[0, 5:] = 0
    readable = model(src, tgt)
    fused = use_fused_attention(model)(src, tgt)
    assert max_abs_diff(readable, fused) < 1e-12
    use_fused_attention(model, enabled=False)
    model(src, tgt)
    assert model.decoder.layers[0].cross_attn.attention_weights.shape == (2, 4, 5, 7)
