"""Reliability: every bad input to course_lib's public API is a clear ValueError, every valid
one is accepted, and half precision gives the right answer.

``BAD_INPUTS`` records, for each case, what it did before this was fixed: ``"silent"`` (a wrong
answer, or a bad setting accepted, without complaint), ``"nan"`` (NaN or inf from finite input),
``"obscure"`` (an exception other than ValueError, or a ValueError that does not say what is
wrong, e.g. "not enough values to unpack"), or ``"clear"`` (already right, kept as a regression
test). Now each one must be a ValueError whose message names the function and the argument.

Checkpoints are tested in test_checkpoints.py; the property-based tests are in test_properties.py.
"""

import math

import numpy as np
import pytest
import torch
from conftest import max_abs_diff
from torch import nn

from course_lib import (
    attention,
    decoder,
    embeddings,
    encoder,
    generation,
    masks,
    models,
    multihead,
    positional,
    tiny_gpt,
    training,
)
from course_lib.pretrained import gpt2 as gpt2_loading


def small_gpt(n_layers: int = 2) -> models.GPT:
    config = models.GPTConfig(vocab_size=11, context_length=8, d_model=16, n_heads=2, n_layers=n_layers)
    return models.GPT(config).eval()


def small_seq2seq() -> models.Transformer:
    config = models.TransformerConfig(
        src_vocab_size=11, tgt_vocab_size=11, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32
    )
    return models.Transformer(config).eval()


def fused_attention() -> multihead.MultiHeadAttention:
    return multihead.use_fused_attention(multihead.MultiHeadAttention(8, 2))


def gpt2_state(d_model: int = 8, n_layers: int = 1, V: int = 10, T: int = 6) -> dict[str, torch.Tensor]:
    """A GPT-2 state dict with Hugging Face's names and layouts, random values (no download)."""
    state = {"transformer.wte.weight": torch.randn(V, d_model), "transformer.wpe.weight": torch.randn(T, d_model)}
    for i in range(n_layers):
        block = f"transformer.h.{i}."
        for norm in ("ln_1", "ln_2"):
            state[block + norm + ".weight"], state[block + norm + ".bias"] = torch.ones(d_model), torch.zeros(d_model)
        shapes = {"attn.c_attn": (d_model, 3 * d_model), "attn.c_proj": (d_model, d_model),
                  "mlp.c_fc": (d_model, 4 * d_model), "mlp.c_proj": (4 * d_model, d_model)}  # fmt: skip
        for part, shape in shapes.items():
            state[block + part + ".weight"] = torch.randn(shape) * 0.1  # Conv1D layout (in, out)
            state[block + part + ".bias"] = torch.zeros(shape[1])
    state["transformer.ln_f.weight"], state["transformer.ln_f.bias"] = torch.ones(d_model), torch.zeros(d_model)
    return state


def x3(B=2, T=5, d=8, dtype=None):
    return torch.randn(B, T, d, dtype=dtype)


def regression_batches(step):
    torch.manual_seed(step)
    x = torch.randn(8, 2)
    return x, x.sum(dim=1, keepdim=True)


def mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def train_quietly(**kwargs):
    defaults = dict(model=nn.Linear(2, 1), next_batch=regression_batches, loss_fn=mse, steps=2, progress=False)
    defaults.update(kwargs)
    model, next_batch, loss_fn = defaults.pop("model"), defaults.pop("next_batch"), defaults.pop("loss_fn")
    return training.train(model, next_batch, loss_fn, **defaults)


IDS = torch.tensor([[1, 2, 3, 0]])
NAN = float("nan")
INF = float("inf")

