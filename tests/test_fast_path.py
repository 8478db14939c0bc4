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


# ---------------------------------------------------------------------------------------------
# The whole-model switch: use_fast_path (layer norm, RMSNorm, attention with is_causal)
# ---------------------------------------------------------------------------------------------

from course_lib.attention import scaled_dot_product_attention  # noqa: E402
from course_lib.embeddings import TokenEmbedding  # noqa: E402
from course_lib.feedforward import FeedForward, SwiGLU  # noqa: E402
from course_lib.generation import generate  # noqa: E402
from course_lib.llama import Llama, LlamaConfig  # noqa: E402
from course_lib.multihead import (  # noqa: E402
    GroupedQueryAttention,
    KVCache,
    causal_fused_attention,
    causal_mask_after_cache,
    readable_path,
    repeat_kv_heads,
    use_fast_path,
)
from course_lib.normalization import LayerNorm, RMSNorm  # noqa: E402
from course_lib.rotary import apply_rope, apply_rope_cached  # noqa: E402

TOL = 1e-12


def randomise(model):
    """Move every norm weight and bias away from ones and zeros, so that they are tested too."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LayerNorm | RMSNorm):
                module.weight.copy_(1 + 0.3 * torch.randn_like(module.weight))
            if isinstance(module, LayerNorm):
                module.bias.copy_(0.3 * torch.randn_like(module.bias))
    return model


def outputs_and_gradients(model, run, fast: bool):
    """run(model) -> a tensor; its value and the gradient of a fixed weighted sum for every parameter."""
    use_fast_path(model, fast)
    model.zero_grad()
    out = run(model)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_paths_equal(model, run, label):
    readable, readable_grads = outputs_and_gradients(model, run, fast=False)
    fast, fast_grads = outputs_and_gradients(model, run, fast=True)
    use_fast_path(model, False)
    assert readable_grads.keys() == fast_grads.keys() and readable_grads
    diff = max_abs_diff(readable, fast)
    grad_diff = max(max_abs_diff(readable_grads[name], fast_grads[name]) for name in readable_grads)
    report(f"fast vs readable {label}: output", diff)
    report(f"fast vs readable {label}: gradients", grad_diff)
    assert diff < TOL and grad_diff < TOL


@pytest.mark.parametrize("norm_class", [LayerNorm, RMSNorm])
def test_fused_norms_equal_readable_forward_and_backward(norm_class):
    norm = randomise(norm_class(16))
    x = torch.randn(3, 5, 16) * 4 + 1

    def run(module):
        x.grad = None
        return module(x.requires_grad_())

    assert_paths_equal(norm, run, norm_class.__name__)
    use_fast_path(norm)
    assert norm.fused
    with pytest.raises(ValueError, match="must have the dtype of x"):  # the same check as the readable path
        norm(torch.randn(2, 16, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"x must be \(\.\.\., d_model\) with d_model=16"):
        norm(torch.randn(2, 15))


@pytest.mark.parametrize("norm_class", [LayerNorm, RMSNorm])
def test_fused_norms_in_half_precision_stay_close(norm_class):
    norm = randomise(norm_class(64)).to(torch.bfloat16)
    x = (torch.randn(4, 64) * 300).to(torch.bfloat16)  # squares overflow float16, not the float32 inside
    readable = norm(x).double()
    fast = use_fast_path(norm)(x).double()
    assert norm(x).dtype == torch.bfloat16
    assert max_abs_diff(readable, fast) <= 0.02 * readable.abs().max().item()


def test_is_causal_attention_equals_the_causal_mask_and_checks_its_promise():
    B, T, d_model, n_heads = 2, 7, 16, 4
    attention = MultiHeadAttention(d_model, n_heads)
    x = torch.randn(B, T, d_model)

    def run(module):
        return module(x, x, x, mask=causal_mask(T), is_causal=True)

    assert_paths_equal(attention, run, "MultiHeadAttention, is_causal=True")
    use_fast_path(attention)
    with pytest.raises(ValueError, match="is_causal=True promises that mask is causal_mask"):
        attention(x, x, x, mask=None, is_causal=True)
    with pytest.raises(ValueError, match="is_causal=True promises that mask is causal_mask"):
        attention(x, x, x, mask=causal_mask(T)[:1], is_causal=True)
    cache = KVCache()
    attention(x[:, :3], x[:, :3], x[:, :3], mask=causal_mask(3), kv_cache=cache, is_causal=True)
    with pytest.raises(ValueError, match="a filled kv_cache"):
        attention(x[:, 3:5], x[:, 3:5], x[:, 3:5], mask=causal_mask(5)[3:], kv_cache=cache, is_causal=True)


@pytest.mark.parametrize("T_past, T", [(0, 5), (4, 1), (3, 4)])
@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_causal_fused_attention_equals_the_readable_causal_mask(T_past, T, n_kv_heads):
    """No cache (is_causal), one new token (no mask), several after cached ones (the mask itself)."""
    B, n_heads, d_head = 2, 4, 8
    q = torch.randn(B, n_heads, T, d_head)
    k, v = torch.randn(B, n_kv_heads, T_past + T, d_head), torch.randn(B, n_kv_heads, T_past + T, d_head)
    repeats = n_heads // n_kv_heads
    mask = causal_mask(T_past + T)[T_past:]  # (T, T_past + T)
    expected, _ = scaled_dot_product_attention(q, repeat_kv_heads(k, repeats), repeat_kv_heads(v, repeats), mask)
    diff = max_abs_diff(causal_fused_attention(q, k, v, T_past), expected)
    report(f"causal_fused_attention T_past={T_past} T={T} n_kv_heads={n_kv_heads}", diff)
    assert diff < TOL


@pytest.mark.parametrize("T_past, T", [(0, 1), (0, 5), (4, 1), (3, 4)])
def test_causal_mask_after_cache_is_the_last_rows_of_the_causal_mask(T_past, T):
    """The rows of the new queries; None for one new query, whose row would have no False in it."""
    rows = causal_mask(T_past + T)[T_past:]  # (T, T_past + T)
    mask = causal_mask_after_cache(T_past, T)
    if T == 1:
        assert mask is None and bool(rows.all())
    else:
        assert torch.equal(mask, rows)


@pytest.mark.parametrize(
    "T_past, T, wrong", [(-1, 2, "T_past must be an int >= 0"), (2, 0, "T must be a positive int")]
)
def test_causal_mask_after_cache_names_a_bad_length(T_past, T, wrong):
    with pytest.raises(ValueError, match=f"causal_mask_after_cache: {wrong}"):
        causal_mask_after_cache(T_past, T)


def test_cached_rope_tables_are_exactly_apply_rope():
    x = torch.randn(2, 3, 6, 8)
    for interleaved in (False, True):
        for T_past in (0, 5):
            positions = torch.arange(T_past, T_past + 6)
            assert torch.equal(
                apply_rope_cached(x, T_past, 500.0, interleaved), apply_rope(x, positions, 500.0, interleaved)
            )


@pytest.mark.parametrize("dropout_free_training", [False, True])
def test_fast_gpt_equals_readable_outputs_and_gradients(dropout_free_training):
    gpt = randomise(GPT(GPTConfig(vocab_size=20, context_length=16, d_model=32, n_heads=4, n_layers=2)))
    gpt.train(dropout_free_training)
    ids = torch.randint(0, 20, (3, 12))
    assert_paths_equal(gpt, lambda model: model(ids), "GPT")


def test_fast_transformer_equals_readable_with_padding_and_fully_masked_rows():
    config = TransformerConfig(
        src_vocab_size=15, tgt_vocab_size=15, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64,
        dropout=0.0, norm_first=True,
    )  # fmt: skip
    model = randomise(Transformer(config))
    src, tgt = torch.randint(1, 15, (3, 7)), torch.randint(1, 15, (3, 5))
    src[0, 4:] = 0  # padding in the source: masked keys for the encoder and the cross-attention
    src[1, :] = 0  # a source of padding only: every key blocked, fully masked rows everywhere it is read
    assert_paths_equal(model, lambda m: m(src, tgt), "Transformer")


@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_fast_llama_equals_readable_outputs_gradients_and_generation(n_kv_heads):
    config = LlamaConfig(vocab_size=30, d_model=32, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads, d_ff=48)
    model = randomise(Llama(config))
    ids = torch.randint(0, 30, (2, 9))
    assert_paths_equal(model, lambda m: m(ids), f"Llama n_kv_heads={n_kv_heads}")
    prompt = ids[:, :3]
    readable = generate(model, prompt, 10, temperature=0)
    fast = generate(use_fast_path(model), prompt, 10, temperature=0)
    assert torch.equal(readable, fast)


def test_fast_gpt_generation_with_the_cache_equals_readable():
    gpt = randomise(GPT(GPTConfig(vocab_size=20, context_length=24, d_model=32, n_heads=4, n_layers=2)))
    prompt = torch.randint(0, 20, (2, 4))
    readable = generate(gpt, prompt, 12, temperature=0)
    fast = generate(use_fast_path(gpt), prompt, 12, temperature=0)
    assert torch.equal(readable, fast)


def test_use_fast_path_switches_every_part_and_readable_path_switches_back():
    gpt = GPT(GPTConfig(vocab_size=20, context_length=16, d_model=32, n_heads=4, n_layers=2))
    llama = Llama(LlamaConfig(vocab_size=30, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48))
    for model in (gpt, llama):
        assert use_fused_attention(model) is model  # the earlier name: the same whole-model switch
        attention = [m for m in model.modules() if isinstance(m, MultiHeadAttention | GroupedQueryAttention)]
        norms = [m for m in model.modules() if isinstance(m, LayerNorm | RMSNorm | TokenEmbedding)]
        mlps = [m for m in model.modules() if isinstance(m, FeedForward | SwiGLU)]
        assert attention and norms and len(mlps) == 2
        assert model is llama or any(isinstance(m, TokenEmbedding) for m in norms)  # GPT's embedding switches too
        assert all(not m.need_weights for m in attention) and all(m.fused for m in norms)
        assert not any(m.keep_hidden for m in mlps)
        with readable_path(model):
            assert all(m.need_weights for m in attention) and not any(m.fused for m in norms)
            assert all(m.keep_hidden for m in mlps)
        assert all(not m.need_weights for m in attention) and all(m.fused for m in norms)
        assert not any(m.keep_hidden for m in mlps)
        use_fast_path(model, enabled=False)
        assert all(m.need_weights for m in attention) and not any(m.fused for m in norms)
        assert all(m.keep_hidden for m in mlps)
    with pytest.raises(ValueError, match="use_fast_path: model must be a torch.nn.Module"):
        use_fast_path("gpt")


def test_readable_path_keeps_attention_weights_for_pictures():
    gpt = use_fast_path(GPT(GPTConfig(vocab_size=20, context_length=16, d_model=32, n_heads=4, n_layers=2)))
    ids = torch.randint(0, 20, (1, 6))
    gpt(ids)
    assert gpt.blocks[0].self_attn.attention_weights is None
    assert gpt.blocks[0].ff.last_hidden is None  # the fast path lets the MLP's activations go
    with readable_path(gpt):
        gpt(ids)
    assert gpt.blocks[0].self_attn.attention_weights.shape == (1, 4, 6, 6)
    assert gpt.blocks[0].ff.last_hidden.shape == (1, 6, 128)  # (B, T, d_ff)
    gpt(ids)  # the fast path again: the pictures' tensors stay as the readable pass left them
    assert gpt.blocks[0].ff.last_hidden.shape == (1, 6, 128)
