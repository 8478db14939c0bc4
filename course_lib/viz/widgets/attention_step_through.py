"""Attention, one stage at a time (lesson 03, reused in lesson 12)."""

from __future__ import annotations

import math
from collections.abc import Callable

import ipywidgets as widgets
import numpy as np
import torch

from course_lib import viz
from course_lib.attention import scaled_dot_product_attention
from course_lib.example import RUNNING_SENTENCE
from course_lib.masks import causal_mask
from course_lib.multihead import MultiHeadAttention, split_heads
from course_lib.positional import sinusoidal_positional_encoding
from course_lib.viz.widgets.base import FigureWidget

# ----------------------------------------------------------------------------------------
# 2. Attention, one stage at a time (lesson 03, reused in lesson 12)
# ----------------------------------------------------------------------------------------

STAGES = ("QK^T", "÷ sqrt(d_k)", "masked", "softmax", "× V")
"""The stages of ``AttentionStepThrough``, in order."""

DEFAULT_SENTENCES = (
    RUNNING_SENTENCE,
    "the dog chased the ball across the park",
    "我 喜欢 在 公园 里 读书",  # "I like reading in the park": tokens as words, to show CJK labels
)


def sentence_tokens(sentence: str) -> list[str]:
    """The course's toy tokenizer for the widgets: split on whitespace."""
    return sentence.split()


