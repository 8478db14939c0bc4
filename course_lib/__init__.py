"""course_lib: the reference implementation of the course "Transformers, built step by step".

The modules at the top level are the Transformer's parts, one per lesson (see README.md for
the map). Around them: ``data`` (generated corpora and tasks), ``viz`` (plots, the map and the
widgets), ``pretrained`` (real weights), ``checks`` and ``exercise_system`` (the exercises),
and ``tooling`` (site, slides, benchmarks).
"""

import re as _re

from course_lib import _moved
from course_lib.attention import scaled_dot_product_attention
from course_lib.decoder import Decoder, DecoderLayer
from course_lib.embeddings import TokenEmbedding, embedding_lookup
from course_lib.encoder import Encoder, EncoderLayer
from course_lib.feedforward import FeedForward, SwiGLU
from course_lib.generation import beam_search, generate, greedy_decode, next_token_probs, sample_next_token
from course_lib.llama import Llama, LlamaBlock, LlamaConfig
from course_lib.masks import causal_mask, padding_mask
from course_lib.models import GPT, GPTConfig, Transformer, TransformerConfig
from course_lib.multihead import (
    GroupedQueryAttention,
    KVCache,
    MultiHeadAttention,
    merge_heads,
    repeat_kv_heads,
    split_heads,
    use_fast_path,
    use_fused_attention,
)
from course_lib.normalization import LayerNorm, RMSNorm, layer_norm, rms_norm
from course_lib.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_positional_encoding,
)
from course_lib.rotary import apply_rope, rope_angles, rope_frequencies, rotate_half, rotate_interleaved

__version__ = "0.2.0"

_moved.install()


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(_re.match(r"\d+", part).group()) for part in str(text).split(".")[:3])


def require(minimum: str) -> None:
    """Check that the installed course_lib is at least ``minimum`` (for example ``"0.2"``).

    Every lesson calls this in its first cell, so a stale install says so at once instead of
    failing later with an obscure error.
    """
    if not isinstance(minimum, str) or not _re.fullmatch(r"\d+(\.\d+){0,2}", minimum):
        raise ValueError(f'require: minimum must be a version such as "0.2", got {minimum!r}')
    if _version_tuple(__version__) < _version_tuple(minimum):
        raise RuntimeError(
            f"course_lib {__version__} is older than this lesson needs ({minimum}).\n"
            "Update it: open a terminal in the course folder and run  python tasks.py setup  "
            "(or  pip install -e .), then restart the kernel."
        )
    print("course_lib is recent enough for this lesson.")


__all__ = [
    "require",
    "GPT",
    "Decoder",
    "DecoderLayer",
    "Encoder",
    "EncoderLayer",
    "FeedForward",
    "GPTConfig",
    "GroupedQueryAttention",
    "KVCache",
    "LayerNorm",
    "LearnedPositionalEmbedding",
    "Llama",
    "LlamaBlock",
    "LlamaConfig",
    "MultiHeadAttention",
    "RMSNorm",
    "SinusoidalPositionalEncoding",
    "SwiGLU",
    "TokenEmbedding",
    "Transformer",
    "TransformerConfig",
    "__version__",
    "apply_rope",
    "beam_search",
    "causal_mask",
    "embedding_lookup",
    "generate",
    "greedy_decode",
    "layer_norm",
    "merge_heads",
    "next_token_probs",
    "padding_mask",
    "repeat_kv_heads",
    "rms_norm",
    "rope_angles",
    "rope_frequencies",
    "rotate_half",
    "rotate_interleaved",
    "sample_next_token",
    "scaled_dot_product_attention",
    "sinusoidal_positional_encoding",
    "split_heads",
    "use_fast_path",
    "use_fused_attention",
]
