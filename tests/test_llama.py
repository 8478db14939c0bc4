"""Proof: the modern decoder parts (RMSNorm, RoPE, SwiGLU, grouped-query attention) and the whole
``Llama`` compute what Hugging Face's ``LlamaForCausalLM`` computes (small random configs, nothing
downloaded), and the fast paths equal the readable ones.

Precision floors of the reference (measured, printed with ``pytest -s``):
* Even in a float64 model, Hugging Face computes three steps in float32: RoPE's angles,
  every ``LlamaRMSNorm`` (it casts its input to float32), and the softmax of the "eager"
  attention. A stock float64 ``LlamaForCausalLM`` therefore agrees with course_lib's float64
  ``Llama`` to about 1e-6 on these configs, not 1e-15.
* With those three steps made float64 (float64 angles and norms patched into the Hugging Face
  model, and its "sdpa" attention, whose softmax stays in float64) the two agree to 1e-12:
  the rest is float64 rounding.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import max_abs_diff, report

transformers = pytest.importorskip("transformers")
from transformers.models.llama import modeling_llama  # noqa: E402

from course_lib import multihead  # noqa: E402
from course_lib.feedforward import SwiGLU  # noqa: E402
from course_lib.generation import generate, next_token_probs  # noqa: E402
from course_lib.llama import Llama, LlamaBlock, LlamaConfig  # noqa: E402
from course_lib.masks import causal_mask  # noqa: E402
from course_lib.multihead import (  # noqa: E402
    GroupedQueryAttention,
    KVCache,
    MultiHeadAttention,
    repeat_kv_heads,
    use_fused_attention,
)
from course_lib.normalization import RMSNorm, layer_norm, rms_norm  # noqa: E402
from course_lib.pretrained import llama_config_from_hf, load_llama  # noqa: E402
from course_lib.rotary import (  # noqa: E402
    apply_rope,
    rope_angles,
    rope_frequencies,
    rotate_half,
    rotate_interleaved,
)

TOL = 1e-12  # float64, same computation up to rounding
HF_FLOAT32_STEPS_RTOL = 1e-5  # relative to the logits' size: float32 (or Hugging Face's float32 steps in float64)

VOCAB = 97


# ---------------------------------------------------------------------------------------------
# Helpers: small random Hugging Face Llamas, and exact float64 RoPE angles for them
# ---------------------------------------------------------------------------------------------


def hf_config(n_heads=4, n_kv_heads=2, tie=False, attn="eager", **overrides):
    settings = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=n_heads, num_key_value_heads=n_kv_heads, max_position_embeddings=64,
        rms_norm_eps=1e-5, tie_word_embeddings=tie, rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        bos_token_id=None, eos_token_id=None, pad_token_id=None, attn_implementation=attn,
    )  # fmt: skip
    settings.update(overrides)
    return transformers.LlamaConfig(**settings)


def random_hf_llama(config, dtype=torch.float64, seed=0):
    """A LlamaForCausalLM with every weight drawn away from its default (norms away from ones)."""
    torch.manual_seed(seed)
    model = modeling_llama.LlamaForCausalLM(config).to(dtype).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.copy_(1.0 + 0.2 * torch.randn_like(parameter))
            else:
                parameter.normal_(0.0, 0.15)
    return model


def reference_cos_sin(position_ids, d_head, base):
    """Hugging Face's (cos, sin) layout, from the definition, in float64."""
    inverse_frequency = base ** -(torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)  # (d_head/2,)
    angles = position_ids.to(torch.float64)[..., None] * inverse_frequency  # (..., T, d_head/2)
    angles = torch.cat([angles, angles], dim=-1)  # (..., T, d_head)
    return angles.cos(), angles.sin()


def use_float64_rope_angles(hf_model):
    """Replace Hugging Face's float32 RoPE angles by float64 ones (only the precision changes)."""
    config = hf_model.config
    d_head = config.hidden_size // config.num_attention_heads
    base = config.rope_parameters["rope_theta"]

    def forward(x, position_ids):
        cos, sin = reference_cos_sin(position_ids, d_head, base)
        return cos.to(x.dtype), sin.to(x.dtype)

    hf_model.model.rotary_emb.forward = forward
    return hf_model


def use_float64_rms_norms(hf_model):
    """Replace LlamaRMSNorm's cast to float32 by a computation in the input's dtype."""
    for module in hf_model.modules():
        if isinstance(module, modeling_llama.LlamaRMSNorm):
            module.forward = lambda h, m=module: (
                m.weight * h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + m.variance_epsilon)
            )
    return hf_model