# (description, what it did before: "silent" / "nan" / "obscure", call, regex the message must contain)
BAD_INPUTS = [
    # -- attention: the fused fast path skipped the mask checks
    ("fused MHA, float 0/1 mask", "silent",
     lambda: fused_attention()(x3(), x3(), x3(), mask=torch.ones(5, 5)),
     r"scaled_dot_product_attention: mask must be a bool tensor .*got dtype torch.float64"),
    ("fused MHA, int mask", "obscure",
     lambda: fused_attention()(x3(), x3(), x3(), mask=torch.ones(5, 5, dtype=torch.long)),
     r"mask must be a bool tensor"),
    ("fused MHA, wrong-shape mask", "obscure",
     lambda: fused_attention()(x3(), x3(), x3(), mask=torch.ones(4, 4, dtype=torch.bool)),
     r"mask must broadcast to \(B, n_heads, T_q, T_k\) = \(2, 2, 5, 5\), got \(4, 4\)"),
    ("readable MHA, mask that grows the batch", "silent",
     lambda: multihead.MultiHeadAttention(8, 2)(*(3 * [x3(B=1)]), mask=torch.ones(3, 1, 5, 5, dtype=torch.bool)),
     r"mask must broadcast to .*\(1, 2, 5, 5\), got \(3, 1, 5, 5\)"),
    ("sdpa mask (3, 1, 5, 5) with scores (2, 5, 5)", "silent",
     lambda: attention.scaled_dot_product_attention(x3(), x3(), x3(), torch.ones(3, 1, 5, 5, dtype=torch.bool)),
     r"scaled_dot_product_attention: mask must broadcast to \(\.\.\., T_q, T_k\) = \(2, 5, 5\), got \(3, 1, 5, 5\)"),
    ("sdpa q float32, k/v float64", "obscure",
     lambda: attention.scaled_dot_product_attention(x3(dtype=torch.float32), x3(), x3()),
     r"scaled_dot_product_attention: q, k and v must share one floating-point dtype"),
    ("sdpa integer q, k, v", "obscure",
     lambda: attention.scaled_dot_product_attention(*(3 * [torch.ones(2, 3, 4, dtype=torch.long)])),
     r"scaled_dot_product_attention: q must be a floating-point tensor"),
    ("sdpa batch mismatch", "obscure",
     lambda: attention.scaled_dot_product_attention(x3(B=2), x3(B=3), x3(B=3)),
     r"scaled_dot_product_attention: the leading .* dimensions of q \(2, 5, 8\), k \(3, 5, 8\)"),
    ("sdpa d_k = 0", "nan",
     lambda: attention.scaled_dot_product_attention(x3(d=0), x3(d=0), x3()),
     r"scaled_dot_product_attention: q must be \(\.\.\., T_q, d_k\) with d_k >= 1"),
    ("MHA float32 input into a float64 module", "obscure",
     lambda: multihead.MultiHeadAttention(8, 2)(*(3 * [x3(dtype=torch.float32)])),
     r"MultiHeadAttention.forward: query has dtype torch.float32 but the module's weights are torch.float64"),
    ("MHA float64 input into a float32 module", "obscure",
     lambda: multihead.MultiHeadAttention(8, 2).float()(x3(), x3(), x3()),
     r"MultiHeadAttention.forward: query has dtype torch.float64 but the module's weights are torch.float32"),
    ("MHA kv_cache of another batch", "obscure",
     lambda: (lambda m, c: (m(x3(B=2), x3(B=2), x3(B=2), kv_cache=c), m(x3(B=3), x3(B=3), x3(B=3), kv_cache=c)))(
         multihead.MultiHeadAttention(8, 2), multihead.KVCache()),
     r"MultiHeadAttention.forward: the kv_cache holds keys for B=2 sequences"),
    ("MHA kv_cache not a KVCache", "obscure",
     lambda: multihead.MultiHeadAttention(8, 2)(x3(), x3(), x3(), kv_cache=[]),
     r"MultiHeadAttention.forward: kv_cache must be a KVCache or None, got list"),
    # -- masks
    ("padding_mask pad_id=0.5", "silent", lambda: masks.padding_mask(IDS, 0.5),
     r"padding_mask: pad_id must be an int, got 0.5"),
    ("padding_mask pad_id=None", "obscure", lambda: masks.padding_mask(IDS, None),
     r"padding_mask: pad_id must be an int, got None"),
    ("padding_mask complex ids", "silent", lambda: masks.padding_mask(IDS.to(torch.complex64), 0),
     r"padding_mask: token_ids must be integer ids"),
    ("combine_masks incompatible shapes", "obscure",
     lambda: masks.combine_masks(torch.ones(2, 3, dtype=torch.bool), torch.ones(4, 5, dtype=torch.bool)),
     r"combine_masks: the masks must broadcast to one common shape, got \(2, 3\), \(4, 5\)"),
    ("mask_to_additive int dtype", "obscure",
     lambda: masks.mask_to_additive(masks.causal_mask(3), dtype=torch.long),
     r"mask_to_additive: dtype must be a floating-point dtype"),
    ("causal_mask T=True", "clear", lambda: masks.causal_mask(True), r"causal_mask: T must be a positive int"),
    # -- positions and embeddings
    ("SinusoidalPE start=-1 (empty result)", "obscure",
     lambda: positional.SinusoidalPositionalEncoding(8, max_len=16)(torch.randn(1, 3, 8), start=-1),
     r"SinusoidalPositionalEncoding.forward: start must be an int >= 0, got -1"),
    ("SinusoidalPE start=-3 (the table's last rows)", "silent",
     lambda: positional.SinusoidalPositionalEncoding(8, max_len=16)(torch.randn(1, 2, 8), start=-3),
     r"start must be an int >= 0, got -3"),
    ("SinusoidalPE start + T > max_len", "clear",
     lambda: positional.SinusoidalPositionalEncoding(8, max_len=16)(torch.randn(1, 3, 8), start=14),
     r"positions 14\.\.16 exceed max_len=16"),
    ("SinusoidalPE start=1.5", "obscure",
     lambda: positional.SinusoidalPositionalEncoding(8, max_len=16)(torch.randn(1, 3, 8), start=1.5),
     r"start must be an int >= 0, got 1.5"),
    ("SinusoidalPE integer x", "silent",
     lambda: positional.SinusoidalPositionalEncoding(8)(torch.ones(1, 3, 8, dtype=torch.long)),
     r"SinusoidalPositionalEncoding.forward: x must be a floating-point tensor"),
    ("sinusoidal base=nan", "clear", lambda: positional.sinusoidal_positional_encoding(4, 8, base=NAN),
     r"sinusoidal_positional_encoding: base must be a positive finite number"),
    ("LearnedPE start=-3", "silent",
     lambda: positional.LearnedPositionalEmbedding(16, 8)(torch.randn(1, 2, 8), start=-3),
     r"LearnedPositionalEmbedding.forward: start must be an int >= 0, got -3"),
    ("LearnedPE max_len=0", "silent", lambda: positional.LearnedPositionalEmbedding(0, 8),
     r"LearnedPositionalEmbedding: max_len must be a positive int, got 0"),
    ("LearnedPE float32 x into a float64 table", "silent",
     lambda: positional.LearnedPositionalEmbedding(16, 8)(torch.randn(1, 3, 8, dtype=torch.float32)),
     r"LearnedPositionalEmbedding.forward: x must have the dtype of the position table \(torch.float64\)"),
    ("embedding_lookup bool ids", "clear",
     lambda: embeddings.embedding_lookup(torch.ones(1, 3, dtype=torch.bool), torch.randn(5, 4)),
     r"embedding_lookup: token_ids must be an integer tensor"),
    # -- layers
    ("EncoderLayer float32 input into a float64 layer", "silent",
     lambda: encoder.EncoderLayer(8, 2, 16, norm_first=True)(x3(dtype=torch.float32)),
     r"EncoderLayer.forward: x must have the dtype of the layer's weights \(torch.float64\), got torch.float32"),
    ("EncoderLayer dropout=nan", "silent", lambda: encoder.EncoderLayer(8, 2, 16, dropout=NAN),
     r"EncoderLayer: dropout must be a probability in \[0, 1\], got nan"),
    ("DecoderLayer memory of another batch", "clear",
     lambda: decoder.DecoderLayer(8, 2, 16)(x3(B=2), x3(B=3)),
     r"DecoderLayer.forward: x and memory must share B, got \(2, 5, 8\) and \(3, 5, 8\)"),
    ("Decoder cache not a list", "obscure",
     lambda: decoder.Decoder(1, 8, 2, 16)(x3(), x3(), cache=decoder.DecoderLayerCache()),
     r"Decoder.forward: cache must be a list of 1 layer caches"),
    # -- configurations and models
    ("GPTConfig n_layers=0", "silent", lambda: models.GPTConfig(vocab_size=11, n_layers=0),
     r"GPTConfig: n_layers must be a positive int, got 0"),
    ("GPTConfig context_length=0 (learned positions, max_len 0)", "silent",
     lambda: models.GPTConfig(vocab_size=11, context_length=0),
     r"GPTConfig: context_length must be a positive int, got 0"),
    ("GPTConfig vocab_size=0", "silent", lambda: models.GPTConfig(vocab_size=0),
     r"GPTConfig: vocab_size must be a positive int, got 0"),
    ("GPTConfig heads do not divide d_model", "silent", lambda: models.GPTConfig(vocab_size=11, d_model=10, n_heads=4),
     r"GPTConfig: d_model=10 must be divisible by n_heads=4"),
    ("GPTConfig dropout=nan", "silent", lambda: models.GPTConfig(vocab_size=11, dropout=NAN),
     r"GPTConfig: dropout must be a probability in \[0, 1\), got nan"),
    ("GPTConfig layer_norm_eps=0", "silent", lambda: models.GPTConfig(vocab_size=11, layer_norm_eps=0.0),
     r"GPTConfig: layer_norm_eps must be a finite number > 0, got 0.0"),
    ("GPTConfig unknown activation", "silent", lambda: models.GPTConfig(vocab_size=11, activation="swish"),
     r"GPTConfig: activation must be one of"),
    ("TransformerConfig pad_id=11 outside a vocabulary of 11", "silent",
     lambda: models.TransformerConfig(src_vocab_size=11, tgt_vocab_size=11, pad_id=11),
     r"TransformerConfig: pad_id must be an int in \[0, 10\], got 11"),
    ("TransformerConfig pad_id=-1", "silent",
     lambda: models.TransformerConfig(src_vocab_size=11, tgt_vocab_size=11, pad_id=-1),
     r"TransformerConfig: pad_id must be an int in \[0, 10\], got -1"),
    ("TransformerConfig n_encoder_layers=0", "silent",
     lambda: models.TransformerConfig(src_vocab_size=11, tgt_vocab_size=11, n_encoder_layers=0),
     r"TransformerConfig: n_encoder_layers must be a positive int, got 0"),
    ("GPT with a TransformerConfig", "obscure",
     lambda: models.GPT(models.TransformerConfig(src_vocab_size=11, tgt_vocab_size=11)),
     r"GPT: config must be a GPTConfig, got TransformerConfig"),
    ("GPT cache of the wrong length", "obscure", lambda: (lambda m: m(IDS, cache=m.new_cache()[:1]))(small_gpt()),
     r"GPT.forward: cache must be the list of 2 KVCache objects from new_cache\(\), got 1 entries"),
    ("GPT cache = []", "obscure", lambda: small_gpt()(IDS, cache=[]),
     r"GPT.forward: cache must be the list of 2 KVCache objects"),
    ("GPT cache of another batch", "obscure",
     lambda: (lambda m, c: (m(IDS, cache=c), m(IDS.expand(2, -1)[:, :1], cache=c)))(small_gpt(), small_gpt().new_cache()),
     r"GPT.forward: the cache holds B=1 sequences but token_ids has B=2"),
    ("GPT empty sequence", "obscure", lambda: small_gpt()(torch.zeros(1, 0, dtype=torch.long)),
     r"GPT.forward: token_ids must be \(B, T\) token ids with T >= 1, got \(1, 0\)"),
    ("GPT token id out of range", "clear", lambda: small_gpt()(torch.tensor([[1, 11]])),
     r"embedding_lookup: token ids must lie in \[0, V\) with V=11, got values from 1 to 11"),
    ("Transformer.decode cache = []", "obscure",
     lambda: (lambda m: m.decode(IDS, *m.encode(IDS), cache=[]))(small_seq2seq()),
     r"Transformer.decode: cache must be the list of 1 layer caches"),
    # -- generation
    ("next_token_probs temperature=nan", "nan", lambda: generation.next_token_probs(torch.randn(5), temperature=NAN),
     r"next_token_probs: temperature must be >= 0 \(a finite number; 0 is greedy\), got nan"),
    ("next_token_probs temperature=inf", "silent", lambda: generation.next_token_probs(torch.randn(5), temperature=INF),
     r"next_token_probs: temperature must be >= 0"),
    ("next_token_probs temperature=True", "silent", lambda: generation.next_token_probs(torch.randn(5), temperature=True),
     r"next_token_probs: temperature must be >= 0 .*got True"),
    ("next_token_probs V = 0", "silent", lambda: generation.next_token_probs(torch.randn(2, 0)),
     r"next_token_probs: logits must be \(\.\.\., V\) with V >= 1 .*got \(2, 0\)"),
    ("next_token_probs NaN logits", "nan", lambda: generation.next_token_probs(torch.tensor([1.0, NAN, 0.0])),
     r"next_token_probs: logits \(3\) hold NaN or \+inf"),
    ("next_token_probs a row of -inf", "nan", lambda: generation.next_token_probs(torch.full((2, 3), -INF)),
     r"every row needs a finite largest logit"),
    ("next_token_probs top_p=nan", "clear", lambda: generation.next_token_probs(torch.randn(5), top_p=NAN),
     r"next_token_probs: top_p must be in \(0, 1\] or None, got nan"),
    ("sample_next_token NaN probs", "obscure", lambda: generation.sample_next_token(torch.tensor([[0.5, NAN]])),
     r"sample_next_token: probs \(1, 2\) must be finite and >= 0"),
    ("sample_next_token negative probs", "obscure", lambda: generation.sample_next_token(torch.tensor([[0.5, -0.1]])),
     r"sample_next_token: probs \(1, 2\) must be finite and >= 0"),
    ("sample_next_token a row summing to 0", "obscure",
     lambda: generation.sample_next_token(torch.tensor([[0.5, 0.5], [0.0, 0.0]])),
     r"sample_next_token: every row of probs needs some probability mass, but rows \[1\] sum to 0"),
    ("sample_next_token integer probs", "obscure", lambda: generation.sample_next_token(torch.ones(2, 3, dtype=torch.long)),
     r"sample_next_token: probs must be a float tensor"),
    ("generate with an encoder-decoder", "obscure", lambda: generation.generate(small_seq2seq(), IDS, 2),
     r"generate: model must be a decoder-only language model .* got Transformer"),
    ("generate eos_id=1.5 (never matches)", "silent", lambda: generation.generate(small_gpt(), IDS, 2, eos_id=1.5),
     r"generate: eos_id must be an int, got 1.5"),
    ("generate temperature=nan", "obscure", lambda: generation.generate(small_gpt(), IDS, 2, temperature=NAN),
     r"generate: temperature must be >= 0"),
    ("generate float prompt", "clear", lambda: generation.generate(small_gpt(), IDS.double(), 2),
     r"generate: prompt_ids must be integer token ids"),
    ("greedy_decode with a GPT", "obscure", lambda: generation.greedy_decode(small_gpt(), IDS, 1, 2),
     r"greedy_decode: model must be an encoder-decoder such as course_lib's Transformer .* got GPT"),
    ("greedy_decode bos_id outside the vocabulary", "clear",
     lambda: generation.greedy_decode(small_seq2seq(), IDS, 11, 2),
     r"greedy_decode: bos_id must be an int in \[0, 10\], got 11"),
    ("beam_search with a GPT", "obscure", lambda: generation.beam_search(small_gpt(), IDS, 1, 2),
     r"beam_search: model must be an encoder-decoder"),
    ("beam_search alpha=nan", "silent", lambda: generation.beam_search(small_seq2seq(), IDS, 1, 2, alpha=NAN),
     r"beam_search: alpha must be a finite number .*got nan"),
    ("length_penalty alpha=nan", "nan", lambda: generation.length_penalty(3, NAN),
     r"length_penalty: alpha must be a finite number, got nan"),
    # -- training
    ("train steps=True", "silent", lambda: train_quietly(steps=True), r"train: steps must be a positive int, got True"),
    ("train steps=2.5", "clear", lambda: train_quietly(steps=2.5), r"train: steps must be a positive int, got 2.5"),
    ("train peak_lr=nan", "obscure", lambda: train_quietly(peak_lr=NAN), r"train: peak_lr must be a finite number > 0"),
    ("train schedule_by_time with time_limit_s=0", "obscure",
     lambda: train_quietly(schedule_by_time=True, time_limit_s=0),
     r"train: time_limit_s must be a number of seconds > 0 or None, got 0"),
    ("train time_limit_s=nan", "silent", lambda: train_quietly(time_limit_s=NAN), r"train: time_limit_s must be"),
    ("train loss_fn returning a vector", "obscure",
     lambda: train_quietly(loss_fn=lambda model, batch: (model(batch[0]) - batch[1]) ** 2),
     r"train: loss_fn must return a scalar tensor \(0-d\), got \(8, 1\)"),
    ("train a diverging loss", "nan", lambda: train_quietly(loss_fn=lambda m, b: mse(m, b) * INF, log_every=1),
     r"train: the loss became (nan|inf) at step 1"),
    ("lr_at peak_lr=inf", "nan", lambda: training.lr_at(5, peak_lr=INF, warmup_steps=2, total_steps=10),
     r"lr_at: peak_lr must be a finite number > 0, got inf"),
    ("lr_at peak_lr=nan", "nan", lambda: training.lr_at(5, peak_lr=NAN, warmup_steps=2, total_steps=10),
     r"lr_at: peak_lr must be a finite number > 0, got nan"),
    ("lr_at min_lr_ratio=nan", "clear",
     lambda: training.lr_at(5, peak_lr=1.0, warmup_steps=2, total_steps=10, min_lr_ratio=NAN),
     r"lr_at: min_lr_ratio must be in \[0, 1\], got nan"),
    ("lr_at step=2.5", "silent", lambda: training.lr_at(2.5, peak_lr=1.0, warmup_steps=2, total_steps=10),
     r"lr_at: step must be an int >= 0, got 2.5"),
    ("label_smoothed_cross_entropy target = V", "obscure",
     lambda: training.label_smoothed_cross_entropy(torch.randn(3, 5), torch.tensor([0, 5, 1])),
     r"label_smoothed_cross_entropy: targets must be class ids in \[0, V\) with V=5 .*got values from 5 to 5"),
    ("label_smoothed_cross_entropy negative target", "obscure",
     lambda: training.label_smoothed_cross_entropy(torch.randn(3, 5), torch.tensor([0, -2, 1])),
     r"targets must be class ids in \[0, V\) with V=5 \(or ignore_index=-100\), got values from -2 to -2"),
    ("label_smoothed_cross_entropy every target ignored", "nan",
     lambda: training.label_smoothed_cross_entropy(torch.randn(2, 5), torch.tensor([0, 0]), ignore_index=0),
     r"label_smoothed_cross_entropy: every target is ignore_index=0"),
    ("label_smoothed_cross_entropy smoothing=nan", "clear",
     lambda: training.label_smoothed_cross_entropy(torch.randn(2, 5), torch.tensor([1, 2]), smoothing=NAN),
     r"label_smoothed_cross_entropy: smoothing must be in \[0, 1\)"),
    ("tiny GPT language_model_loss with a target = V", "obscure",
     lambda: tiny_gpt.language_model_loss(small_gpt(), torch.tensor([[1, 2, 11]])),
     r"language_model_cross_entropy: targets must be class ids in \[0, V\) with V=11 .*got values from 11 to 11"),
    ("tiny GPT language_model_loss with a negative target", "obscure",
     lambda: tiny_gpt.language_model_loss(small_gpt(), torch.tensor([[1, 2, -5]])),
     r"language_model_cross_entropy: targets must be class ids in \[0, V\) with V=11 .*got values from -5 to -5"),
    # -- GPT-2 weights
    ("load_gpt2 with both 'transformer.h.0...' and 'h.0...'", "silent",
     lambda: gpt2_loading.load_gpt2({**gpt2_state(), "h.0.ln_1.weight": torch.zeros(8)}, n_heads=2),
     r"load_gpt2: state_dict holds both 'transformer.h.0.ln_1.weight' and 'h.0.ln_1.weight'"),
    ("load_gpt2 a 1-D wte", "obscure",
     lambda: gpt2_loading.load_gpt2({**gpt2_state(), "transformer.wte.weight": torch.randn(80)}, n_heads=2),
     r"load_gpt2: wte.weight must be \(V, d_model\), got \(80\)"),
    ("load_gpt2 a 3-D c_fc", "obscure",
     lambda: gpt2_loading.load_gpt2({**gpt2_state(), "transformer.h.0.mlp.c_fc.weight": torch.randn(8, 4, 8)}, n_heads=2),
     r"load_gpt2: h.0.mlp.c_fc.weight must be \(d_model, d_ff\)"),
    ("gpt2_weights_to_course_lib a c_attn not 3 * d_model wide", "silent",
     lambda: gpt2_loading.gpt2_weights_to_course_lib({**gpt2_state(), "transformer.h.0.attn.c_attn.weight": torch.randn(8, 20)}),
     r"gpt2_weights_to_course_lib: h.0.attn.c_attn.weight must be \(d_model, 3 \* d_model\).*got \(8, 20\)"),
    ("gpt2_weights_to_course_lib a 2-D c_attn bias", "silent",
     lambda: gpt2_loading.gpt2_weights_to_course_lib({**gpt2_state(), "transformer.h.0.attn.c_attn.bias": torch.randn(3, 8)}),
     r"h.0.attn.c_attn.bias must be \(3 \* d_model,\)"),
    ("load_gpt2 integer weights", "obscure",
     lambda: gpt2_loading.load_gpt2({k: v.long() for k, v in gpt2_state().items()}, n_heads=2),
     r"load_gpt2: wte.weight must hold floating-point weights"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "message"), [(case[2], case[3]) for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_bad_input_table_is_well_formed():
    assert len({case[0] for case in BAD_INPUTS}) == len(BAD_INPUTS)
    assert {case[1] for case in BAD_INPUTS} <= {"silent", "nan", "obscure", "clear"}


# ---------------------------------------------------------------- the fast path and the readable path agree


@pytest.mark.parametrize(
    "mask",
    [torch.ones(5, 5), torch.ones(5, 5, dtype=torch.long), torch.ones(4, 4, dtype=torch.bool),
     torch.ones(3, 1, 5, 5, dtype=torch.bool), torch.ones(1, 2, 3, 5, 5, dtype=torch.bool)],
    ids=["float", "int", "wrong shape", "grows the batch", "extra dimension"],
)  # fmt: skip
def test_both_paths_refuse_a_bad_mask_with_the_same_message(mask):
    attention_module = multihead.MultiHeadAttention(8, 2)
    messages = []
    for fused in (False, True):
        multihead.use_fused_attention(attention_module, fused)
        with pytest.raises(ValueError) as error:
            attention_module(x3(), x3(), x3(), mask=mask)
        messages.append(str(error.value))
    assert messages[0] == messages[1]


def test_a_bad_mask_leaves_the_cache_untouched():
    attention_module = multihead.MultiHeadAttention(8, 2)
    cache = multihead.KVCache()
    with pytest.raises(ValueError, match="mask"):
        attention_module(x3(T=1), x3(T=1), x3(T=1), mask=torch.ones(2, 2, dtype=torch.bool), kv_cache=cache)
    assert len(cache) == 0


def test_valid_masks_that_broadcast_to_the_scores_still_work():
    q = torch.randn(2, 3, 5, 8)
    for mask in (masks.causal_mask(5), torch.ones(1, 5, 5, dtype=torch.bool), torch.ones(2, 1, 1, 5, dtype=torch.bool),
                 torch.tensor(True)):  # fmt: skip
        output, weights = attention.scaled_dot_product_attention(q, q, q, mask)
        assert output.shape == (2, 3, 5, 8) and weights.shape == (2, 3, 5, 5)
    shared_keys = torch.randn(5, 8)  # leading dims broadcast between q and k, as in torch.matmul
    output, weights = attention.scaled_dot_product_attention(q, shared_keys, shared_keys)
    assert output.shape == (2, 3, 5, 8)


# ---------------------------------------------------------------- temperature


@pytest.mark.parametrize(
    ("dtype", "temperature"),
    [(torch.float16, 1e-4), (torch.float16, 1e-8), (torch.bfloat16, 1e-30), (torch.float32, 1e-38),
     (torch.float32, 1e-45), (torch.float64, 1e-300), (torch.float64, 5e-324)],
)  # fmt: skip
def test_a_tiny_temperature_is_greedy_with_ties_split(dtype, temperature):
    logits = torch.tensor([[2.0, 7.5, -3.0, 7.5, 0.0], [1.0, -1.0, 4.0, 0.0, 3.99]], dtype=dtype)
    probs = generation.next_token_probs(logits, temperature=temperature)
    expected = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]], dtype=dtype)
    assert probs.dtype == dtype
    assert torch.equal(probs, expected)
    top = generation.next_token_probs(logits, temperature=temperature, top_k=2, top_p=0.5)
    assert torch.isfinite(top).all() and torch.allclose(top.double().sum(-1), torch.ones(2, dtype=torch.float64))


