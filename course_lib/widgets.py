"""Interactive widgets of the course (ipywidgets + matplotlib only, no JavaScript of our own).

How to use one in a notebook: build it and put the object last in a cell::

    # NBVAL_IGNORE_OUTPUT
    explorer = PositionalEncodingExplorer()
    explorer

How they are built (the same for every widget):

* the figure is built once (a ``matplotlib.figure.Figure`` that pyplot does not know
  about, so no duplicate static copy appears under the cell);
* a control change updates the artists in place (``im.set_data``, ``set_clim``, bar
  heights, texts) and renders the figure to PNG bytes into an ``ipywidgets.Image``;
* an exception raised while updating is written into an ``ipywidgets.Output`` under the
  widget (and kept on ``.last_error``) instead of disappearing;
* ``_repr_mimebundle_`` returns the live widget view plus an ``image/png`` of the current
  figure, so a stored notebook read without a kernel still shows a figure.

Every widget has ``.widget`` (the ipywidgets container), ``.figure``, ``.controls`` (name ->
control), ``.current_matrix()`` (numpy array of the data shown), ``.export_png(path)`` and
``.export_csv(path)``, plus "Save PNG" / "Save CSV" buttons that write into the working folder.
"""

from __future__ import annotations

import base64
import csv
import io
import math
import re
import time
import traceback
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import PIL.Image
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from course_lib import viz
from course_lib.attention import scaled_dot_product_attention
from course_lib.embeddings import TokenEmbedding
from course_lib.encoder import EncoderLayer
from course_lib.example import RUNNING_SENTENCE
from course_lib.generation import next_token_probs
from course_lib.masks import causal_mask, combine_masks, padding_mask
from course_lib.multihead import MultiHeadAttention, merge_heads, split_heads
from course_lib.positional import sinusoidal_positional_encoding

# ----------------------------------------------------------------------------------------
# The common machinery
# ----------------------------------------------------------------------------------------