# ---------------------------------------------------------------------------------------------
# RMSNorm, and layer norm in half precision
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 10), (2, 3, 16), (2, 3, 5, 7)])
def test_rms_norm_equals_f_rms_norm_and_nn_rms_norm(shape):
    x = torch.randn(*shape) * 3 + 1
    weight = torch.randn(shape[-1])
    for eps in (1e-6, 1e-5, 0.1):
        diff = max_abs_diff(rms_norm(x, weight, eps), F.rms_norm(x, (shape[-1],), weight, eps))
        report(f"rms_norm vs F.rms_norm, {shape}, eps={eps}", diff)
        assert diff < TOL
    ours, theirs = RMSNorm(shape[-1], eps=1e-5), torch.nn.RMSNorm(shape[-1], eps=1e-5)
    with torch.no_grad():
        ours.weight.copy_(weight)
        theirs.weight.copy_(weight)
    diff = max_abs_diff(ours(x), theirs(x))
    report(f"RMSNorm vs nn.RMSNorm, {shape}", diff)
    assert diff < TOL


def test_rms_norm_equals_llama_rms_norm_and_keeps_no_mean_or_bias():
    """LlamaRMSNorm casts its input to float32 even in a float64 model: that sets the floor."""
    theirs = modeling_llama.LlamaRMSNorm(16, eps=1e-6).double()
    ours = RMSNorm(16)
    with torch.no_grad():
        theirs.weight.normal_()
        ours.weight.copy_(theirs.weight)
    x = torch.randn(3, 5, 16) + 4.0  # a large mean: RMSNorm must not remove it
    diff = max_abs_diff(ours(x), theirs(x))
    report("RMSNorm vs LlamaRMSNorm (which computes in float32), float64", diff)
    assert diff < 1e-6 * theirs(x).abs().max().item()
    ours.float(), theirs.float()
    diff32 = max_abs_diff(ours(x.float()), theirs(x.float()))
    report("RMSNorm vs LlamaRMSNorm, float32", diff32)
    assert diff32 < 1e-6 * theirs(x.float()).abs().max().item()
    assert [name for name, _ in ours.named_parameters()] == ["weight"]
    assert torch.equal(rms_norm(torch.zeros(2, 8), torch.ones(8)), torch.zeros(2, 8)), "a zero token stays zero"
    assert torch.autograd.gradcheck(
        lambda x, w: rms_norm(x, w), (torch.randn(3, 6, requires_grad=True), torch.randn(6, requires_grad=True))
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rms_norm_in_half_precision_with_large_values(dtype):
    x32 = torch.randn(4, 7, 64, dtype=torch.float32) * 2000  # squares reach 1e8: float16 overflows at 65504
    weight32 = torch.rand(64, dtype=torch.float32) + 0.5
    x, weight = x32.to(dtype), weight32.to(dtype)
    expected = F.rms_norm(x.float(), (64,), weight.float(), 1e-6)  # float32 reference on the same inputs
    got = rms_norm(x, weight)
    assert got.dtype == dtype and torch.isfinite(got).all()
    diff = max_abs_diff(got.float(), expected)
    report(f"rms_norm {dtype} with |x| up to ~8000 vs float32", diff)
    assert diff <= 2 * torch.finfo(dtype).eps * expected.abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_layer_norm_in_half_precision_when_x_minus_mean_exceeds_256(dtype):
    x32 = torch.randn(3, 5, 32, dtype=torch.float32) * 400 + 50  # |x - mean| often > 256
    weight32, bias32 = torch.rand(32, dtype=torch.float32) + 0.5, torch.randn(32, dtype=torch.float32)
    x, weight, bias = x32.to(dtype), weight32.to(dtype), bias32.to(dtype)
    expected = F.layer_norm(x.float(), (32,), weight.float(), bias.float())
    got = layer_norm(x, weight, bias)
    assert got.dtype == dtype and torch.isfinite(got).all()
    assert got.float().std() > 0.5, "the normalised values must not collapse to zero"
    diff = max_abs_diff(got.float(), expected)
    report(f"layer_norm {dtype} with |x - mean| > 256 vs F.layer_norm float32", diff)
    assert diff <= 2 * torch.finfo(dtype).eps * expected.abs().max().item()
    assert max_abs_diff(layer_norm(x, weight, bias).float(), F.layer_norm(x, (32,), weight, bias).float()) <= (
        2 * torch.finfo(dtype).eps * expected.abs().max().item()
    )


def test_norms_reject_integer_input_and_dtype_mismatch():
    with pytest.raises(ValueError, match="layer_norm: x must be a floating-point tensor"):
        layer_norm(torch.ones(2, 4, dtype=torch.long), torch.ones(4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"layer_norm: weight must have the dtype of x \(torch.float32\)"):
        layer_norm(torch.ones(2, 4, dtype=torch.float32), torch.ones(4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"layer_norm: bias must have the dtype of x"):
        layer_norm(torch.ones(2, 4), torch.ones(4), torch.zeros(4, dtype=torch.float16))
    with pytest.raises(ValueError, match="rms_norm: x must be a floating-point tensor"):
        rms_norm(torch.ones(2, 4, dtype=torch.int32), torch.ones(4))
    with pytest.raises(ValueError, match="rms_norm: weight must have the dtype of x"):
        rms_norm(torch.ones(2, 4, dtype=torch.float16), torch.ones(4))
    with pytest.raises(ValueError, match=r"rms_norm: weight must be \(d,\) with d=4 .* got \(5\)"):
        rms_norm(torch.ones(2, 4), torch.ones(5))
    with pytest.raises(ValueError, match=r"RMSNorm.forward: x must be \(..., d_model\) with d_model=8, got \(2, 4\)"):
        RMSNorm(8)(torch.ones(2, 4))
    with pytest.raises(ValueError, match="rms_norm: eps must be > 0"):
        rms_norm(torch.ones(2, 4), torch.ones(4), eps=0.0)


# ---------------------------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d_head", [8, 16, 64])
def test_apply_rope_equals_hugging_face_rotation(d_head):
    """Same (cos, sin) fed to Hugging Face's apply_rotary_pos_emb: equal to rounding."""
    B, n_heads, T, base = 2, 3, 11, 10000.0
    q, k = torch.randn(B, n_heads, T, d_head), torch.randn(B, 1, T, d_head)
    positions = torch.arange(5, 5 + T)
    cos, sin = reference_cos_sin(positions[None, :], d_head, base)  # (1, T, d_head)
    q_theirs, k_theirs = modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)
    diff = max(max_abs_diff(apply_rope(q, positions, base), q_theirs), max_abs_diff(apply_rope(k, positions), k_theirs))
    report(f"apply_rope vs apply_rotary_pos_emb (float64 angles), d_head={d_head}", diff)
    assert diff < TOL


def test_apply_rope_equals_llama_rotary_embedding_up_to_its_float32_angles():
    """Hugging Face's own LlamaRotaryEmbedding computes the angles in float32: its rounding grows
    with the position (about 6e-8 radians per unit of position), which sets the floor here."""
    config = hf_config(hidden_size=64, num_attention_heads=4)  # d_head 16, base 500
    rotary = modeling_llama.LlamaRotaryEmbedding(config)
    q, k = torch.randn(2, 4, 64, 16), torch.randn(2, 2, 64, 16)
    positions = torch.arange(64)
    cos, sin = rotary(q, positions[None, :])  # float32 angles, cast to float64
    q_theirs, k_theirs = modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)
    diff = max(
        max_abs_diff(apply_rope(q, positions, 500.0), q_theirs), max_abs_diff(apply_rope(k, positions, 500.0), k_theirs)
    )
    report("apply_rope vs LlamaRotaryEmbedding + apply_rotary_pos_emb (float32 angles), positions 0..63", diff)
    assert diff < 64 * 6e-8 * 10  # position * float32 rounding * |x| (< 5)
    ours_float32 = apply_rope(q.float(), positions, 500.0)
    theirs_float32 = modeling_llama.apply_rotary_pos_emb(q.float(), k.float(), cos.float(), sin.float())[0]
    diff32 = max_abs_diff(ours_float32, theirs_float32)
    report("apply_rope vs Hugging Face, float32 tensors, positions 0..63", diff32)
    assert diff32 < 1e-5


def test_rope_helpers_show_the_pieces():
    assert torch.allclose(rope_frequencies(8, 10000.0), torch.tensor([1.0, 0.1, 0.01, 0.001]))
    angles = rope_angles(torch.arange(3), 8, 10000.0)
    assert angles.shape == (3, 4) and angles.dtype == torch.float64
    assert torch.equal(angles[2], 2 * rope_frequencies(8))
    x = torch.arange(1.0, 7.0)  # (1, 2, 3, 4, 5, 6)
    assert torch.equal(rotate_half(x), torch.tensor([-4.0, -5.0, -6.0, 1.0, 2.0, 3.0]))
    assert torch.equal(rotate_interleaved(x), torch.tensor([-2.0, 1.0, -4.0, 3.0, -6.0, 5.0]))
    assert torch.equal(apply_rope(x[None, :], torch.tensor([0])), x[None, :]), "position 0 does not rotate"
    # Position 1, pair 0 (dimensions 0 and 3) turns by exactly 1 radian.
    turned = apply_rope(torch.tensor([[1.0, 0, 0, 0, 0, 0]]), torch.tensor([1]))
    assert torch.allclose(turned[0, [0, 3]], torch.tensor([math.cos(1.0), math.sin(1.0)]), atol=TOL)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotated_dot_product_depends_only_on_the_distance(interleaved):
    d_head = 32
    q, k = torch.randn(d_head), torch.randn(d_head)

    def score(m, n):
        q_m = apply_rope(q[None, :], torch.tensor([m]), interleaved=interleaved)  # (1, d_head)
        k_n = apply_rope(k[None, :], torch.tensor([n]), interleaved=interleaved)  # (1, d_head)
        return (q_m * k_n).sum().item()

    for distance in (0, 1, 5, 17):
        scores = [score(start + distance, start) for start in (0, 3, 40, 1000)]
        assert max(scores) - min(scores) < 1e-9, f"distance {distance}: {scores}"
    assert abs(score(5, 0) - score(0, 5)) > 1e-3, "the score tells before from after"


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotation_keeps_lengths(interleaved):
    x = torch.randn(2, 3, 20, 16)
    rotated = apply_rope(x, torch.arange(100, 120), base=10000.0, interleaved=interleaved)
    assert max_abs_diff(rotated.norm(dim=-1), x.norm(dim=-1)) < TOL
    # Each pair keeps its own length too: RoPE only turns pairs.
    pairs = (lambda t: t.unflatten(-1, (-1, 2))) if interleaved else (lambda t: torch.stack(t.chunk(2, -1), -1))
    assert max_abs_diff(pairs(rotated).norm(dim=-1), pairs(x).norm(dim=-1)) < TOL


def test_interleaved_and_rotate_half_are_the_same_rotation_permuted():
    d_head = 12
    half = torch.arange(d_head // 2)
    to_interleaved = torch.stack([half, half + d_head // 2], dim=-1).flatten()  # 0, 6, 1, 7, ...: pair i -> (2i, 2i+1)
    x = torch.randn(2, 4, 9, d_head)
    positions = torch.arange(3, 12)
    rotate_half_layout = apply_rope(x, positions)
    interleaved_layout = apply_rope(x[..., to_interleaved], positions, interleaved=True)
    diff = max_abs_diff(interleaved_layout, rotate_half_layout[..., to_interleaved])
    report("interleaved RoPE vs rotate-half RoPE with dimensions permuted", diff)
    assert diff < TOL
    assert max_abs_diff(apply_rope(x, positions, interleaved=True), rotate_half_layout) > 1e-3


def test_apply_rope_rejects_bad_inputs():
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match="d_head must be even"):
        apply_rope(torch.randn(2, 5, 7), torch.arange(5))
    with pytest.raises(ValueError, match=r"positions must be \(T,\) with T=5 .* got \(4\)"):
        apply_rope(x, torch.arange(4))
    with pytest.raises(ValueError, match="positions must be an integer tensor"):
        apply_rope(x, torch.arange(5.0))
    with pytest.raises(ValueError, match="positions must be >= 0"):
        apply_rope(x, torch.arange(-1, 4))
    with pytest.raises(ValueError, match=r"positions must be \(T,\) integer positions, got \(1, 5\)"):
        apply_rope(x, torch.arange(5)[None, :])
    with pytest.raises(ValueError, match="base must be a number > 0"):
        apply_rope(x, torch.arange(5), base=0.0)
    with pytest.raises(ValueError, match="d_head must be even"):
        rope_frequencies(7)


# ---------------------------------------------------------------------------------------------
# SwiGLU and grouped-query attention
# ---------------------------------------------------------------------------------------------


def test_swiglu_equals_llama_mlp():
    config = hf_config(hidden_size=24, intermediate_size=40, num_attention_heads=4)
    theirs = modeling_llama.LlamaMLP(config).double()
    ours = SwiGLU(24, 40)
    ours.gate.load_state_dict(theirs.gate_proj.state_dict())
    ours.up.load_state_dict(theirs.up_proj.state_dict())
    ours.down.load_state_dict(theirs.down_proj.state_dict())
    x = torch.randn(3, 7, 24)
    diff = max_abs_diff(ours(x), theirs(x))
    report("SwiGLU vs LlamaMLP", diff)
    assert diff < TOL
    assert ours.gate.bias is None and ours.last_hidden.shape == (3, 7, 40)
    with pytest.raises(ValueError, match=r"SwiGLU.forward: x must be \(..., d_model\) with d_model=24"):
        ours(torch.randn(3, 7, 23))


def test_repeat_kv_heads_gives_query_head_h_kv_head_h_over_group_size():
    kv = torch.randn(2, 3, 5, 4)  # (B, n_kv_heads, T, d_head)
    repeated = repeat_kv_heads(kv, 4)  # (B, 12, T, d_head)
    assert repeated.shape == (2, 12, 5, 4)
    for h in range(12):
        assert torch.equal(repeated[:, h], kv[:, h // 4])
    assert torch.equal(repeated, modeling_llama.repeat_kv(kv, 4))
    assert repeat_kv_heads(kv, 1) is kv


@pytest.fixture
def no_rope(monkeypatch):
    """Switch RoPE off inside GroupedQueryAttention, to compare it with MultiHeadAttention."""
    monkeypatch.setattr(multihead, "apply_rope", lambda x, positions, base, interleaved: x)


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_grouped_query_attention_is_multi_head_attention_with_shared_kv_heads(no_rope, n_kv_heads):
    """Without RoPE, GQA equals MultiHeadAttention whose key/value weights repeat each kv head's rows."""
    B, T, d_model, n_heads = 2, 7, 32, 4
    d_head, group = d_model // n_heads, n_heads // n_kv_heads
    gqa = GroupedQueryAttention(d_model, n_heads, n_kv_heads)
    mha = MultiHeadAttention(d_model, n_heads, bias=False)

    def per_query_head(weight):  # (n_kv_heads * d_head, d_model) -> (n_heads * d_head, d_model)
        return weight.unflatten(0, (n_kv_heads, d_head)).repeat_interleave(group, dim=0).flatten(0, 1)

    with torch.no_grad():
        mha.w_q.weight.copy_(gqa.w_q.weight)
        mha.w_k.weight.copy_(per_query_head(gqa.w_k.weight))
        mha.w_v.weight.copy_(per_query_head(gqa.w_v.weight))
        mha.w_o.weight.copy_(gqa.w_o.weight)
    x = torch.randn(B, T, d_model)
    diff = max(
        max_abs_diff(gqa(x), mha(x, x, x, mask=causal_mask(T))),
        max_abs_diff(gqa.attention_weights, mha.attention_weights),
    )
    report(f"GroupedQueryAttention (no RoPE, n_kv_heads={n_kv_heads}) vs MultiHeadAttention", diff)
    assert diff < TOL
    assert gqa.attention_weights.shape == (B, n_heads, T, T)


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_grouped_query_attention_equals_llama_attention(n_kv_heads):
    config = hf_config(hidden_size=32, num_attention_heads=4, num_key_value_heads=n_kv_heads, attn="sdpa")
    theirs = modeling_llama.LlamaAttention(config, layer_idx=0).double().eval()
    ours = GroupedQueryAttention(32, 4, n_kv_heads, rope_base=500.0)
    for name in ("q", "k", "v", "o"):
        getattr(ours, f"w_{name}").load_state_dict(getattr(theirs, f"{name}_proj").state_dict())
    x = torch.randn(2, 9, 32)
    cos, sin = reference_cos_sin(torch.arange(9)[None, :], 8, 500.0)
    expected, _ = theirs(x, position_embeddings=(cos, sin), attention_mask=None)  # sdpa: causal
    diff = max_abs_diff(ours(x), expected)
    report(f"GroupedQueryAttention vs LlamaAttention, n_kv_heads={n_kv_heads}", diff)
    assert diff < TOL


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_cache_holds_kv_heads_and_chunks_equal_one_pass(fused, n_kv_heads):
    """Feeding the sequence in chunks of several tokens through the cache gives the one-pass output:
    RoPE continues at the cached length and the causal mask is offset for T_q > 1."""
    B, T, d_model, n_heads = 2, 10, 32, 4
    attention = use_fused_attention(GroupedQueryAttention(d_model, n_heads, n_kv_heads), fused)
    x = torch.randn(B, T, d_model)
    full = attention(x)
    cache, pieces, start = KVCache(), [], 0
    for size in (3, 1, 4, 2):
        pieces.append(attention(x[:, start : start + size], kv_cache=cache))
        start += size
        assert cache.keys.shape == (B, n_kv_heads, start, d_model // n_heads)
        assert cache.values.shape == (B, n_kv_heads, start, d_model // n_heads)
    diff = max_abs_diff(torch.cat(pieces, dim=1), full)
    report(f"GQA cached in chunks vs one pass, n_kv_heads={n_kv_heads}, fused={fused}", diff)
    assert diff < TOL
    if not fused:
        assert attention.attention_weights.shape == (B, n_heads, 2, T)
        assert (attention.attention_weights[:, :, 0, 9] == 0).all(), "query 8 may not see key 9"


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_fused_grouped_query_attention_equals_readable_forward_and_backward(n_kv_heads):
    B, T, d_model, n_heads = 3, 6, 32, 4
    attention = GroupedQueryAttention(d_model, n_heads, n_kv_heads)
    x = torch.randn(B, T, d_model, requires_grad=True)
    outputs, gradients = [], []
    for fused in (False, True):
        use_fused_attention(attention, fused)
        x.grad = None
        attention.zero_grad()
        out = attention(x)
        (out * torch.linspace(-1, 1, d_model)).sum().backward()
        outputs.append(out.detach())
        gradients.append([x.grad.clone()] + [p.grad.clone() for p in attention.parameters()])
    assert attention.attention_weights is None
    diff = max_abs_diff(*outputs)
    grad_diff = max(max_abs_diff(a, b) for a, b in zip(*gradients, strict=True))
    report(
        f"fused vs readable GroupedQueryAttention, n_kv_heads={n_kv_heads}: output / gradients", max(diff, grad_diff)
    )
    assert diff < TOL and grad_diff < TOL


def test_grouped_query_attention_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_kv_heads=3 must divide n_heads=4"):
        GroupedQueryAttention(32, 4, 3)
    with pytest.raises(ValueError, match="d_model=30 must be divisible by n_heads=4"):
        GroupedQueryAttention(30, 4, 2)
    with pytest.raises(ValueError, match="d_head = d_model // n_heads = 5 must be even"):
        GroupedQueryAttention(20, 4, 2)
    with pytest.raises(ValueError, match="n_kv_heads must be a positive int"):
        GroupedQueryAttention(32, 4, 0)
    with pytest.raises(ValueError, match="rope_base must be a number > 0"):
        GroupedQueryAttention(32, 4, 2, rope_base=-1.0)
    attention = GroupedQueryAttention(32, 4, 2)
    with pytest.raises(ValueError, match=r"x must be \(B, T, d_model\) with d_model=32, got \(2, 5, 16\)"):
        attention(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match="static=False"):
        attention(torch.randn(2, 5, 32), kv_cache=KVCache(static=True))
    with pytest.raises(ValueError, match="n_repeats must be a positive int"):
        repeat_kv_heads(torch.randn(1, 2, 3, 4), 0)


# ---------------------------------------------------------------------------------------------
# The whole model against LlamaForCausalLM
# ---------------------------------------------------------------------------------------------

MODEL_CASES = {  # name: (n_heads, n_kv_heads, tied output)
    "MHA, untied": (4, 4, False),
    "GQA 4q/2kv, untied": (4, 2, False),
    "GQA 4q/2kv, tied": (4, 2, True),
    "MQA, tied": (4, 1, True),
}


@pytest.mark.parametrize("case", MODEL_CASES)
def test_llama_logits_equal_llama_for_causal_lm(case):
    n_heads, n_kv_heads, tie = MODEL_CASES[case]
    ids = torch.randint(0, VOCAB, (3, 40))
    for dtype in (torch.float64, torch.float32):
        hf_model = random_hf_llama(hf_config(n_heads, n_kv_heads, tie), dtype)
        ours = load_llama(hf_model.state_dict(), llama_config_from_hf(hf_model.config))
        assert ours.config.tie_weights == tie and (ours.lm_head.weight is ours.token_embedding.weight) == tie
        with torch.no_grad():
            logits, theirs = ours(ids), hf_model(ids).logits
        diff, scale = max_abs_diff(logits, theirs), theirs.abs().max().item()
        report(f"Llama vs LlamaForCausalLM (eager, stock), {case}, {dtype}, logits up to {scale:.1f}", diff)
        assert logits.dtype == dtype and logits.shape == (3, 40, VOCAB)
        assert diff < HF_FLOAT32_STEPS_RTOL * scale


@pytest.mark.parametrize("case", ["GQA 4q/2kv, untied", "MQA, tied"])
def test_llama_equals_llama_for_causal_lm_to_float64_rounding_with_float64_angles(case):
    """With Hugging Face's three float32 steps made float64, the models agree to rounding."""
    n_heads, n_kv_heads, tie = MODEL_CASES[case]
    hf_model = random_hf_llama(hf_config(n_heads, n_kv_heads, tie, attn="sdpa"))
    use_float64_rms_norms(use_float64_rope_angles(hf_model))
    ours = load_llama(hf_model.state_dict(), llama_config_from_hf(hf_model.config))
    ids = torch.randint(0, VOCAB, (3, 40))
    with torch.no_grad():
        diff = max_abs_diff(ours(ids), hf_model(ids).logits)
    report(f"Llama vs LlamaForCausalLM (sdpa, float64 RoPE angles and norms), {case}, float64", diff)
    assert diff < TOL


def test_llama_cache_fused_path_and_blocks():
    config = LlamaConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, context_length=24)
    model = Llama(config).eval()
    ids = torch.randint(0, 50, (2, 12))
    full = model(ids)
    cache, pieces = model.new_cache(), []
    for chunk in ids.split([5, 1, 4, 2], dim=1):
        pieces.append(model(chunk, cache=cache))
    assert len(cache) == 2 and cache[0].keys.shape == (2, 2, 12, 8)
    diff = max_abs_diff(torch.cat(pieces, dim=1), full)
    report("Llama cached in chunks vs one pass", diff)
    assert diff < TOL
    use_fused_attention(model)
    fused_diff = max_abs_diff(model(ids), full)
    report("Llama fused vs readable logits", fused_diff)
    assert fused_diff < TOL
    use_fused_attention(model, enabled=False)
    assert isinstance(model.blocks[0], LlamaBlock)
    assert {name for name, _ in model.blocks[0].named_children()} == {"attn_norm", "self_attn", "mlp_norm", "mlp"}
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())


def test_fused_llama_gradients_equal_readable():
    config = LlamaConfig(vocab_size=30, d_model=32, n_layers=2, n_heads=4, n_kv_heads=1, d_ff=40, context_length=16)
    model = Llama(config)
    ids, targets = torch.randint(0, 30, (2, 10)), torch.randint(0, 30, (2, 10))
    losses, gradients = [], []
    for fused in (False, True):
        use_fused_attention(model, fused)
        model.zero_grad()
        loss = F.cross_entropy(model(ids).flatten(0, 1), targets.flatten())
        loss.backward()
        losses.append(loss.item())
        gradients.append([p.grad.clone() for p in model.parameters()])
    grad_diff = max(max_abs_diff(a, b) for a, b in zip(*gradients, strict=True))
    report("fused vs readable Llama: gradients", grad_diff)
    assert abs(losses[0] - losses[1]) < TOL and grad_diff < TOL


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_equals_hugging_face(use_cache):
    hf_model = random_hf_llama(hf_config(4, 2, tie=True), seed=1)
    ours = load_llama(hf_model.state_dict(), llama_config_from_hf(hf_model.config))
    prompt = torch.randint(0, VOCAB, (2, 6))
    new_tokens = 20
    ours_ids = generate(ours, prompt, max_new_tokens=new_tokens, temperature=0, use_cache=use_cache)
    with torch.no_grad():
        theirs_ids = hf_model.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, do_sample=False,
        )  # fmt: skip
    assert ours_ids.shape == (2, 6 + new_tokens)
    assert torch.equal(ours_ids, theirs_ids)
    assert len(set(ours_ids[0, 6:].tolist())) > 3, "a useful check generates several distinct tokens"
    fused = generate(use_fused_attention(ours), prompt, max_new_tokens=new_tokens, temperature=0, use_cache=use_cache)
    assert torch.equal(fused, ours_ids)


def test_sampling_and_next_token_probs_work_with_llama():
    model = Llama(LlamaConfig(vocab_size=40, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=40))
    prompt = torch.randint(0, 40, (3, 4))
    first = generate(model, prompt, 8, temperature=0.8, top_k=10, generator=torch.Generator().manual_seed(3))
    again = generate(model, prompt, 8, temperature=0.8, top_k=10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and first.shape == (3, 12)
    assert model.training, "generate restores the training mode"
    probs = next_token_probs(model(prompt)[:, -1], top_p=0.9)
    assert torch.allclose(probs.sum(-1), torch.ones(3))
    with pytest.raises(ValueError, match="decoder-only language model"):
        generate(torch.nn.Linear(2, 2), prompt, 3)


def test_weights_keep_their_dtype():
    hf_model = random_hf_llama(hf_config(4, 2, tie=True), dtype=torch.bfloat16)
    ours = load_llama(hf_model.state_dict(), llama_config_from_hf(hf_model.config))
    ids = torch.randint(0, VOCAB, (1, 8))
    logits = ours(ids)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    with torch.no_grad():
        theirs = hf_model(ids).logits
    diff = max_abs_diff(logits.float(), theirs.float())
    report("Llama vs LlamaForCausalLM, bfloat16", diff)
    assert diff < 0.1 * theirs.float().abs().max().item()


# ---------------------------------------------------------------------------------------------
# Configurations and loading: bad inputs are ValueErrors that name the problem
# ---------------------------------------------------------------------------------------------


def test_llama_config_from_hf_reads_every_field_and_refuses_what_it_cannot_compute():
    hf = hf_config(4, 2, tie=True, max_position_embeddings=128, rms_norm_eps=1e-6)
    config = llama_config_from_hf(hf)
    assert config == LlamaConfig(
        vocab_size=VOCAB, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=160, context_length=128,
        rope_base=500.0, norm_eps=1e-6, tie_weights=True,
    )  # fmt: skip
    with pytest.raises(ValueError, match="RoPE scaling 'linear' is not supported"):
        llama_config_from_hf(hf_config(rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}))
    with pytest.raises(ValueError, match="attention_bias=True is not supported"):
        llama_config_from_hf(hf_config(attention_bias=True))
    with pytest.raises(ValueError, match="hidden_act must be 'silu'"):
        llama_config_from_hf(hf_config(hidden_act="gelu"))
    with pytest.raises(ValueError, match="head_dim=32 with 4 heads does not give hidden_size=64"):
        llama_config_from_hf(hf_config(head_dim=32))
    with pytest.raises(ValueError, match="must be a transformers.LlamaConfig"):
        llama_config_from_hf({"hidden_size": 64})


def test_llama_config_and_forward_reject_bad_values():
    base = dict(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, context_length=16)
    with pytest.raises(ValueError, match="n_kv_heads=3 must divide n_heads=4"):
        LlamaConfig(**{**base, "n_kv_heads": 3})
    with pytest.raises(ValueError, match="d_head = d_model // n_heads = 3 must be even"):
        LlamaConfig(**{**base, "d_model": 12})
    with pytest.raises(ValueError, match="d_model=30 must be divisible by n_heads=4"):
        LlamaConfig(**{**base, "d_model": 30})
    with pytest.raises(ValueError, match="context_length must be a positive int"):
        LlamaConfig(**{**base, "context_length": 0})
    with pytest.raises(ValueError, match="rope_base must be a number > 0"):
        LlamaConfig(**{**base, "rope_base": 0})
    with pytest.raises(ValueError, match="tie_weights must be True or False"):
        LlamaConfig(**{**base, "tie_weights": "yes"})
    with pytest.raises(ValueError, match="config must be a LlamaConfig"):
        Llama(base)
    model = Llama(LlamaConfig(**base))
    with pytest.raises(ValueError, match=r"token_ids must be \(B, T\) token ids, got \(5\)"):
        model(torch.arange(5))
    with pytest.raises(ValueError, match="token_ids must be integer ids"):
        model(torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, V\) with V=50, got values from 0 to 50"):
        model(torch.tensor([[0, 50]]))
    with pytest.raises(ValueError, match="sequence of 17 tokens .* exceeds context_length=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    cache = model.new_cache()
    model(torch.zeros(1, 10, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match=r"sequence of 17 tokens \(10 cached"):
        model(torch.zeros(1, 7, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="the cache holds a batch of 1 rows"):
        model(torch.zeros(2, 1, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match=r"cache must be model.new_cache\(\)"):
        model(torch.zeros(1, 2, dtype=torch.long), cache=[KVCache()])


def test_load_llama_names_missing_extra_and_misshaped_tensors():
    hf_model = random_hf_llama(hf_config(4, 2, tie=False))
    config = llama_config_from_hf(hf_model.config)
    state = hf_model.state_dict()
    without = {k: v for k, v in state.items() if k != "model.layers.1.mlp.up_proj.weight"}
    with pytest.raises(ValueError, match="state_dict has no 'model.layers.1.mlp.up_proj.weight'"):
        load_llama(without, config)
    with pytest.raises(ValueError, match="unexpected tensor 'model.layers.2.input_layernorm.weight'"):
        load_llama({**state, "model.layers.2.input_layernorm.weight": torch.ones(64)}, config)
    with pytest.raises(
        ValueError, match=r"model.layers.0.self_attn.k_proj.weight must be \(32, 64\) .* got \(64, 64\)"
    ):
        load_llama({**state, "model.layers.0.self_attn.k_proj.weight": torch.zeros(64, 64)}, config)
    with pytest.raises(ValueError, match=r"state_dict has no 'lm_head.weight'.*tie_weights=True"):
        load_llama({k: v for k, v in state.items() if k != "lm_head.weight"}, config)
    tied_config = llama_config_from_hf(hf_config(4, 2, tie=True))
    with pytest.raises(ValueError, match="lm_head.weight differs from model.embed_tokens.weight"):
        load_llama(state, tied_config)
    with pytest.raises(ValueError, match="the tensors must share one dtype"):
        load_llama({**state, "model.norm.weight": state["model.norm.weight"].float()}, config)
    with pytest.raises(ValueError, match="config must be a course_lib LlamaConfig.*llama_config_from_hf"):
        load_llama(state, hf_model.config)
    with pytest.raises(ValueError, match="state_dict must be a mapping"):
        load_llama([("lm_head.weight", state["lm_head.weight"])], config)
    # What older checkpoints also hold (RoPE's frequencies as a buffer) is skipped.
    with_buffers = {**state, "model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(8)}
    assert isinstance(load_llama(with_buffers, config), Llama)


def test_load_llama_tied_model_accepts_an_equal_lm_head_and_keeps_one_matrix():
    hf_model = random_hf_llama(hf_config(4, 1, tie=True))
    state = hf_model.state_dict()
    assert torch.equal(state["lm_head.weight"], state["model.embed_tokens.weight"])
    for weights in (state, {k: v for k, v in state.items() if k != "lm_head.weight"}):
        ours = load_llama(weights, llama_config_from_hf(hf_model.config))
        assert ours.lm_head.weight is ours.token_embedding.weight
        assert not ours.training