def test_temperature_results_are_unchanged_for_ordinary_temperatures():
    logits = torch.randn(4, 30) * 3
    for temperature in (0.3, 1.0, 2.5):
        expected = torch.softmax(logits / temperature, dim=-1)
        assert max_abs_diff(generation.next_token_probs(logits, temperature=temperature), expected) < 1e-14


def test_half_precision_probabilities_are_computed_in_float32():
    logits = torch.randn(3, 1000) * 4
    half = generation.next_token_probs(logits.half(), temperature=0.7, top_p=0.9)
    full = generation.next_token_probs(logits.half().double(), temperature=0.7, top_p=0.9)
    assert half.dtype == torch.float16
    assert max_abs_diff(half.double(), full) < 1e-3
    assert generation.sample_next_token(half).shape == (3,)


def test_forbidden_tokens_marked_minus_inf_are_never_chosen():
    logits = torch.tensor([[0.0, -INF, 1.0, -INF]])
    probs = generation.next_token_probs(logits, temperature=1e-9)
    assert torch.equal(probs, torch.tensor([[0.0, 0.0, 1.0, 0.0]]))


# ---------------------------------------------------------------- half precision in attention


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_attention_in_half_precision_matches_float32_and_does_not_overflow(dtype):
    q, k, v = torch.randn(2, 3, 6, 16) * 200, torch.randn(2, 3, 6, 16) * 200, torch.randn(2, 3, 6, 16)
    mask = masks.causal_mask(6)
    output, weights = attention.scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype), mask)
    ref_out, ref_weights = attention.scaled_dot_product_attention(
        *(t.to(dtype).double() for t in (q, k, v)), mask
    )  # the same rounded inputs, in float64
    assert output.dtype == dtype and weights.dtype == dtype
    assert torch.isfinite(output).all() and torch.isfinite(weights).all()
    tolerance = 1e-2 if dtype == torch.float16 else 5e-2
    assert max_abs_diff(weights.double(), ref_weights) < tolerance
    assert max_abs_diff(output.double(), ref_out) < tolerance * 10


