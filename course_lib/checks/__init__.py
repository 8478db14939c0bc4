"""Checkers for the exercise notebooks: ``check_<name>(learner_object)``.

A check cell is ``from course_lib.checks import check_X`` and then ``check_X(your_function)``
(or ``check_X(YourClass)`` for a class exercise: pass the class itself, not an instance).
Each checker runs the learner's work on several seeded cases (batch and head dimensions,
float32 and float64, masks with a fully masked row, dropout in training mode, ...), compares
it with the course_lib reference, and then either prints exactly one deterministic line, such as

    ✓ 03.2 scaled_dot_product_attention: correct on 6 cases (...)

or raises ``CheckFailed`` (an ``AssertionError``) whose message names the mistake and gives
a hint. To name the mistake, a checker also computes what common wrong versions would
return (softmax over the wrong dimension, no scaling, an inverted mask, ...) and says which
one the learner's result matches; when several match on a case, the remaining cases decide
between them (and if none can, the hint lists them all). Only the raise decides: a correct
answer that also prints or warns still passes. A stub that still raises ``NotImplementedError`` fails
with "not implemented yet". Checkers draw their own random numbers from a fixed seed, leave
the global random state and the default dtype as they found them, and work whatever the
default dtype is.

Checkers and what each expects from the learner (tensors are batch first):

    00.1 check_pairwise_squared_distances      pairwise_squared_distances(a (N, d), b (M, d)) -> (N, M), in torch
    00.2 check_linear                          class Linear(in_features, out_features, bias=True), weight
                                               (out_features, in_features), bias; forward(x) = x @ weight.T + bias
    00.3 check_gradient_descent_step           gradient_descent_step(model, x, y, lr) -> float (the MSE before the
                                               step); zero_grad, backward, p -= lr * p.grad under no_grad
    01.1 check_embedding_lookup                embedding_lookup(token_ids (B, T), table (V, d)) -> (B, T, d)
    01.2 check_one_hot_embedding               one_hot_embedding(token_ids (B, T), table (V, d)) -> (B, T, d),
                                               one_hot(token_ids, V).to(table.dtype) @ table (float32 and
                                               float64 tables)
    01.3 check_cosine_similarity_matrix        cosine_similarity_matrix(x (N, d)) -> (N, N); a zero row gives 0
                                               (never NaN)
    02.1 check_sinusoidal_positional_encoding  sinusoidal_positional_encoding(seq_len, d_model, base=10000.0)
                                               -> (seq_len, d_model), sin on even and cos on odd dimensions
    02.2 check_pe_wavelength                   pe_wavelength(i, d_model, base=10000.0) -> float,
                                               2 * pi * base ** (2 * i / d_model)
    02.3 check_add_positional_encoding         add_positional_encoding(x (B, T, d_model)) -> x + PE, (B, T, d_model)
    03.1 check_attention_scores                attention_scores(q (..., T_q, d_k), k (..., T_k, d_k)) -> (..., T_q, T_k)
    03.2 check_scaled_dot_product_attention    scaled_dot_product_attention(q, k, v, mask=None)
                                               -> (output (..., T_q, d_v), weights (..., T_q, T_k)); the mask
                                               part is optional until lesson 04 (its stub may still raise)
    03.3 check_softmax_saturation              softmax_saturation(d) -> tuple of two Python floats (max weight
                                               unscaled, max weight scaled), drawn as described in
                                               check_softmax_saturation's docstring
    04.1 check_causal_mask                     causal_mask(T) -> bool (T, T)
    04.2 check_padding_mask                    padding_mask(token_ids (B, T), pad_id) -> bool (B, 1, 1, T)
    04.3 check_decoder_self_mask               decoder_self_mask(tgt_ids (B, T), pad_id) -> bool (B, 1, T, T)
    05.1 check_split_heads                     split_heads(x (B, T, d_model), n_heads) -> (B, n_heads, T, d_head)
    05.2 check_merge_heads                     merge_heads(x (B, n_heads, T, d_head)) -> (B, T, d_model)
    05.3 check_multi_head_attention            class MultiHeadAttention(d_model, n_heads, dropout=0.0, bias=True),
                                               w_q, w_k, w_v, w_o; forward(query, key, value, mask=None);
                                               keeps .attention_weights (B, n_heads, T_q, T_k); dropout on the
                                               attention weights in training mode
    05.4 check_mha_parameter_count             mha_parameter_count(d_model, bias=True) -> int (not a float)
    06.1 check_layer_norm                      layer_norm(x (..., d), weight (d,), bias (d,), eps=1e-5) -> (..., d)
    06.2 check_feed_forward                    class FeedForward(d_model, d_ff, activation="relu", dropout=0.0),
                                               linear1, linear2; forward(x (B, T, d_model)); "relu" or "gelu";
                                               .last_hidden after the activation; dropout before linear2
    06.3 check_residual_sublayer               residual_sublayer(x, sublayer, norm, norm_first) -> (B, T, d_model)
    07.1 check_encoder_layer                   class EncoderLayer(d_model, n_heads, d_ff, dropout=0.0,
                                               activation="relu", norm_first=False), self_attn, ff, norm1, norm2;
                                               forward(x, mask=None)
    07.2 check_encoder_layer_parameter_count   encoder_layer_parameter_count(d_model, d_ff) -> int
    07.3 check_pad_batch                       pad_batch(sequences: list[list[int]], pad_id) -> int64 (B, T_max)
    08.1 check_decoder_layer                   class DecoderLayer(same arguments as EncoderLayer), self_attn,
                                               cross_attn, ff, norm1, norm2, norm3;
                                               forward(x, memory, self_mask=None, memory_mask=None)
    08.2 check_cross_attention_weights_shape   cross_attention_weights_shape(B, T, S, n_heads) -> tuple
    08.3 check_shift_right                     shift_right(tgt_ids (B, T), bos_id) -> (B, T)
    09.1 check_next_token_probs                next_token_probs(logits (..., V), temperature=1.0, top_k=None, top_p=None)
                                               -> (..., V); temperature 0 = greedy one-hot; top-k before top-p
    09.2 check_greedy_decode                   greedy_decode(model, src_ids (B, S), bos_id, eos_id, max_len)
                                               -> (B, 1 + L), for a course_lib Transformer
    09.3 check_sequence_log_prob               sequence_log_prob(logits (B, T, V), target_ids (B, T)) -> (B,)
    10.1 check_cross_entropy_loss              cross_entropy_loss(logits (B, T, V), targets (B, T), pad_id) -> ()
                                               mean over the non-pad targets of -log_softmax(logits)[target]
    10.2 check_train_step                      train_step(model, batch, loss_fn, optimizer, max_norm) -> float:
                                               backward, clip_grad_norm_, step, gradients cleared once per step
    10.3 check_lr_at                           lr_at(step, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1)
                                               -> float: linear warm-up, then cosine decay to the floor
    11.1 check_sample_sequence                 sample_sequence(model, prompt_ids (B, T), max_new_tokens, temperature,
                                               generator) -> (B, T + max_new_tokens), like generate
    11.2 check_perplexity                      perplexity(token_nll) -> float, exp of the mean
    11.3 check_language_model_loss             language_model_loss(model, ids (B, T + 1), pad_id) -> (), reads
                                               ids[:, :-1], predicts ids[:, 1:], padding left out
    12.1 check_masked_mean_pool                masked_mean_pool(hidden (B, T, d_model), attention_mask (B, T))
                                               -> (B, d_model), the mean over the real tokens
    12.2 check_top_k_similar                   top_k_similar(query (d,), documents (N, d), k) -> int64 (k,),
                                               by cosine similarity, most similar first
    12.3 check_split_fused_qkv                 split_fused_qkv(c_attn_weight (d_model, 3 d_model)) -> (w_q, w_k, w_v),
                                               each (d_model, d_model) in nn.Linear's (out, in) layout
    13.1 check_rms_norm                        rms_norm(x (..., d), weight (d,), eps=1e-6) -> (..., d)
    13.2 check_apply_rope                      apply_rope(x (..., T, d_head), positions (T,), base=10000.0)
                                               -> (..., T, d_head), rotate-half pairs (i, i + d_head/2)
    13.3 check_swiglu                          class SwiGLU(d_model, d_ff, bias=False), gate, up, down;
                                               forward(x) = down(silu(gate(x)) * up(x))
    13.4 check_repeat_kv_heads                 repeat_kv_heads(x (B, n_kv_heads, T, d_head), n_repeats)
                                               -> (B, n_kv_heads * n_repeats, T, d_head)
    13.5 check_merge_pair                      merge_pair(ids: list[int], pair, new_id) -> list[int],
                                               non-overlapping occurrences merged left to right
    14.1 check_dequantize_q4_1_block           dequantize_q4_1_block(block (20,) uint8) -> (32,) float32:
                                               d, m little-endian float16, low nibbles first, d * q + m
    14.2 check_induction_score                 induction_score(weights (n_layers, n_heads, T, T), period)
                                               -> (n_layers, n_heads), mean of weights[..., i, i - period + 1]
                                               over the second copy
    14.3 check_logit_lens                      logit_lens(residuals (..., d_model), final_norm, lm_head)
                                               -> (..., V), softmax(lm_head(final_norm(residuals)))

Built for the exercise notebooks of the PyTorch primer (00) and lessons 01-14.
"""

