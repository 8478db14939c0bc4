"""Interactive widgets of the course (ipywidgets + matplotlib only, no JavaScript of our own).

Display a widget by putting the object last in a notebook cell.
"""

from __future__ import annotations


class PositionalEncodingExplorer:
    """Lesson 02: sliders for d_model, base and position over the sinusoidal encoding."""

    def __init__(self, max_len=64, d_model=64, base=10000.0):
        raise NotImplementedError("PositionalEncodingExplorer: being written")


class AttentionStepThrough:
    """Lesson 03 (and 12): each stage of scaled dot-product attention for one head."""

    def __init__(self, sentences=None, d_model=32, n_heads=4, seed=0, attention=None, embed=None, qkv_fn=None):
        raise NotImplementedError("AttentionStepThrough: being written")


class MaskExplorer:
    """Lesson 04: causal, padding and combined masks and the softmax weights after masking."""

    def __init__(self, tokens=None, pad_count=2):
        raise NotImplementedError("MaskExplorer: being written")


class HeadGrid:
    """Lessons 05 and 12: all heads of one layer as small heatmaps, one head enlarged."""

    def __init__(self, weights, query_tokens, key_tokens):
        raise NotImplementedError("HeadGrid: being written")


class SamplingExplorer:
    """Lesson 09: temperature, top-k and top-p over next-token probabilities."""

    def __init__(self, logits, tokens):
        raise NotImplementedError("SamplingExplorer: being written")


class AblationToggles:
    """Lessons 06/07: switch off sqrt(d_k) scaling, causal mask, residuals or positions."""

    def __init__(self):
        raise NotImplementedError("AblationToggles: being written")