def figure_to_png(figure: Figure, dpi: int | None = None) -> bytes:
    """Render a matplotlib figure to PNG bytes with a single draw (Agg, fast PNG compression).

    ``dpi`` defaults to the figure's own.
    """
    if dpi is not None and dpi != figure.dpi:
        figure.set_dpi(dpi)
    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    canvas.draw()
    picture = PIL.Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)  # fast to encode; a few kB larger
    return buffer.getvalue()


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class FigureWidget:
    """Base class: a figure rendered as PNG into an ``ipywidgets.Image`` with controls above it.

    Subclasses fill ``self.controls``, build ``self.figure`` once in ``_build_figure`` and
    change its artists in ``_update``; they return the displayed data from ``current_matrix``.
    """

    dpi = 80

    def __init__(self, controls: dict[str, widgets.Widget], figsize=(10, 5)):
        self.controls = controls
        # Constrained layout is computed on the first draw and again only when the labels change
        # (see _layout_key): laying the figure out on every update would double the update time.
        self.figure = Figure(figsize=figsize, dpi=self.dpi, layout="constrained")
        FigureCanvasAgg(self.figure)
        self._laid_out_for: object = object()
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        self.output = widgets.Output()
        self.last_error: BaseException | None = None
        self.update_seconds: deque[float] = deque(maxlen=200)
        self._held = False
        self._missed_update = False
        self.status = widgets.Label(value="")
        save_png = widgets.Button(description="Save PNG", icon="image", layout=widgets.Layout(width="120px"))
        save_csv = widgets.Button(description="Save CSV", icon="table", layout=widgets.Layout(width="120px"))
        save_png.on_click(self._guarded(lambda _: self._save("png")))
        save_csv.on_click(self._guarded(lambda _: self._save("csv")))
        self.buttons = {"save_png": save_png, "save_csv": save_csv}
        self._build_figure()
        self.refresh()
        for control in controls.values():
            control.observe(self._guarded(lambda _change: self.refresh()), names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap")),
                self.image,
                widgets.HBox([save_png, save_csv, self.status]),
                self.output,
            ]
        )

    # -- to be provided by each widget --
    def _build_figure(self) -> None:
        raise NotImplementedError

    def _update(self) -> None:
        raise NotImplementedError

    def current_matrix(self) -> np.ndarray:
        """The numbers currently displayed (see each widget's docstring)."""
        raise NotImplementedError

    def _layout_key(self) -> object:
        """Anything whose change needs a new layout (e.g. the tick labels); constant by default."""
        return None

    def _csv_labels(self) -> tuple[list[str] | None, list[str] | None]:
        """Row and column labels written by ``export_csv`` (None for plain indices)."""
        return None, None

    # -- shared behaviour --
    def _guarded(self, callback: Callable) -> Callable:
        """Wrap a callback so that an exception is shown in the Output widget, never lost."""

        def run(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except Exception as error:  # shown to the learner, kept on .last_error
                self.last_error = error
                self.output.append_stderr("".join(traceback.format_exception(error)))
                return None

        return run

    def refresh(self) -> None:
        """Redraw from the current control values and put the new PNG into the Image widget.

        The time it took is appended to ``update_seconds`` (the latest 200 updates).
        """
        if self._held:
            self._missed_update = True
            return
        start = time.perf_counter()
        self._update()
        key = self._layout_key()
        self.figure.set_layout_engine("constrained" if key != self._laid_out_for else "none")
        self._laid_out_for = key
        self.image.value = figure_to_png(self.figure, self.dpi)
        self.update_seconds.append(time.perf_counter() - start)

    @contextmanager
    def hold(self):
        """Change several controls at once and redraw only once, at the end::

        with explorer.hold():
            explorer.controls["d_model"].value = 16
            explorer.controls["base"].value = 100.0
        """
        self._held = True
        self._missed_update = False
        try:
            yield self
        finally:
            self._held = False
            if self._missed_update:
                self._guarded(self.refresh)()

    def export_png(self, path) -> Path:
        """Write the current figure as a PNG file; returns the path."""
        path = Path(path)
        self.figure.savefig(path, format="png", dpi=110, bbox_inches="tight")
        return path

    def export_csv(self, path) -> Path:
        """Write ``current_matrix()`` as CSV (with row/column labels when there are some); returns the path."""
        path = Path(path)
        matrix = np.atleast_2d(self.current_matrix())
        row_labels, col_labels = self._csv_labels()
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if col_labels is not None:
                writer.writerow(([""] if row_labels is not None else []) + list(col_labels))
            for index, row in enumerate(matrix):
                values = [viz.format_cell(v, "{:.6g}") for v in row]
                writer.writerow(([row_labels[index]] if row_labels is not None else []) + values)
        return path

    def _save(self, kind: str) -> None:
        path = Path.cwd() / f"{_snake_case(type(self).__name__)}.{kind}"
        (self.export_png if kind == "png" else self.export_csv)(path)
        self.status.value = f"saved {path}"

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle["image/png"] = base64.b64encode(figure_to_png(self.figure, self.dpi)).decode("ascii")
        bundle["text/plain"] = f"<{type(self).__name__}: a widget; run the notebook to use its controls>"
        return bundle


def _slider_style():
    return {"description_width": "initial"}


# ----------------------------------------------------------------------------------------
# 1. Positional encoding (lesson 02)
# ----------------------------------------------------------------------------------------


class PositionalEncodingExplorer(FigureWidget):
    """Explore the sinusoidal positional encoding (lesson 02).

    Controls: ``d_model`` (even), ``base`` (log scale) and ``position``. Shows the encoding
    table as a heatmap (the chosen position marked), a few dimensions as curves over position,
    and the dot product between the chosen position's vector and every position's vector.

    ``current_matrix()`` is the table ``sinusoidal_positional_encoding(max_len, d_model, base)``,
    shape (max_len, d_model).
    """

    def __init__(self, max_len: int = 64, d_model: int = 64, base: float = 10000.0):
        if max_len < 2 or d_model < 2 or d_model % 2:
            raise ValueError(
                f"PositionalEncodingExplorer: max_len must be >= 2 and d_model even >= 2, got {max_len}, {d_model}"
            )
        self.max_len = max_len
        controls = {
            "d_model": widgets.IntSlider(
                value=d_model, min=2, max=max(128, d_model), step=2, description="d_model", style=_slider_style()
            ),
            "base": widgets.FloatLogSlider(
                value=base, base=10, min=0, max=5, step=0.1, description="base", style=_slider_style()
            ),
            "position": widgets.IntSlider(
                value=min(10, max_len - 1), min=0, max=max_len - 1, description="position", style=_slider_style()
            ),
        }
        super().__init__(controls, figsize=(11, 5.2))

    def _encoding(self) -> np.ndarray:
        d_model = self.controls["d_model"].value
        base = self.controls["base"].value
        return sinusoidal_positional_encoding(self.max_len, d_model, base).double().numpy()  # (max_len, d_model)

    @staticmethod
    def _curve_dims(d_model: int) -> list[int]:
        return sorted({0, 1, 2 * (d_model // 8), 2 * (d_model // 4)} & set(range(d_model)))

    def _build_figure(self) -> None:
        grid = self.figure.add_gridspec(2, 2, width_ratios=[1.1, 1])
        self.ax_table = self.figure.add_subplot(grid[:, 0])
        self.ax_curves = self.figure.add_subplot(grid[0, 1])
        self.ax_dot = self.figure.add_subplot(grid[1, 1])
        encoding = self._encoding()
        self.table_image = viz.plot_pe(encoding, ax=self.ax_table)
        self.position_line = self.ax_table.axhline(0, color="black", linewidth=1.5, linestyle="--")
        self.curve_lines = []
        self.curve_position = self.ax_curves.axvline(0, color="black", linestyle="--", linewidth=1)
        self.ax_curves.set_xlabel("position")
        self.ax_curves.set_ylabel("PE value")
        self.ax_curves.set_ylim(-1.15, 1.15)
        self.ax_curves.set_xlim(0, self.max_len - 1)
        positions = np.arange(self.max_len)
        (self.dot_line,) = self.ax_dot.plot(positions, np.zeros(self.max_len), color=viz.KEPT_COLOUR, marker=".")
        self.dot_marker = self.ax_dot.axvline(0, color="black", linestyle="--", linewidth=1)
        self.ax_dot.set_xlabel("position")
        self.ax_dot.set_ylabel("PE[p] · PE[position]")
        self.ax_dot.set_xlim(0, self.max_len - 1)

    def _update(self) -> None:
        encoding = self._encoding()  # (max_len, d_model)
        d_model = encoding.shape[1]
        position = self.controls["position"].value
        base = self.controls["base"].value
        viz.update_image(self.table_image, encoding, vmin=-1.0, vmax=1.0)
        self.ax_table.set_title(f"PE table: {self.max_len} positions x d_model={d_model}, base={base:.3g}")
        self.position_line.set_ydata([position, position])

        for line in self.curve_lines:
            line.remove()
        self.curve_lines = viz.plot_pe_curves(encoding, self._curve_dims(d_model), ax=self.ax_curves)
        self.curve_position.set_xdata([position, position])
        self.ax_curves.set_title("a few dimensions over position")

        dots = encoding @ encoding[position]  # (max_len,)
        self.dot_line.set_ydata(dots)
        self.dot_marker.set_xdata([position, position])
        self.ax_dot.set_ylim(min(dots.min(), 0) - 0.05 * d_model, dots.max() + 0.05 * d_model)
        self.ax_dot.set_title(f"dot product with position {position}: nearby positions score high")

    def current_matrix(self) -> np.ndarray:
        """The displayed encoding table, shape (max_len, d_model)."""
        return self._encoding()

    def current_dot_products(self) -> np.ndarray:
        """The displayed dot products PE[position] · PE[p] for every p, shape (max_len,)."""
        return np.asarray(self.dot_line.get_ydata(), dtype=float)

    def _csv_labels(self):
        matrix = self.current_matrix()
        return [f"pos {p}" for p in range(matrix.shape[0])], [f"dim {i}" for i in range(matrix.shape[1])]


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


# ----------------------------------------------------------------------------------------
# 3. Masks (lesson 04)
# ----------------------------------------------------------------------------------------

MASK_KINDS = ("none", "causal", "padding", "causal + padding")


class MaskExplorer(FigureWidget):
    """Causal, padding and combined masks, and what they do to softmax (lesson 04).

    The tokens are followed by ``pad_count`` "<pad>" tokens. Left: seeded attention scores
    ``q k^T / sqrt(d)`` with the blocked cells set to -inf (hatched, written "-inf"). Right:
    the weights ``scaled_dot_product_attention`` gives with that mask (blocked cells are 0).

    Controls: ``mask`` (one of ``MASK_KINDS``) and ``pad_count``.

    ``current_matrix()`` is the softmax weights (T, T); ``current_masked_scores()`` the left panel.
    """

    PAD = "<pad>"

    def __init__(self, tokens=None, pad_count: int = 2, seed: int = 0, d: int = 8, max_pad: int = 4):
        self.tokens = list(tokens) if tokens is not None else sentence_tokens(RUNNING_SENTENCE)
        if not self.tokens:
            raise ValueError("MaskExplorer: tokens must not be empty")
        max_pad = max(max_pad, pad_count)
        generator = torch.Generator().manual_seed(seed)
        longest = len(self.tokens) + max_pad
        self.q = torch.randn(longest, d, generator=generator) * 1.5  # (T_max, d)
        self.k = torch.randn(longest, d, generator=generator) * 1.5  # (T_max, d)
        controls = {
            "mask": widgets.ToggleButtons(options=MASK_KINDS, value="causal + padding", description="mask"),
            "pad_count": widgets.IntSlider(value=pad_count, min=0, max=max_pad, description="padding tokens"),
            "numbers": widgets.Checkbox(value=False, description="show numbers"),
        }
        controls["pad_count"].style = _slider_style()
        super().__init__(controls, figsize=(12, 5.6))

    def sequence(self) -> list[str]:
        """The tokens followed by the padding tokens."""
        return self.tokens + [self.PAD] * self.controls["pad_count"].value

    def current_mask(self) -> torch.Tensor | None:
        """The bool mask (T, T) (True = may attend), or None for "none"."""
        sequence = self.sequence()
        T = len(sequence)
        kind = self.controls["mask"].value
        ids = torch.tensor([[0 if token == self.PAD else 1 for token in sequence]])  # (1, T), pad id 0
        causal = causal_mask(T) if "causal" in kind else None  # (T, T)
        padding = padding_mask(ids, pad_id=0)[0, 0] if "padding" in kind else None  # (1, T)
        mask = combine_masks(causal, padding)
        return None if mask is None else mask.expand(T, T)  # (T, T)

    def _attention(self):
        T = len(self.sequence())
        q, k = self.q[:T], self.k[:T]  # (T, d) each
        mask = self.current_mask()
        scores = q @ k.T / math.sqrt(q.shape[-1])  # (T, T)
        masked = scores if mask is None else scores.masked_fill(~mask, float("-inf"))  # (T, T)
        _, weights = scaled_dot_product_attention(q, k, k, mask)  # (T, T)
        return masked.double().numpy(), weights.double().numpy()

    def current_masked_scores(self) -> np.ndarray:
        """The left panel: scores with -inf where the mask blocks, (T, T)."""
        return self._attention()[0]

    def current_matrix(self) -> np.ndarray:
        """The right panel: attention weights after masking and softmax, (T, T)."""
        return self._attention()[1]

    def _build_figure(self) -> None:
        self.ax_scores, self.ax_weights = self.figure.subplots(1, 2)
        self.scores_image = viz.plot_matrix(
            np.zeros((2, 2)), ax=self.ax_scores, center=0.0, colorbar_label="score (blocked = -inf)"
        )
        self.weights_image = viz.plot_attention(np.zeros((2, 2)), ["a", "b"], ["a", "b"], ax=self.ax_weights)
        self.texts: list = []
        self.inf_markers = None

    def _update(self) -> None:
        sequence = self.sequence()
        masked, weights = self._attention()
        viz.update_image(self.scores_image, masked, center=0.0)
        viz.update_image(self.weights_image, weights, vmin=0.0, vmax=1.0)
        for ax in (self.ax_scores, self.ax_weights):
            viz.set_tick_labels(ax, sequence, sequence)
            ax.set_xlabel("key (attended to)")
            ax.set_ylabel("query (attending)")
        kind = self.controls["mask"].value
        blocked = int(np.isneginf(masked).sum())
        self.ax_scores.set_title(f"scores + mask ({kind}): {blocked} cells set to -inf (hatched)")
        self.ax_weights.set_title("softmax weights: blocked cells get 0, rows still sum to 1")
        for text in self.texts:
            text.remove()
        self.texts = []
        if self.controls["numbers"].value:
            self.texts = viz.annotate_cells(self.scores_image, masked, "{:.1f}", fontsize=7)
            self.texts += viz.annotate_cells(self.weights_image, weights, "{:.2f}", fontsize=6.5)
        shown = np.zeros((1, 1)) if self.controls["numbers"].value else masked  # numbers already say -inf
        self.inf_markers = viz.mark_infinite_cells(self.scores_image, shown, self.inf_markers)

    def _layout_key(self):
        return self.controls["pad_count"].value

    def _csv_labels(self):
        sequence = self.sequence()
        return sequence, sequence


# ----------------------------------------------------------------------------------------
# 4. All heads (lessons 05 and 12)
# ----------------------------------------------------------------------------------------


class HeadGrid(FigureWidget):
    """All heads of one layer as small heatmaps; the chosen head enlarged (lessons 05 and 12).

    Shapes:
        weights: (n_heads, T_q, T_k), or (n_layers, n_heads, T_q, T_k) for a layer slider;
        a leading batch of 1 from ``attention_weights`` (1, n_heads, T_q, T_k) is read as one layer.

    Controls: ``layer`` and ``head``. ``current_matrix()`` is the enlarged head's weights (T_q, T_k).
    All heatmaps share one colour scale from 0 to ``vmax``; by default the largest weight shown,
    so the nearly uniform heads of an untrained model are not all drawn black.
    """

    def __init__(self, weights, query_tokens, key_tokens=None, ncols: int = 4, vmax: float | None = None):
        where = "HeadGrid"
        weights = viz.to_numpy(weights, where, "weights")
        if weights.ndim == 3:
            weights = weights[None]  # (1, n_heads, T_q, T_k)
        if weights.ndim != 4:
            raise ValueError(
                f"{where}: weights must be (n_heads, T_q, T_k) or (n_layers, n_heads, T_q, T_k), got {weights.shape}"
            )
        key_tokens = query_tokens if key_tokens is None else key_tokens
        viz._check_attention(where, weights[0, 0], query_tokens, key_tokens)
        self.weights = weights  # (n_layers, n_heads, T_q, T_k)
        self.query_tokens = [str(t) for t in query_tokens]
        self.key_tokens = [str(t) for t in key_tokens]
        self.ncols = ncols
        self.vmax = float(weights.max()) if vmax is None else float(vmax)
        n_layers, n_heads = weights.shape[:2]
        controls = {
            "layer": widgets.IntSlider(value=0, min=0, max=n_layers - 1, description="layer", disabled=n_layers == 1),
            "head": widgets.IntSlider(value=0, min=0, max=n_heads - 1, description="head"),
        }
        super().__init__(controls, figsize=(13, 6))

    def current_matrix(self) -> np.ndarray:
        """Weights of the enlarged head, (T_q, T_k)."""
        return self.weights[self.controls["layer"].value, self.controls["head"].value]

    def _build_figure(self) -> None:
        n_heads = self.weights.shape[1]
        ncols = min(self.ncols, n_heads, max(2, math.ceil(math.sqrt(n_heads))))  # near-square grid
        nrows = math.ceil(n_heads / ncols)
        outer = self.figure.add_gridspec(1, 2, width_ratios=[1.1, 1])
        small = outer[0].subgridspec(nrows, ncols)
        self.small_images = []
        self.small_axes = []
        for head in range(n_heads):
            ax = self.figure.add_subplot(small[divmod(head, ncols)])
            image = viz.plot_matrix(self.weights[0, head], ax=ax, cmap="rocket", colorbar=False, vmin=0, vmax=self.vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.set_title(f"head {head}", fontsize=9, fontfamily="DejaVu Sans")
            ax.set_box_aspect(1)
            self.small_images.append(image)
            self.small_axes.append(ax)
        self.ax_big = self.figure.add_subplot(outer[1])
        self.big_image = viz.plot_attention(
            self.weights[0, 0], self.query_tokens, self.key_tokens, ax=self.ax_big, vmax=self.vmax
        )

    def _update(self) -> None:
        layer, head = self.controls["layer"].value, self.controls["head"].value
        for index, (ax, image) in enumerate(zip(self.small_axes, self.small_images, strict=True)):
            image.set_data(self.weights[layer, index])
            chosen = index == head
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_edgecolor("#0072b2" if chosen else "#cccccc")
                spine.set_linewidth(3 if chosen else 0.8)
            ax.title.set_fontweight("bold" if chosen else "normal")
        self.big_image.set_data(self.current_matrix())
        self.ax_big.set_title(f"layer {layer}, head {head}")

    def _csv_labels(self):
        return self.query_tokens, self.key_tokens


# ----------------------------------------------------------------------------------------
# 5. Sampling (lesson 09)
# ----------------------------------------------------------------------------------------


class SamplingExplorer(FigureWidget):
    """Temperature, top-k and top-p over next-token probabilities (lesson 09).

    Shapes:
        logits: (V,); tokens: V strings. Only the ``max_bars`` most likely tokens are drawn
        (sorted by logit); the probabilities are computed over the whole vocabulary with
        ``course_lib.generation.next_token_probs``.

    Controls: ``temperature`` (0 = greedy), ``top_k`` (0 = off), ``top_p`` (1.0 = off).
    Kept tokens are blue; cut tokens are grey with their pre-cut probability drawn as a hatched
    outline; a dashed line marks the cutoff.

    ``current_matrix()`` is (n_bars, 2): column 0 the probability after temperature only,
    column 1 the final probability (0 for cut tokens). ``current_probs()`` is the final (V,).
    """

    def __init__(self, logits, tokens, max_bars: int = 20):
        where = "SamplingExplorer"
        logits = torch.as_tensor(viz.to_numpy(logits, where, "logits"))
        if logits.dim() != 1:
            raise ValueError(f"{where}: logits must be (V,), got {tuple(logits.shape)}")
        tokens = [str(t) for t in tokens]
        if len(tokens) != logits.shape[0]:
            raise ValueError(
                f"{where}: logits has V={logits.shape[0]} entries but there are {len(tokens)} tokens; pass one per logit"
            )
        self.logits = logits  # (V,)
        self.tokens = tokens
        self.order = torch.argsort(logits, descending=True)[:max_bars]  # (n_bars,)
        V = logits.shape[0]
        controls = {
            "temperature": widgets.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.05, description="temperature"),
            "top_k": widgets.IntSlider(value=0, min=0, max=min(V, 100), description="top-k (0 = off)"),
            "top_p": widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.01, description="top-p (1 = off)"),
        }
        for control in controls.values():
            control.style = _slider_style()
        super().__init__(controls, figsize=(10, 4.6))

    def _settings(self):
        temperature = self.controls["temperature"].value
        top_k = self.controls["top_k"].value or None
        top_p = self.controls["top_p"].value
        return temperature, top_k, (None if top_p >= 1.0 else top_p)

    def current_probs(self) -> np.ndarray:
        """Final probabilities over the whole vocabulary, (V,)."""
        temperature, top_k, top_p = self._settings()
        return next_token_probs(self.logits, temperature, top_k, top_p).double().numpy()

    def current_matrix(self) -> np.ndarray:
        """(n_bars, 2): [probability after temperature only, final probability] of the drawn tokens."""
        temperature, _, _ = self._settings()
        before = next_token_probs(self.logits, temperature).double().numpy()
        order = self.order.numpy()
        return np.stack([before[order], self.current_probs()[order]], axis=1)

    def _build_figure(self) -> None:
        self.ax = self.figure.add_subplot()
        n_bars = len(self.order)
        labels = [self.tokens[i] for i in self.order.tolist()]
        self.kept_bars, self.ghost_bars = viz.plot_sampling_bars(
            np.zeros(n_bars), labels, before_cut=np.zeros(n_bars), ax=self.ax
        )
        self.cutoff_line = self.ax.axvline(0, color="black", linestyle="--", linewidth=1.2)
        self.cutoff_text = self.ax.text(0, 0.95, "", transform=self.ax.get_xaxis_transform(), fontsize=9, va="top")
        self.ax.set_ylim(0, 1.05)

    def _update(self) -> None:
        shown = self.current_matrix()  # (n_bars, 2)
        for bar, ghost, (before, final) in zip(self.kept_bars, self.ghost_bars, shown, strict=True):
            ghost.set_height(before)
            bar.set_height(final)
            bar.set_color(viz.KEPT_COLOUR if final > 0 else viz.GREY)
        kept = int((self.current_probs() > 0).sum())
        temperature, top_k, top_p = self._settings()
        n_bars = len(self.order)
        if kept < n_bars:
            self.cutoff_line.set_xdata([kept - 0.5, kept - 0.5])
            self.cutoff_line.set_visible(True)
            self.cutoff_text.set_position((kept - 0.4, 0.95))
            self.cutoff_text.set_text("cutoff: tokens to the right\nare never sampled")
        else:
            self.cutoff_line.set_visible(False)
            self.cutoff_text.set_text("")
        self.ax.set_ylim(0, max(0.05, float(shown.max()) * 1.15))
        parts = [f"temperature={temperature:.2f}" + (" (greedy)" if temperature == 0 else "")]
        parts.append(f"top-k={top_k}" if top_k else "top-k off")
        parts.append(f"top-p={top_p:.2f}" if top_p else "top-p off")
        self.ax.set_title(f"{', '.join(parts)}: {kept} of {len(self.tokens)} tokens kept")

    def _csv_labels(self):
        return [self.tokens[i] for i in self.order.tolist()], ["p_after_temperature", "p_final"]


# ----------------------------------------------------------------------------------------
# 6. Ablations (lessons 06 and 07)
# ----------------------------------------------------------------------------------------

ABLATIONS = ("no_scaling", "no_causal_mask", "no_residual", "no_positional_encoding")
_ABLATION_LABELS = {
    "no_scaling": "remove ÷ sqrt(d_k)",
    "no_causal_mask": "remove causal mask",
    "no_residual": "remove residual connections",
    "no_positional_encoding": "remove positional encoding",
}


class AblationModel:
    """A small seeded decoder-only stack of course_lib layers with a forward pass that can
    switch parts off, recomputed step by step from the layers' own weights.

    ``EncoderLayer(norm_first=True)`` blocks with a causal mask (a GPT block), over
    ``TokenEmbedding`` + sinusoidal positions. The core modules are not changed: the ablated
    forward pass reads their weights and recomputes attention itself.

    Built for lessons 06 and 07.
    """

    def __init__(self, sentence=RUNNING_SENTENCE, d_model=32, n_heads=4, d_ff=64, n_layers=2, seed=0):
        self.tokens = sentence_tokens(sentence)
        vocabulary = sorted(set(self.tokens))
        self.ids = torch.tensor([[vocabulary.index(word) for word in self.tokens]])  # (1, T)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.embedding = TokenEmbedding(len(vocabulary), d_model)
            self.layers = [EncoderLayer(d_model, n_heads, d_ff, norm_first=True) for _ in range(n_layers)]
        for layer in self.layers:
            layer.eval()
        self.n_heads = n_heads

    def embed(self, positional_encoding: bool = True) -> torch.Tensor:
        """Token embeddings, plus sinusoidal positions unless switched off. (1, T, d_model)."""
        x = self.embedding(self.ids)  # (1, T, d_model)
        if positional_encoding:
            x = x + sinusoidal_positional_encoding(x.shape[1], x.shape[2])  # (1, T, d_model)
        return x

    @torch.no_grad()
    def reference_forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The unablated pass with the layers' own ``forward``: output (T, d_model), weights (n_layers, n_heads, T, T)."""
        x = self.embed()  # (1, T, d_model)
        mask = causal_mask(x.shape[1])  # (T, T)
        weights = []
        for layer in self.layers:
            x = layer(x, mask)  # (1, T, d_model)
            weights.append(layer.self_attn.attention_weights[0])  # (n_heads, T, T)
        return x[0], torch.stack(weights)

    @torch.no_grad()
    def forward(
        self,
        no_scaling: bool = False,
        no_causal_mask: bool = False,
        no_residual: bool = False,
        no_positional_encoding: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward pass step by step, with the chosen parts removed.

        Shapes:
            returns output (T, d_model) and attention weights (n_layers, n_heads, T, T)
        """
        x = self.embed(positional_encoding=not no_positional_encoding)  # (1, T, d_model)
        T = x.shape[1]
        mask = None if no_causal_mask else causal_mask(T)  # (T, T), True = may attend
        all_weights = []
        for layer in self.layers:
            attention = layer.self_attn
            h = layer.norm1(x)  # (1, T, d_model)
            q = split_heads(attention.w_q(h), attention.n_heads)  # (1, n_heads, T, d_head)
            k = split_heads(attention.w_k(h), attention.n_heads)  # (1, n_heads, T, d_head)
            v = split_heads(attention.w_v(h), attention.n_heads)  # (1, n_heads, T, d_head)
            scores = q @ k.transpose(-2, -1)  # (1, n_heads, T, T)
            if not no_scaling:
                scores = scores / math.sqrt(attention.d_head)  # (1, n_heads, T, T)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))  # (1, n_heads, T, T)
            weights = torch.softmax(scores, dim=-1)  # (1, n_heads, T, T)
            attended = attention.w_o(merge_heads(weights @ v))  # (1, T, d_model)
            x = attended if no_residual else x + attended  # (1, T, d_model)
            fed = layer.ff(layer.norm2(x))  # (1, T, d_model)
            x = fed if no_residual else x + fed  # (1, T, d_model)
            all_weights.append(weights[0])  # (n_heads, T, T)
        return x[0], torch.stack(all_weights)


class AblationToggles(FigureWidget):
    """Switch parts of a small seeded model off and see what changes (lessons 06 and 07).

    Checkboxes: ``no_scaling`` (remove ÷ sqrt(d_k)), ``no_causal_mask``, ``no_residual``
    (remove both residual connections of every block), ``no_positional_encoding``; sliders
    ``layer`` and ``head``. Left: the unablated model's attention for that layer/head; middle:
    the ablated model's; right: the output vector's norm per token for both.

    The model is an ``AblationModel`` (``.model``), a decoder-only stack of course_lib layers
    on the running sentence. ``current_matrix()`` is the ablated attention weights (T, T).
    """

    def __init__(self, sentence=RUNNING_SENTENCE, d_model=32, n_heads=4, d_ff=64, n_layers=2, seed=0):
        self.model = AblationModel(sentence, d_model, n_heads, d_ff, n_layers, seed)
        controls = {name: widgets.Checkbox(value=False, description=_ABLATION_LABELS[name]) for name in ABLATIONS}
        controls["layer"] = widgets.IntSlider(value=0, min=0, max=n_layers - 1, description="layer")
        controls["head"] = widgets.IntSlider(value=0, min=0, max=n_heads - 1, description="head")
        self.baseline_output, self.baseline_weights = self.model.forward()
        self._results: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        super().__init__(controls, figsize=(15, 5))

    def ablations(self) -> dict[str, bool]:
        """The checkbox states, as keyword arguments of ``AblationModel.forward``."""
        return {name: self.controls[name].value for name in ABLATIONS}

    def ablated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Output (T, d_model) and weights (n_layers, n_heads, T, T) of the ablated model (computed once per setting)."""
        settings = self.ablations()
        key = tuple(settings.values())
        if key not in self._results:
            self._results[key] = self.model.forward(**settings)
        return self._results[key]

    def current_matrix(self) -> np.ndarray:
        """The ablated model's attention weights for the chosen layer and head, (T, T)."""
        _, weights = self.ablated()
        return weights[self.controls["layer"].value, self.controls["head"].value].double().numpy()

    def current_norms(self) -> np.ndarray:
        """(T, 2): output norm per token, [unablated, ablated]."""
        output, _ = self.ablated()
        return np.stack([self.baseline_output.norm(dim=-1).numpy(), output.norm(dim=-1).numpy()], axis=1)

    def _build_figure(self) -> None:
        tokens = self.model.tokens
        self.ax_base, self.ax_ablated, self.ax_norm = self.figure.subplots(1, 3, width_ratios=[1, 1, 1.1])
        zeros = np.zeros((len(tokens), len(tokens)))
        self.base_image = viz.plot_attention(zeros, tokens, tokens, ax=self.ax_base, vmax=1.0)
        self.ablated_image = viz.plot_attention(zeros, tokens, tokens, ax=self.ax_ablated, vmax=1.0)
        positions = np.arange(len(tokens))
        colours = viz.sns.color_palette("colorblind", 2)
        self.base_bars = self.ax_norm.bar(positions - 0.2, zeros[0], width=0.4, color=colours[0], label="unablated")
        self.ablated_bars = self.ax_norm.bar(positions + 0.2, zeros[0], width=0.4, color=colours[1], label="ablated")
        self.ax_norm.set_xticks(positions, tokens, rotation=45, ha="right", rotation_mode="anchor")
        self.ax_norm.set_xlabel("token")
        self.ax_norm.set_ylabel("‖output vector‖")
        self.ax_norm.legend(loc="upper left", fontsize=9)
        self.ax_norm.set_title("output norm per token")

    def _update(self) -> None:
        layer, head = self.controls["layer"].value, self.controls["head"].value
        self.base_image.set_data(self.baseline_weights[layer, head].numpy())
        self.ablated_image.set_data(self.current_matrix())
        self.ax_base.set_title(f"unablated: layer {layer}, head {head}")
        removed = [_ABLATION_LABELS[name].removeprefix("remove ") for name, on in self.ablations().items() if on]
        self.ax_ablated.set_title("without " + ", ".join(removed) if removed else "ablated (nothing removed yet)")
        self.ax_ablated.title.set_fontsize(10 if len(removed) > 1 else 12)
        norms = self.current_norms()  # (T, 2)
        for bar, value in zip(self.base_bars, norms[:, 0], strict=True):
            bar.set_height(value)
        for bar, value in zip(self.ablated_bars, norms[:, 1], strict=True):
            bar.set_height(value)
        self.ax_norm.set_ylim(0, float(norms.max()) * 1.15)

    def _csv_labels(self):
        return self.model.tokens, self.model.tokens