from course_lib.checks._machinery import CheckFailed
from course_lib.checks.lesson00 import check_gradient_descent_step, check_linear, check_pairwise_squared_distances
from course_lib.checks.lesson01 import check_cosine_similarity_matrix, check_embedding_lookup, check_one_hot_embedding
from course_lib.checks.lesson02 import (
    check_add_positional_encoding,
    check_pe_wavelength,
    check_sinusoidal_positional_encoding,
)
from course_lib.checks.lesson03 import (
    check_attention_scores,
    check_scaled_dot_product_attention,
    check_softmax_saturation,
)
from course_lib.checks.lesson04 import check_causal_mask, check_decoder_self_mask, check_padding_mask
from course_lib.checks.lesson05 import (
    check_merge_heads,
    check_mha_parameter_count,
    check_multi_head_attention,
    check_split_heads,
)
from course_lib.checks.lesson06 import check_feed_forward, check_layer_norm, check_residual_sublayer
from course_lib.checks.lesson07 import check_encoder_layer, check_encoder_layer_parameter_count, check_pad_batch
from course_lib.checks.lesson08 import check_cross_attention_weights_shape, check_decoder_layer, check_shift_right
from course_lib.checks.lesson09 import check_greedy_decode, check_next_token_probs, check_sequence_log_prob
from course_lib.checks.lesson10 import check_cross_entropy_loss, check_lr_at, check_train_step
from course_lib.checks.lesson11 import check_language_model_loss, check_perplexity, check_sample_sequence
from course_lib.checks.lesson12 import check_masked_mean_pool, check_split_fused_qkv, check_top_k_similar
from course_lib.checks.lesson13 import (
    check_apply_rope,
    check_merge_pair,
    check_repeat_kv_heads,
    check_rms_norm,
    check_swiglu,
)
from course_lib.checks.lesson14 import check_dequantize_q4_1_block, check_induction_score, check_logit_lens

