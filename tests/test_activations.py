"""Proof: the activation record holds what the model computed, for GPT, Transformer and Llama.

Every check recomputes one step from the *recorded* tensors before it and compares with the
recorded tensor after it (or with the model's own outputs: its logits, its ``attention_weights``),
so the record cannot hold anything the model did not compute. float64 throughout.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.activations import (
    ATTENTION_STAGES,
    ActivationRecord,
    attention_stages,
    recording,
    recording_modules,
    run_with_record,
)
from course_lib.attention import scaled_dot_product_attention
from course_lib.generation import generate
from course_lib.llama import Llama, LlamaConfig
from course_lib.masks import causal_mask
from course_lib.models import GPT, GPTConfig, Transformer, TransformerConfig
from course_lib.multihead import MultiHeadAttention, merge_heads, use_fused_attention
from course_lib.normalization import layer_norm, rms_norm
from course_lib.rotary import apply_rope

TOL = 1e-12


def close(actual, expected, tol=TOL):
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    torch.testing.assert_close(actual, expected, atol=tol, rtol=0)


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=31, context_length=16, d_model=24, n_heads=3, n_layers=2)
    return GPT(config).double().eval()


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=37, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, context_length=32)
    return Llama(config).double().eval()


@pytest.fixture(scope="module")
def transformer():
    torch.manual_seed(2)
    config = TransformerConfig(
        src_vocab_size=23, tgt_vocab_size=29, d_model=16, n_heads=2, n_encoder_layers=2, n_decoder_layers=2, d_ff=32
    )
    return Transformer(config).double().eval()


def ids(vocab_size, T, B=2, seed=0):
    return torch.randint(4, vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))  # (B, T)


def check_attention(part: ActivationRecord, module, query_input, mask=None):
    """One attention module: q/k/v from its weights, every stage from the one before, output from merged."""
    B = query_input.shape[0]
    n_heads, d_head = part["q"].shape[1], part["q"].shape[-1]
    kv_head = part["kv_head"]
    keys = part["k"][:, kv_head]  # (B, n_heads, T_k, d_head): the key/value head each query head reads
    values = part["v"][:, kv_head]  # (B, n_heads, T_k, d_head)
    close(part["scores"], part["q"] @ keys.transpose(-2, -1))
    close(part["scaled"], part["scores"] / math.sqrt(d_head))
    expected_masked = part["scaled"] if mask is None else part["scaled"].masked_fill(~mask, float("-inf"))
    close(part["masked"], expected_masked)
    close(part["weights"], torch.softmax(part["masked"], dim=-1))
    close(part["weights"].sum(dim=-1), torch.ones(B, n_heads, part["q"].shape[2], dtype=torch.float64))
    close(part["weights"], module.attention_weights)  # what the module itself kept
    close(part["heads"], part["weights"] @ values)
    close(part["merged"], merge_heads(part["heads"]))
    close(part["output"], module.w_o(part["merged"]))
    if "q_before_rope" not in part:  # without RoPE, q is the projection of the input split into heads
        q = module.w_q(query_input).view(B, -1, n_heads, d_head).transpose(1, 2)  # (B, n_heads, T, d_head)
        close(part["q"], q)


# ------------------------------------------------------------------------------------------ GPT


def test_gpt_record_is_what_the_model_computed(gpt):
    token_ids = ids(31, 7)
    with torch.no_grad():
        logits = gpt(token_ids)  # (B, T, V)
    record = run_with_record(gpt, token_ids)
    close(record["logits"], logits)
    # embeddings: token + position, the residual stream entering block 0
    close(record["token_embeddings"], gpt.token_embedding.weight[token_ids])
    close(record["position_embeddings"], gpt.position_embedding.weight[:7])
    close(record["embeddings"], record["token_embeddings"] + record["position_embeddings"])
    close(record["blocks.0.residual_in"], record["embeddings"])
    mask = causal_mask(7)
    for i, block in enumerate(gpt.blocks):
        layer = record.part(f"blocks.{i}")
        close(layer["norm1.output"], layer_norm(layer["residual_in"], block.norm1.weight, block.norm1.bias))
        check_attention(layer.part("self_attn"), block.self_attn, layer["norm1.output"], mask)
        close(layer["residual_after_self_attn"], layer["residual_in"] + layer["self_attn.output"])
        close(layer["norm2.output"], block.norm2(layer["residual_after_self_attn"]))
        close(layer["ff.pre_activation"], block.ff.linear1(layer["norm2.output"]))
        close(layer["ff.hidden"], F.gelu(layer["ff.pre_activation"]))
        close(layer["ff.output"], block.ff.linear2(layer["ff.hidden"]))
        close(layer["residual_out"], layer["residual_after_self_attn"] + layer["ff.output"])
        if i + 1 < len(gpt.blocks):
            close(record[f"blocks.{i + 1}.residual_in"], layer["residual_out"])
    # last residual stream -> final norm -> output layer = the logits
    close(record["final_norm.output"], gpt.final_norm(record["blocks.1.residual_out"]))
    close(gpt.lm_head(record["final_norm.output"]), logits)


def test_gpt_record_of_a_cached_step(gpt):
    token_ids = ids(31, 6, B=1)
    cache = gpt.new_cache()
    with torch.no_grad():
        gpt(token_ids[:, :5], cache=cache)
        with recording(gpt) as record:
            step_logits = gpt(token_ids[:, 5:], cache=cache)  # (1, 1, V)
        full = gpt(token_ids)  # (1, 6, V)
    close(step_logits, full[:, 5:])
    close(record["logits"], step_logits)
    close(record["position_embeddings"], gpt.position_embedding.weight[5:6])
    assert record["blocks.0.self_attn.weights"].shape == (1, 3, 1, 6)  # one new query, six keys
    assert record["blocks.0.self_attn.k"].shape == (1, 3, 6, 8)  # cached keys included


def test_recording_leaves_generation_unchanged(gpt):
    prompt = ids(31, 3, B=1)
    before = generate(gpt, prompt, 6, generator=torch.Generator().manual_seed(3))
    run_with_record(gpt, prompt)
    assert all(module.recorder is None for _, module in recording_modules(gpt))
    after = generate(gpt, prompt, 6, generator=torch.Generator().manual_seed(3))
    uncached = generate(gpt, prompt, 6, generator=torch.Generator().manual_seed(3), use_cache=False)
    assert torch.equal(before, after) and torch.equal(after, uncached)


def test_fused_attention_is_switched_to_the_readable_path_and_back(gpt):
    token_ids = ids(31, 5)
    use_fused_attention(gpt)
    try:
        record = run_with_record(gpt, token_ids)
        assert all(not block.self_attn.need_weights for block in gpt.blocks)  # fused again afterwards
    finally:
        use_fused_attention(gpt, enabled=False)
    with torch.no_grad():
        close(record["logits"], gpt(token_ids))
        close(record["blocks.1.self_attn.weights"], gpt.blocks[1].self_attn.attention_weights)


def test_a_failing_forward_pass_still_turns_recording_off(gpt):
    with pytest.raises(ValueError, match="context_length"):
        run_with_record(gpt, ids(31, 40))
    assert all(module.recorder is None for _, module in recording_modules(gpt))


# ------------------------------------------------------------------------------------------ Llama


def test_llama_record_is_what_the_model_computed(llama):
    token_ids = ids(37, 9)
    with torch.no_grad():
        logits = llama(token_ids)
    record = run_with_record(llama, token_ids)
    close(record["logits"], logits)
    close(record["token_embeddings"], llama.token_embedding.weight[token_ids])
    assert "position_embeddings" not in record  # Llama has no position table
    close(record["blocks.0.residual_in"], record["token_embeddings"])
    positions = torch.arange(9)
    for i, block in enumerate(llama.blocks):
        layer = record.part(f"blocks.{i}")
        attention = layer.part("self_attn")
        # grouped-query attention: k and v per key/value head, and which one each query head reads
        assert attention["q"].shape == (2, 4, 9, 8)
        assert attention["k"].shape == attention["v"].shape == (2, 2, 9, 8)
        assert attention["kv_head"].tolist() == [0, 0, 1, 1]
        close(layer["attn_norm.output"], rms_norm(layer["residual_in"], block.attn_norm.weight, block.attn_norm.eps))
        normed = layer["attn_norm.output"]
        q_before = block.self_attn.w_q(normed).view(2, 9, 4, 8).transpose(1, 2)  # (B, n_heads, T, d_head)
        close(attention["q_before_rope"], q_before)
        close(attention["q"], apply_rope(attention["q_before_rope"], positions))  # q after RoPE
        close(attention["k"], apply_rope(attention["k_before_rope"], positions))
        check_attention(attention, block.self_attn, normed, causal_mask(9))
        close(layer["residual_after_self_attn"], layer["residual_in"] + attention["output"])
        mlp = layer.part("mlp")
        close(mlp["gate"], F.silu(block.mlp.gate(layer["mlp_norm.output"])))
        close(mlp["up"], block.mlp.up(layer["mlp_norm.output"]))
        close(mlp["hidden"], mlp["gate"] * mlp["up"])
        close(mlp["output"], block.mlp.down(mlp["hidden"]))
        close(layer["residual_out"], layer["residual_after_self_attn"] + mlp["output"])
    close(llama.lm_head(llama.final_norm(record["blocks.1.residual_out"])), logits)


def test_llama_cached_generation_is_unaffected(llama):
    prompt = ids(37, 4, B=1)
    before = generate(llama, prompt, 5, temperature=0)
    record = run_with_record(llama, prompt)
    after = generate(llama, prompt, 5, temperature=0)
    assert torch.equal(before, after)
    assert before[0, 4] == record["logits"][0, -1].argmax()  # the first generated token is the record's argmax


# ------------------------------------------------------------------------------------------ Transformer


def test_transformer_record_has_encoder_and_both_decoder_attentions(transformer):
    src = ids(23, 6)
    src[0, -2:] = transformer.config.pad_id  # padding in the source: the cross-attention must skip it
    tgt = ids(29, 4, seed=1)
    with torch.no_grad():
        logits = transformer(src, tgt)
    record = run_with_record(transformer, src, tgt)
    close(record["logits"], logits)
    src_mask = src != transformer.config.pad_id  # (B, S), True = may attend
    for i, layer in enumerate(transformer.encoder.layers):
        part = record.part(f"encoder.layers.{i}")
        check_attention(part.part("self_attn"), layer.self_attn, part["residual_in"], src_mask[:, None, None, :])
        post_norm = layer.norm1(part["residual_in"] + part["self_attn.output"])  # the paper's post-norm
        close(part["residual_after_self_attn"], post_norm)
    close(record["memory"], record["encoder.norm.output"])
    for i, layer in enumerate(transformer.decoder.layers):
        part = record.part(f"decoder.layers.{i}")
        check_attention(part.part("self_attn"), layer.self_attn, part["residual_in"], causal_mask(4))
        cross = part.part("cross_attn")
        assert cross["weights"].shape == (2, 2, 4, 6)  # target queries x source keys
        assert torch.all(cross["weights"][0, :, :, -2:] == 0)  # padded source tokens get no weight
        check_attention(cross, layer.cross_attn, part["residual_after_self_attn"], src_mask[:, None, None, :])
        close(cross["k"], layer.cross_attn.w_k(record["memory"]).view(2, 6, 2, 8).transpose(1, 2))
    final = record["decoder.layers.1.residual_out"]
    close(transformer.output(transformer.decoder.norm(final)), logits)


# ------------------------------------------------------------------------------------------ the record itself


def test_record_helpers(gpt):
    record = run_with_record(gpt, ids(31, 5))
    weights = record.stack("blocks.{}.self_attn.weights")  # (n_layers, B, n_heads, T, T)
    assert weights.shape == (2, 2, 3, 5, 5)
    assert torch.equal(weights[1], record["blocks.1.self_attn.weights"])
    part = record.part("blocks.1.self_attn")
    assert set(ATTENTION_STAGES) <= set(part) and torch.equal(part["q"], record["blocks.1.self_attn.q"])
    assert record.shapes()["logits"] == (2, 5, 31)
    assert "logits" in record and "nothing" not in record
    with pytest.raises(KeyError, match="did you mean blocks.0.self_attn.weights"):
        record["blocks.0.self_attn.weight"]
    with pytest.raises(KeyError, match="ActivationRecord.part"):
        record.part("blocks.7")
    with pytest.raises(ValueError, match="must contain"):
        record.stack("blocks.0.self_attn.weights")
    assert "ActivationRecord(" in repr(record)


def test_recording_refuses_what_cannot_record(gpt):
    with pytest.raises(ValueError, match="no part that can record"):
        with recording(torch.nn.Linear(2, 2)):
            pass
    with pytest.raises(ValueError, match="already recording"):
        with recording(gpt), recording(gpt):
            pass
    assert all(module.recorder is None for _, module in recording_modules(gpt))


def test_attention_stages_of_plain_tensors_are_the_functions_own():
    generator = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 5, 4, generator=generator, dtype=torch.float64) for _ in range(3))
    mask = causal_mask(5)
    stages = attention_stages(q, k, v, mask)
    output, weights = scaled_dot_product_attention(q, k, v, mask)
    close(stages["weights"], weights)
    close(stages["heads"], output)
    close(stages["scaled"], q @ k.transpose(-2, -1) / 2.0)
    assert torch.isneginf(stages["masked"][:, 0, 1:]).all()


def test_a_single_module_records_with_short_names():
    torch.manual_seed(6)
    attention = MultiHeadAttention(8, 2).double().eval()
    x = torch.randn(1, 4, 8, dtype=torch.float64)
    record = run_with_record(attention, x, x, x)
    assert {"q", "k", "v", "scores", "weights", "heads", "merged", "output"} <= set(record)
    check_attention(record, attention, x)
