"""Attention, one stage at a time (lesson 03, reused in lesson 12)."""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets
import numpy as np
import torch

from course_lib import viz
from course_lib.activations import ATTENTION_STAGES, attention_stages, run_with_record
from course_lib.example import RUNNING_SENTENCE
from course_lib.masks import causal_mask
from course_lib.multihead import GroupedQueryAttention, MultiHeadAttention
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


def qkv_from_attention(attention, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-head queries, keys and values of a course_lib attention module for one sequence.

    They are read from the record of one forward pass of the module itself (self-attention of
    ``x``), so they are what the module computes. For a ``GroupedQueryAttention`` the keys and
    values are given per query head (each query head gets the key/value head it reads).

    Shapes:
        x: (1, T, d_model) or (T, d_model) -> q, k, v each (n_heads, T, d_head)

    Built in lesson 03 (self-attention); used in lesson 12 with a real model.
    """
    if not isinstance(attention, MultiHeadAttention | GroupedQueryAttention):
        raise ValueError(
            "qkv_from_attention: attention must be a course_lib MultiHeadAttention or GroupedQueryAttention, "
            f"got {type(attention).__name__}"
        )
    if x.dim() == 2:
        x = x.unsqueeze(0)  # (1, T, d_model)
    if isinstance(attention, GroupedQueryAttention):
        record = run_with_record(attention, x)
    else:
        record = run_with_record(attention, x, x, x)
    kv_head = record["kv_head"]  # (n_heads,): the key/value head each query head reads
    return record["q"][0], record["k"][0, kv_head], record["v"][0, kv_head]  # (n_heads, T, d_head) each


STAGE_RECORD_NAMES = {
    "QK^T": "scores",
    "÷ sqrt(d_k)": "scaled",
    "masked": "masked",
    "softmax": "weights",
    "× V": "heads",
}
"""Each stage of ``STAGES`` and the name under which attention records it (``course_lib.activations``)."""


def attention_stage(q, k, v, stage: str, causal: bool) -> np.ndarray:
    """The matrix one stage of scaled dot-product attention produces, for one head.

    The stage is recorded by ``course_lib.attention.scaled_dot_product_attention`` itself
    (``course_lib.activations.attention_stages``), never worked out again here.

    Shapes:
        q (T_q, d_k), k (T_k, d_k), v (T_k, d_v) -> (T_q, T_k), or (T_q, d_v) for "× V"

    Built in lesson 03 (self-attention).
    """
    if stage not in STAGES:
        raise ValueError(f"attention_stage: stage must be one of {STAGES}, got {stage!r}")
    T_q, T_k = q.shape[-2], k.shape[-2]
    mask = causal_mask(T_q)[:, :T_k] if causal else None  # (T_q, T_k), True = may attend
    return attention_stages(q, k, v, mask)[STAGE_RECORD_NAMES[stage]].double().numpy()


_STAGE_TITLES = {  # plain Unicode, not mathtext: parsing TeX on every redraw would slow the widget down
    "QK^T": "stage 1: scores = Q·Kᵀ",
    "÷ sqrt(d_k)": "stage 2: Q·Kᵀ / sqrt(d_k)   (d_k = <DK>)",
    "masked": "stage 3: Q·Kᵀ / sqrt(d_k), set to -inf where the mask blocks",
    "softmax": "stage 4: weights = softmax(Q·Kᵀ / sqrt(d_k)), each row sums to 1",
    "× V": "stage 5: output = softmax(Q·Kᵀ / sqrt(d_k)) · V",
}


class AttentionStepThrough(FigureWidget):
    """Step through scaled dot-product attention for one head (lesson 03; lesson 12 with a real model).

    Controls: ``sentence`` (dropdown), ``head``, ``stage`` (one of ``STAGES``: "QK^T",
    "÷ sqrt(d_k)", "masked", "softmax", "× V"), ``causal`` (apply a causal mask) and
    ``numbers`` (write the values in the cells).

    Every matrix shown is read from a record of attention as it ran (``course_lib.activations``),
    never computed by the widget. Where the record comes from, in order of precedence:

    * ``record_fn(sentence) -> (tokens, record)``: the record of one attention module of a model
      (``run_with_record(model, ...).part("layers.3.self_attn")``), holding ``q``, ``scores``,
      ``scaled``, ``masked``, ``weights`` and ``heads`` with a leading batch of 1. The model's
      own mask applies, so the ``causal`` box is disabled.
    * ``qkv_fn(sentence) -> (tokens, q, k, v)``: ``tokens`` is a list of T strings and q, k, v
      are tensors (n_heads, T, d_head); the stages are those ``scaled_dot_product_attention``
      records when it runs on them.
    * ``attention`` (a course_lib ``MultiHeadAttention``) and ``embed(sentence) -> (tokens, x)``
      with x (1, T, d_model): the record of ``attention(x, x, x)``.
    * none of them: a seeded ``MultiHeadAttention(d_model, n_heads)`` over seeded word embeddings
      plus sinusoidal positions of the words of ``sentences`` (default: the running sentence
      and two more).

    ``current_matrix()`` is the stage's matrix for the chosen head: (T, T), or (T, d_head) for "× V".

    Example with a real model (lesson 12): the record of one layer of a course_lib encoder::

        def record_fn(sentence):
            token_ids, attention_mask = tokenize_batch([sentence], tokenizer)  # (1, T)
            record = run_with_record(model, token_ids, attention_mask)
            return tokenizer.encode(sentence).tokens, record.part(f"layers.{n}.self_attn")

        AttentionStepThrough(sentences=["the cat sat on the mat"], record_fn=record_fn)
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
        record_fn: Callable | None = None,
    ):
        self.sentences = list(sentences) if sentences is not None else list(DEFAULT_SENTENCES)
        if not self.sentences:
            raise ValueError("AttentionStepThrough: sentences must not be empty")
        self.record_fn, self.qkv_fn = record_fn, qkv_fn
        if record_fn is None and qkv_fn is None:
            if attention is not None or embed is not None:
                if attention is None or embed is None:
                    raise ValueError("AttentionStepThrough: pass both attention and embed (or qkv_fn, or record_fn)")
                self.attention, self.embed = attention, embed
            else:
                model = _DefaultAttentionModel(self.sentences, d_model, n_heads, seed)
                self.attention, self.embed = model.attention, model.embed
        self._cache: dict[tuple[str, bool], tuple] = {}
        _, stages, _ = self._stages(self.sentences[0], causal)
        n_heads = stages["weights"].shape[0]
        controls = {
            "sentence": widgets.Dropdown(options=self.sentences, value=self.sentences[0], description="sentence"),
            "head": widgets.IntSlider(value=0, min=0, max=n_heads - 1, description="head"),
            "stage": widgets.ToggleButtons(options=STAGES, value=stage, description="stage"),
            "causal": widgets.Checkbox(value=causal, description="causal mask", disabled=record_fn is not None),
            "numbers": widgets.Checkbox(value=False, description="show numbers"),
        }
        controls["sentence"].layout.width = "420px"
        super().__init__(controls, figsize=(8.5, 6.2))

    def _record_of_module(self, sentence: str, causal: bool):
        """(tokens, attention's record, d_k) from one run of the course_lib module."""
        tokens, x = self.embed(sentence)  # x: (1, T, d_model)
        mask = causal_mask(x.shape[1], device=x.device) if causal else None  # (T, T), True = may attend
        record = run_with_record(self.attention, x, x, x, mask=mask)
        return tokens, {name: record[name][0] for name in ATTENTION_STAGES}, record["q"].shape[-1]

    def _record_of_qkv(self, sentence: str, causal: bool):
        """(tokens, the stages scaled_dot_product_attention records for the hook's q, k, v, d_k)."""
        tokens, q, k, v = self.qkv_fn(sentence)
        q, k, v = (torch.as_tensor(t).detach() for t in (q, k, v))
        where = "AttentionStepThrough"
        for name, tensor in (("q", q), ("k", k), ("v", v)):
            if tensor.dim() != 3:
                raise ValueError(f"{where}: qkv_fn must return {name} (n_heads, T, d_head), got {tuple(tensor.shape)}")
        if q.shape[1] != len(tokens) or k.shape[1] != len(tokens):
            raise ValueError(
                f"{where}: qkv_fn returned {len(tokens)} tokens but q has T={q.shape[1]} and k has T={k.shape[1]} "
                f"(q {tuple(q.shape)}, k {tuple(k.shape)}); return one token per position"
            )
        mask = causal_mask(q.shape[1], device=q.device)[:, : k.shape[1]] if causal else None  # (T, T_k)
        return tokens, attention_stages(q, k, v, mask), q.shape[-1]

    def _record_of_hook(self, sentence: str):
        """(tokens, the record record_fn returns, d_k), checked: one token per query."""
        tokens, record = self.record_fn(sentence)
        where = "AttentionStepThrough"
        missing = [name for name in (*ATTENTION_STAGES, "q") if name not in record]
        if missing:
            raise ValueError(
                f"{where}: record_fn must return the record of one attention module "
                f"(record.part('layers.0.self_attn')), which lacks {missing}"
            )
        stages = {name: record[name][0] if record[name].dim() == 4 else record[name] for name in ATTENTION_STAGES}
        if stages["weights"].shape[1] != len(tokens):
            raise ValueError(
                f"{where}: record_fn returned {len(tokens)} tokens but the weights have "
                f"T_q={stages['weights'].shape[1]}; return one token per position"
            )
        return tokens, stages, record["q"].shape[-1]

    def _stages(self, sentence: str, causal: bool):
        """(tokens, stages, d_k) for a sentence: each stage (n_heads, T, T) or (n_heads, T, d_head), cached."""
        key = (sentence, bool(causal) and self.record_fn is None)
        if key not in self._cache:
            if self.record_fn is not None:
                tokens, stages, d_k = self._record_of_hook(sentence)
            elif self.qkv_fn is not None:
                tokens, stages, d_k = self._record_of_qkv(sentence, causal)
            else:
                tokens, stages, d_k = self._record_of_module(sentence, causal)
            self._cache[key] = (list(tokens), {name: t.detach().cpu() for name, t in stages.items()}, d_k)
        return self._cache[key]

    def _current(self):
        return self._stages(self.controls["sentence"].value, self.controls["causal"].value)

    def current_tokens(self) -> list[str]:
        """Tokens of the chosen sentence."""
        return self._current()[0]

    def current_matrix(self) -> np.ndarray:
        """The matrix shown: the chosen stage for the chosen head, read from the record."""
        _, stages, _ = self._current()
        name = STAGE_RECORD_NAMES[self.controls["stage"].value]
        return stages[name][self.controls["head"].value].double().numpy()

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
        d_k = self._current()[2]
        if stage == "softmax":
            self.heatmap.set_cmap(viz.get_cmap("rocket").with_extremes(bad=(1, 1, 1, 0)))
            # From 0 to this head's largest weight: on a fixed 0-1 scale, weights of 0.05-0.25 all look black.
            viz.update_image(self.heatmap, matrix, vmin=0.0, vmax=max(float(np.nanmax(matrix)), 1e-6))
            self.colorbar.set_label("attention weight (scale: 0 to the largest)")
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
        mask_note = "  [causal mask on]" if self.controls["causal"].value and self.record_fn is None else ""
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
