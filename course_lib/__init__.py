"""course_lib: the reference implementation of the course "Transformers, built step by step".

Each module mirrors a lesson; see README.md for the map.
"""

__version__ = "0.1.0"

from course_lib.attention import scaled_dot_product_attention
from course_lib.decoder import Decoder, DecoderLayer
from course_lib.embeddings import TokenEmbedding, embedding_lookup
from course_lib.encoder import Encoder, EncoderLayer
from course_lib.feedforward import FeedForward
from course_lib.generation import beam_search, generate, greedy_decode, next_token_probs, sample_next_token
from course_lib.masks import causal_mask, padding_mask
from course_lib.models import GPT, GPTConfig, Transformer, TransformerConfig
from course_lib.multihead import KVCache, MultiHeadAttention, merge_heads, split_heads, use_fused_attention
from course_lib.normalization import LayerNorm, layer_norm
from course_lib.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_positional_encoding,
)

__all__ = [
    "GPT",
    "Decoder",
    "DecoderLayer",
    "Encoder",
    "EncoderLayer",
    "FeedForward",
    "GPTConfig",
    "KVCache",
    "LayerNorm",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "SinusoidalPositionalEncoding",
    "TokenEmbedding",
    "Transformer",
    "TransformerConfig",
    "__version__",
    "beam_search",
    "causal_mask",
    "embedding_lookup",
    "generate",
    "greedy_decode",
    "layer_norm",
    "merge_heads",
    "next_token_probs",
    "padding_mask",
    "sample_next_token",
    "scaled_dot_product_attention",
    "sinusoidal_positional_encoding",
    "split_heads",
    "use_fused_attention",
]