__all__ = [
    "CheckFailed",
    "check_add_positional_encoding",
    "check_apply_rope",
    "check_attention_scores",
    "check_causal_mask",
    "check_cosine_similarity_matrix",
    "check_cross_attention_weights_shape",
    "check_cross_entropy_loss",
    "check_decoder_layer",
    "check_decoder_self_mask",
    "check_dequantize_q4_1_block",
    "check_embedding_lookup",
    "check_encoder_layer",
    "check_encoder_layer_parameter_count",
    "check_feed_forward",
    "check_gradient_descent_step",
    "check_greedy_decode",
    "check_induction_score",
    "check_language_model_loss",
    "check_layer_norm",
    "check_linear",
    "check_logit_lens",
    "check_lr_at",
    "check_masked_mean_pool",
    "check_merge_heads",
    "check_merge_pair",
    "check_mha_parameter_count",
    "check_multi_head_attention",
    "check_next_token_probs",
    "check_one_hot_embedding",
    "check_pad_batch",
    "check_padding_mask",
    "check_pairwise_squared_distances",
    "check_pe_wavelength",
    "check_perplexity",
    "check_repeat_kv_heads",
    "check_residual_sublayer",
    "check_rms_norm",
    "check_sample_sequence",
    "check_scaled_dot_product_attention",
    "check_sequence_log_prob",
    "check_shift_right",
    "check_sinusoidal_positional_encoding",
    "check_softmax_saturation",
    "check_split_fused_qkv",
    "check_split_heads",
    "check_swiglu",
    "check_top_k_similar",
    "check_train_step",
]