class _DefaultAttentionModel:
    """A seeded word embedding + sinusoidal positions + a course_lib MultiHeadAttention."""

    def __init__(self, sentences, d_model: int, n_heads: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.vocabulary = sorted({word for sentence in sentences for word in sentence_tokens(sentence)})
        # float32 throughout, whatever the session's default dtype
        self.table = torch.randn(
            len(self.vocabulary), d_model, generator=generator, dtype=torch.float32
        )  # (V, d_model)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.attention = MultiHeadAttention(d_model, n_heads).float()
        self.attention.eval()

    def embed(self, sentence: str) -> tuple[list[str], torch.Tensor]:
        tokens = sentence_tokens(sentence)
        ids = torch.tensor([self.vocabulary.index(word) for word in tokens])  # (T,)
        positions = sinusoidal_positional_encoding(len(tokens), self.table.shape[1]).float()  # (T, d_model)
        x = self.table[ids] + positions  # (T, d_model)
        return tokens, x.unsqueeze(0)  # (1, T, d_model)


def qkv_from_attention(attention: MultiHeadAttention, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-head queries, keys and values of a course_lib ``MultiHeadAttention`` for one sequence.

    Shapes:
        x: (1, T, d_model) or (T, d_model) -> q, k, v each (n_heads, T, d_head)
    """
    if x.dim() == 2:
        x = x.unsqueeze(0)  # (1, T, d_model)
    with torch.no_grad():
        q = split_heads(attention.w_q(x), attention.n_heads)[0]  # (n_heads, T, d_head)
        k = split_heads(attention.w_k(x), attention.n_heads)[0]  # (n_heads, T, d_head)
        v = split_heads(attention.w_v(x), attention.n_heads)[0]  # (n_heads, T, d_head)
    return q, k, v


def attention_stage(q, k, v, stage: str, causal: bool) -> np.ndarray:
    """The matrix one stage of scaled dot-product attention produces, for one head.

    ``softmax`` and ``× V`` are taken from ``course_lib.attention.scaled_dot_product_attention``.

    Shapes:
        q (T_q, d_k), k (T_k, d_k), v (T_k, d_v) -> (T_q, T_k), or (T_q, d_v) for "× V"
    """
    if stage not in STAGES:
        raise ValueError(f"attention_stage: stage must be one of {STAGES}, got {stage!r}")
    d_k = q.shape[-1]
    T_q, T_k = q.shape[-2], k.shape[-2]
    mask = causal_mask(T_q)[:, :T_k] if causal else None  # (T_q, T_k), True = may attend
    with torch.no_grad():
        scores = q @ k.transpose(-2, -1)  # (T_q, T_k)
        if stage == "QK^T":
            return scores.double().numpy()
        scaled = scores / math.sqrt(d_k)  # (T_q, T_k)
        if stage == "÷ sqrt(d_k)":
            return scaled.double().numpy()
        if stage == "masked":
            masked = scaled if mask is None else scaled.masked_fill(~mask, float("-inf"))  # (T_q, T_k)
            return masked.double().numpy()
        output, weights = scaled_dot_product_attention(q, k, v, mask)  # (T_q, d_v), (T_q, T_k)
        return (weights if stage == "softmax" else output).double().numpy()


_STAGE_TITLES = {  # plain Unicode, not mathtext: parsing TeX on every redraw would slow the widget down
    "QK^T": "stage 1: scores = Q·Kᵀ",
    "÷ sqrt(d_k)": "stage 2: Q·Kᵀ / √d_k   (d_k = <DK>)",
    "masked": "stage 3: Q·Kᵀ / √d_k, set to -inf where the mask blocks",
    "softmax": "stage 4: weights = softmax(Q·Kᵀ / √d_k), each row sums to 1",
    "× V": "stage 5: output = softmax(Q·Kᵀ / √d_k) · V",
}


class AttentionStepThrough(FigureWidget):
    """Step through scaled dot-product attention for one head (lesson 03; lesson 12 with a real model).

    Controls: ``sentence`` (dropdown), ``head``, ``stage`` (one of ``STAGES``: "QK^T",
    "÷ sqrt(d_k)", "masked", "softmax", "× V"), ``causal`` (apply a causal mask) and
    ``numbers`` (write the values in the cells).

    Where q, k and v come from, in order of precedence:

    * ``qkv_fn(sentence) -> (tokens, q, k, v)``: the hook for any model (e.g. a pretrained
      one in lesson 12); ``tokens`` is a list of T strings and q, k, v are tensors
      (n_heads, T, d_head).
    * ``attention`` (a course_lib ``MultiHeadAttention``) and ``embed(sentence) -> (tokens, x)``
      with x (1, T, d_model): q, k, v are that module's projections of x, split into heads.
    * neither: a seeded ``MultiHeadAttention(d_model, n_heads)`` over seeded word embeddings
      plus sinusoidal positions of the words of ``sentences`` (default: the running sentence
      and two more).

    ``current_matrix()`` is the stage's matrix for the chosen head: (T, T), or (T, d_head) for "× V".

    Example with a real model (lesson 12): any function that returns one layer's per-head
    queries, keys and values will do, e.g. for layer ``n`` of a course_lib encoder::

        def qkv_fn(sentence):
            tokens, hidden = hidden_states_before_layer(sentence, n)  # your code: (1, T, d_model)
            q, k, v = qkv_from_attention(encoder.layers[n].self_attn, hidden)  # (n_heads, T, d_head) each
            return tokens, q, k, v

        AttentionStepThrough(sentences=["the cat sat on the mat"], qkv_fn=qkv_fn)
    """

    def __init__(
        self,
        sentences=None,
        d_model: int = 32,
        n_heads: int = 4,
        seed: int = 0,
        attention: MultiHeadAttention | None = None,
        embed: Callable | None = None,
        qkv_fn: Callable | None = None,
        stage: str = "softmax",
        causal: bool = False,
    ):
        self.sentences = list(sentences) if sentences is not None else list(DEFAULT_SENTENCES)
        if not self.sentences:
            raise ValueError("AttentionStepThrough: sentences must not be empty")
        if qkv_fn is not None:
            self.qkv_fn = qkv_fn
        elif attention is not None or embed is not None:
            if attention is None or embed is None:
                raise ValueError("AttentionStepThrough: pass both attention and embed (or qkv_fn)")
            self.attention, self.embed = attention, embed
            self.qkv_fn = self._qkv_from_module
        else:
            model = _DefaultAttentionModel(self.sentences, d_model, n_heads, seed)
            self.attention, self.embed = model.attention, model.embed
            self.qkv_fn = self._qkv_from_module
        self._cache: dict[str, tuple] = {}
        tokens, q, _, _ = self._qkv(self.sentences[0])
        n_heads = q.shape[0]
        controls = {
            "sentence": widgets.Dropdown(options=self.sentences, value=self.sentences[0], description="sentence"),
            "head": widgets.IntSlider(value=0, min=0, max=n_heads - 1, description="head"),
            "stage": widgets.ToggleButtons(options=STAGES, value=stage, description="stage"),
            "causal": widgets.Checkbox(value=causal, description="causal mask"),
            "numbers": widgets.Checkbox(value=False, description="show numbers"),
        }
        controls["sentence"].layout.width = "420px"
        super().__init__(controls, figsize=(8.5, 6.2))

    def _qkv_from_module(self, sentence: str):
        tokens, x = self.embed(sentence)
        q, k, v = qkv_from_attention(self.attention, x)  # (n_heads, T, d_head) each
        return tokens, q, k, v

    def _qkv(self, sentence: str):
        """(tokens, q, k, v) for a sentence, checked and cached."""
        if sentence not in self._cache:
            tokens, q, k, v = self.qkv_fn(sentence)
            q, k, v = (torch.as_tensor(t).detach() for t in (q, k, v))
            where = "AttentionStepThrough"
            for name, tensor in (("q", q), ("k", k), ("v", v)):
                if tensor.dim() != 3:
                    raise ValueError(
                        f"{where}: qkv_fn must return {name} (n_heads, T, d_head), got {tuple(tensor.shape)}"
                    )
            if q.shape[1] != len(tokens) or k.shape[1] != len(tokens):
                raise ValueError(
                    f"{where}: qkv_fn returned {len(tokens)} tokens but q has T={q.shape[1]} and k has T={k.shape[1]} "
                    f"(q {tuple(q.shape)}, k {tuple(k.shape)}); return one token per position"
                )
            self._cache[sentence] = (list(tokens), q, k, v)
        return self._cache[sentence]

    def current_tokens(self) -> list[str]:
        """Tokens of the chosen sentence."""
        return self._qkv(self.controls["sentence"].value)[0]

    def current_matrix(self) -> np.ndarray:
        """The matrix shown: the chosen stage for the chosen head."""
        _, q, k, v = self._qkv(self.controls["sentence"].value)
        head = self.controls["head"].value
        return attention_stage(q[head], k[head], v[head], self.controls["stage"].value, self.controls["causal"].value)

    def _build_figure(self) -> None:
        self.ax = self.figure.add_subplot()
        self.heatmap = viz.plot_matrix(np.zeros((2, 2)), ax=self.ax, colorbar=True)
        self.colorbar = self.heatmap.colorbar_
        self.cell_texts: list = []
        self.inf_markers = None

    def _update(self) -> None:
        tokens = self.current_tokens()
        stage = self.controls["stage"].value
        matrix = self.current_matrix()
        _, q, _, _ = self._qkv(self.controls["sentence"].value)
        d_k = q.shape[-1]
        if stage == "softmax":
            self.heatmap.set_cmap(viz.get_cmap("rocket").with_extremes(bad=(1, 1, 1, 0)))
            viz.update_image(self.heatmap, matrix, vmin=0.0, vmax=1.0)
            self.colorbar.set_label("attention weight")
        else:
            self.heatmap.set_cmap(viz.get_cmap("vlag").with_extremes(bad=(1, 1, 1, 0)))
            viz.update_image(self.heatmap, matrix, center=0.0)
            self.colorbar.set_label("output value" if stage == "× V" else "score")
        if stage == "× V":
            dims = [str(i) for i in range(matrix.shape[1])]
            viz.set_tick_labels(self.ax, tokens, dims)
            self.ax.set_xlabel("value dimension (d_head)")
        else:
            viz.set_tick_labels(self.ax, tokens, tokens)
            self.ax.set_xlabel("key (attended to)")
        self.ax.set_ylabel("query (attending)")
        mask_note = "  [causal mask on]" if self.controls["causal"].value else ""
        head = self.controls["head"].value
        self.ax.set_title(_STAGE_TITLES[stage].replace("<DK>", str(d_k)) + f"\nhead {head}{mask_note}", fontsize=11)
        for text in self.cell_texts:
            text.remove()
        self.cell_texts = []
        if self.controls["numbers"].value:
            self.cell_texts = viz.annotate_cells(self.heatmap, matrix, "{:.2f}")
        show_markers = stage == "masked" and not self.controls["numbers"].value
        self.inf_markers = viz.mark_infinite_cells(
            self.heatmap, matrix if show_markers else np.zeros((1, 1)), self.inf_markers
        )

    def _layout_key(self):
        return (self.controls["sentence"].value, self.controls["stage"].value == "× V")

    def _csv_labels(self):
        tokens = self.current_tokens()
        matrix = self.current_matrix()
        cols = tokens if matrix.shape[1] == len(tokens) and self.controls["stage"].value != "× V" else None
        return tokens, cols or [f"dim {i}" for i in range(matrix.shape[1])]
