"""Bad input: every public function and module says what it expected and what it got."""

import pytest
import torch

from course_lib.attention import scaled_dot_product_attention
from course_lib.decoder import Decoder, DecoderLayer
from course_lib.embeddings import TokenEmbedding, embedding_lookup
from course_lib.encoder import Encoder, EncoderLayer
from course_lib.feedforward import FeedForward
from course_lib.generation import beam_search, generate, greedy_decode, next_token_probs, sample_next_token
from course_lib.masks import causal_mask, combine_masks, mask_to_additive, padding_mask
from course_lib.models import GPT, GPTConfig, Transformer, TransformerConfig
from course_lib.multihead import MultiHeadAttention, merge_heads, split_heads
from course_lib.normalization import LayerNorm, layer_norm
from course_lib.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_positional_encoding,
)

GPT_SMALL = GPTConfig(vocab_size=11, context_length=8, d_model=16, n_heads=2, n_layers=1)
SEQ2SEQ_SMALL = TransformerConfig(
    src_vocab_size=11, tgt_vocab_size=11, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32
)

# (description, call that must fail, a regex the message must contain: function, expected, actual)
BAD_CALLS = [
    ("sdpa q rank 1", lambda: scaled_dot_product_attention(torch.randn(4), torch.randn(4, 4), torch.randn(4, 4)),
     r"scaled_dot_product_attention: q must be \(\.\.\., T_q, d_k\), got \(4\)"),
    ("sdpa mismatched d", lambda: scaled_dot_product_attention(torch.randn(2, 3, 8), torch.randn(2, 3, 6), torch.randn(2, 3, 6)),
     r"scaled_dot_product_attention: k must be .*d_k=8.*got \(2, 3, 6\)"),
    ("sdpa v length", lambda: scaled_dot_product_attention(torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.randn(2, 4, 8)),
     r"scaled_dot_product_attention: v must be .*T_k=5.*got \(2, 4, 8\)"),
    ("sdpa float mask", lambda: scaled_dot_product_attention(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4), torch.ones(3, 3)),
     r"scaled_dot_product_attention: mask must be a bool tensor .*got dtype torch.float64"),
    ("sdpa mask shape", lambda: scaled_dot_product_attention(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4), torch.ones(2, 5, dtype=torch.bool)),
     r"scaled_dot_product_attention: mask must broadcast to .*\(3, 3\), got \(2, 5\)"),
    ("causal_mask zero", lambda: causal_mask(0), r"causal_mask: T must be a positive int, got 0"),
    ("padding_mask rank", lambda: padding_mask(torch.tensor([1, 2, 0]), 0), r"padding_mask: token_ids must be \(B, T\), got \(3\)"),
    ("padding_mask float", lambda: padding_mask(torch.ones(2, 3), 0), r"padding_mask: token_ids must be integer ids"),
    ("combine_masks float", lambda: combine_masks(causal_mask(3), torch.ones(3, 3)), r"combine_masks: mask 1 must be a bool tensor"),
    ("mask_to_additive float", lambda: mask_to_additive(torch.ones(3)), r"mask_to_additive: mask must be a bool tensor"),
    ("split_heads rank", lambda: split_heads(torch.randn(3, 8), 2), r"split_heads: x must be \(B, T, d_model\), got \(3, 8\)"),
    ("split_heads divisible", lambda: split_heads(torch.randn(2, 3, 10), 4), r"split_heads: d_model=10 \(x is \(2, 3, 10\)\) is not divisible by n_heads=4"),
    ("merge_heads rank", lambda: merge_heads(torch.randn(2, 3, 8)), r"merge_heads: x must be \(B, n_heads, T, d_head\), got \(2, 3, 8\)"),
    ("MHA divisible", lambda: MultiHeadAttention(10, 4), r"MultiHeadAttention: d_model=10 must be divisible by n_heads=4"),
    ("MHA width", lambda: MultiHeadAttention(8, 2)(torch.randn(2, 5, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)),
     r"MultiHeadAttention.forward: query must be \(B, T, d_model\) with d_model=8, got \(2, 5, 4\); did you pass the head-split tensor\?"),
    ("MHA head-split input", lambda: MultiHeadAttention(8, 2)(*(3 * [torch.randn(2, 2, 5, 4)])),
     r"MultiHeadAttention.forward: query must be \(B, T, d_model\) with d_model=8, got \(2, 2, 5, 4\)"),
    ("MHA key/value", lambda: MultiHeadAttention(8, 2)(torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(2, 4, 8)),
     r"MultiHeadAttention.forward: key and value must share \(B, T_k\), got \(2, 5, 8\) and \(2, 4, 8\)"),
    ("MHA float mask", lambda: MultiHeadAttention(8, 2)(*(3 * [torch.randn(2, 5, 8)]), mask=torch.ones(5, 5)),
     r"scaled_dot_product_attention: mask must be a bool tensor"),
    ("layer_norm weight", lambda: layer_norm(torch.randn(2, 6), torch.ones(5), torch.zeros(5)),
     r"layer_norm: weight and bias must be \(d,\) with d=6 .*got \(5\) and \(5\)"),
    ("LayerNorm width", lambda: LayerNorm(6)(torch.randn(2, 5)), r"LayerNorm.forward: x must be \(\.\.\., d_model\) with d_model=6, got \(2, 5\)"),
    ("FeedForward width", lambda: FeedForward(8, 16)(torch.randn(2, 3, 4)),
     r"FeedForward.forward: x must be \(B, T, d_model\) with d_model=8, got \(2, 3, 4\)"),
    ("FeedForward activation", lambda: FeedForward(8, 16, activation="swish"), r"FeedForward: activation must be one of"),
    ("EncoderLayer width", lambda: EncoderLayer(8, 2, 16)(torch.randn(2, 3, 6)),
     r"EncoderLayer.forward: x must be \(B, T, d_model\) with d_model=8, got \(2, 3, 6\)"),
    ("EncoderLayer divisible", lambda: EncoderLayer(10, 4, 16), r"MultiHeadAttention: d_model=10 must be divisible by n_heads=4"),
    ("Encoder layers", lambda: Encoder(0, 8, 2, 16), r"Encoder: n_layers must be a positive int, got 0"),
    ("DecoderLayer memory", lambda: DecoderLayer(8, 2, 16)(torch.randn(2, 3, 8), torch.randn(2, 4, 6)),
     r"DecoderLayer.forward: memory must be \(B, S, d_model\) with d_model=8, got \(2, 4, 6\)"),
    ("Decoder cache", lambda: Decoder(2, 8, 2, 16)(torch.randn(1, 2, 8), torch.randn(1, 3, 8), cache=[]),
     r"Decoder.forward: cache must hold 2 layer caches, got 0"),
    ("sinusoidal odd", lambda: sinusoidal_positional_encoding(4, 7), r"sinusoidal_positional_encoding: d_model must be even"),
    ("sinusoidal length", lambda: sinusoidal_positional_encoding(-1, 8), r"sinusoidal_positional_encoding: seq_len must be a positive int"),
    ("SinusoidalPE too long", lambda: SinusoidalPositionalEncoding(8, max_len=4)(torch.randn(1, 5, 8)),
     r"SinusoidalPositionalEncoding.forward: positions 0\.\.4 exceed max_len=4"),
    ("LearnedPE width", lambda: LearnedPositionalEmbedding(4, 8)(torch.randn(1, 3, 6)),
     r"LearnedPositionalEmbedding.forward: x must be \(B, T, d_model\) with d_model=8, got \(1, 3, 6\)"),
    ("embedding_lookup range", lambda: embedding_lookup(torch.tensor([[0, 9]]), torch.randn(5, 3)),
     r"embedding_lookup: token ids must lie in \[0, V\) with V=5, got values from 0 to 9"),
    ("embedding_lookup float ids", lambda: embedding_lookup(torch.ones(2, 2), torch.randn(5, 3)),
     r"embedding_lookup: token_ids must be an integer tensor"),
    ("TokenEmbedding rank", lambda: TokenEmbedding(5, 4)(torch.tensor([1, 2])),
     r"TokenEmbedding.forward: token_ids must be \(B, T\), got \(2\); add a batch dimension"),
    ("next_token_probs temperature", lambda: next_token_probs(torch.randn(5), temperature=-1), r"next_token_probs: temperature must be >= 0"),
    ("next_token_probs top_k", lambda: next_token_probs(torch.randn(5), top_k=0), r"next_token_probs: top_k must be an int >= 1"),
    ("next_token_probs top_p", lambda: next_token_probs(torch.randn(5), top_p=1.5), r"next_token_probs: top_p must be in \(0, 1\]"),
    ("next_token_probs int logits", lambda: next_token_probs(torch.tensor([1, 2])), r"next_token_probs: logits must be a float tensor"),
    ("sample_next_token rank", lambda: sample_next_token(torch.ones(3)), r"sample_next_token: probs must be \(B, V\), got \(3\)"),
    ("GPT too long", lambda: GPT(GPT_SMALL)(torch.zeros(1, 9, dtype=torch.long)),
     r"GPT.forward: sequence of 9 tokens \(1, 9\) exceeds context_length=8"),
    ("GPT rank", lambda: GPT(GPT_SMALL)(torch.zeros(5, dtype=torch.long)), r"GPT.forward: token_ids must be \(B, T\) token ids, got \(5\)"),
    ("generate too long", lambda: generate(GPT(GPT_SMALL), torch.zeros(1, 5, dtype=torch.long), 4),
     r"generate: prompt \(1, 5\) plus 4 new tokens exceeds context_length=8"),
    ("Transformer float ids", lambda: Transformer(SEQ2SEQ_SMALL).encode(torch.ones(1, 3)),
     r"Transformer.encode: src_ids must be integer token ids"),
    ("greedy_decode rank", lambda: greedy_decode(Transformer(SEQ2SEQ_SMALL), torch.ones(3, dtype=torch.long), 1, 2),
     r"greedy_decode: src_ids must be \(B, S\) token ids, got \(3\)"),
    ("beam_search batch", lambda: beam_search(Transformer(SEQ2SEQ_SMALL), torch.ones(2, 3, dtype=torch.long), 1, 2),
     r"beam_search: src_ids must be \(1, S\), one sentence at a time, got \(2, 3\)"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "message"), [case[1:] for case in BAD_CALLS], ids=[case[0] for case in BAD_CALLS])
def test_bad_input_is_rejected_with_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