def test_multi_head_attention_and_gpt_run_in_half_precision():
    attention_module = multihead.MultiHeadAttention(16, 2).half()
    x = torch.randn(2, 5, 16).half()
    out = attention_module(x, x, x, mask=masks.causal_mask(5))
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    gpt = small_gpt().to(torch.bfloat16)
    logits = gpt(torch.tensor([[1, 2, 3]]))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_label_smoothed_cross_entropy_in_half_precision():
    logits, targets = torch.randn(6, 50) * 10, torch.randint(0, 50, (6,))
    half = training.label_smoothed_cross_entropy(logits.half(), targets)
    full = training.label_smoothed_cross_entropy(logits.half().double(), targets)
    assert half.dtype == torch.float16 and abs(half.item() - full.item()) < 1e-2


# ---------------------------------------------------------------- valid inputs that used to be refused


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_every_integer_dtype_is_a_valid_token_id(dtype):
    ids = torch.tensor([[1, 2, 3, 0]], dtype=dtype)
    expected_mask = masks.padding_mask(ids.long(), 0)
    assert torch.equal(masks.padding_mask(ids, 0), expected_mask)
    table = torch.randn(11, 4)
    assert torch.equal(embeddings.embedding_lookup(ids, table), table[ids.long()])
    gpt = small_gpt()
    assert torch.equal(gpt(ids), gpt(ids.long()))
    seq2seq = small_seq2seq()
    assert torch.equal(seq2seq(ids, ids), seq2seq(ids.long(), ids.long()))
    generated = generation.generate(gpt, ids, 2, temperature=0)
    assert generated.dtype == torch.int64 and torch.equal(generated[:, :4], ids.long())
    assert generation.greedy_decode(seq2seq, ids, 1, 2, max_len=3).shape[0] == 1
    logits = torch.randn(4, 11)
    assert training.label_smoothed_cross_entropy(logits, ids[0]) == training.label_smoothed_cross_entropy(
        logits, ids[0].long()
    )


def test_uint8_ids_are_indices_not_a_mask():
    table = torch.randn(5, 3)
    ids = torch.tensor([[0, 1, 1]], dtype=torch.uint8)  # as a mask this would pick rows 1 and 2
    assert embeddings.embedding_lookup(ids, table).shape == (1, 3, 3)


def test_pad_id_outside_the_dtype_range_means_no_padding():
    ids = torch.tensor([[1, 2, 255]], dtype=torch.uint8)
    assert masks.padding_mask(ids, 300).all()
    assert masks.padding_mask(ids, -1).all()


@pytest.mark.parametrize("integer", [np.int64, np.int32, np.uint8, lambda n: torch.tensor(n)],
                         ids=["np.int64", "np.int32", "np.uint8", "0-d tensor"])  # fmt: skip
def test_numpy_integers_and_0d_tensors_count_as_ints(integer):
    assert masks.causal_mask(integer(3)).shape == (3, 3)
    assert torch.equal(masks.padding_mask(IDS, integer(0)), masks.padding_mask(IDS, 0))
    assert positional.sinusoidal_positional_encoding(integer(4), integer(8)).shape == (4, 8)
    pe = positional.SinusoidalPositionalEncoding(integer(8), max_len=integer(16))
    assert pe(torch.randn(1, 3, 8), start=integer(2)).shape == (1, 3, 8)
    assert positional.LearnedPositionalEmbedding(integer(16), integer(8))(torch.randn(1, 3, 8)).shape == (1, 3, 8)
    assert embeddings.TokenEmbedding(integer(11), integer(8))(IDS).shape == (1, 4, 8)
    assert multihead.MultiHeadAttention(integer(8), integer(2))(x3(), x3(), x3()).shape == (2, 5, 8)
    logits = torch.randn(2, 11)
    probs = generation.next_token_probs(logits, top_k=integer(3))
    assert torch.equal(probs, generation.next_token_probs(logits, top_k=3))
    config = models.GPTConfig(vocab_size=integer(11), context_length=integer(8), d_model=integer(16),
                              n_heads=integer(2), n_layers=integer(1))  # fmt: skip
    assert type(config.vocab_size) is int and type(config.n_layers) is int  # stays JSON-ready
    gpt = models.GPT(config).eval()
    assert generation.generate(gpt, IDS, integer(2), temperature=0, eos_id=integer(3)).shape[1] <= 6
    seq2seq = small_seq2seq()
    assert (
        generation.beam_search(seq2seq, IDS, integer(1), integer(2), beam_size=integer(2), max_len=integer(3)).dim()
        == 2
    )
    assert training.lr_at(integer(3), peak_lr=1.0, warmup_steps=integer(2), total_steps=integer(10)) > 0
    history = train_quietly(steps=integer(2), warmup_steps=integer(1), log_every=integer(1))
    assert history.steps == [1, 2]


def test_0d_tensors_and_numpy_floats_count_as_numbers():
    logits = torch.randn(2, 11)
    expected = generation.next_token_probs(logits, temperature=0.5, top_p=0.9)
    for temperature, top_p in ((torch.tensor(0.5), torch.tensor(0.9)), (np.float32(0.5), np.float64(0.9))):
        got = generation.next_token_probs(logits, temperature=temperature, top_p=top_p)
        assert max_abs_diff(got, expected) < 1e-7
    assert training.lr_at(3, peak_lr=torch.tensor(1.0), warmup_steps=2, total_steps=10) == pytest.approx(
        training.lr_at(3, peak_lr=1.0, warmup_steps=2, total_steps=10)
    )
    assert math.isfinite(generation.length_penalty(np.int64(4), np.float32(0.6)))
