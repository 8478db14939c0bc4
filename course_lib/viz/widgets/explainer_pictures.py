"""What the explainer draws with: tokens shown readably, heatmap records, and pictures that
redraw only the artists a control changed (over a saved background).

Built in lesson 11 (train a tiny GPT); used on a real model in lesson 14.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import NamedTuple

import ipywidgets as widgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from course_lib.llama import Llama
from course_lib.models import GPT
from course_lib.viz.widgets.base import canvas_to_png

_VISIBLE_CHARACTERS = str.maketrans(
    {**{code: f"\\x{code:02x}" for code in (*range(32), 127)}, " ": "␣", "\n": "↵", "\t": "⇥"}
)  # a space, a newline and a tab as symbols; other control characters as \x0d ...


def readable_tokens(tokenizer, ids) -> list[str]:
    """One readable label per token id.

    A byte-level BPE (``ByteLevelBPETokenizer``) gives its pieces as text (``token_pieces``:
    ``" the"``, or ``<e4 bd>`` for part of a character) with spaces shown as ``␣``, newlines as
    ``↵``, tabs as ``⇥`` and other control characters as ``\\x0d``; the tokenizers of lesson 01
    give their tokens as they are.

    Built in lesson 11 (train a tiny GPT); byte-level pieces for lesson 14.
    """
    if hasattr(tokenizer, "token_pieces"):
        return [piece.translate(_VISIBLE_CHARACTERS) or "∅" for piece in tokenizer.token_pieces(list(ids))]
    return tokenizer.ids_to_tokens(list(ids))


def _plot_label(token: str) -> str:
    """A token as a matplotlib label: ``$`` escaped, so no label is read as mathtext."""
    return token.replace("$", r"\$")


def _block_parts(model) -> dict[str, str]:
    """The names of a block's parts (its norms and MLP) in each family of course_lib models."""
    if isinstance(model, Llama):
        return {"attention_norm": "attn_norm", "mlp_norm": "mlp_norm", "mlp": "mlp", "norm": "RMSNorm"}
    if isinstance(model, GPT):
        return {"attention_norm": "norm1", "mlp_norm": "norm2", "mlp": "ff", "norm": "LayerNorm"}
    raise ValueError(f"LanguageModelExplainer: model must be a course_lib GPT or Llama, got {type(model).__name__}")


class Heatmap(NamedTuple):
    """One heatmap of the second picture: a title, a matrix (T, columns) and what its columns are."""

    title: str
    matrix: np.ndarray
    xlabel: str
    columns: tuple[int, int] | None = None  # columns to outline (the chosen head among the merged heads)


class _Picture:
    """One figure of the explainer in its own Image, redrawn only when what it shows changed.

    ``state()`` returns what the picture depends on (prompt, layer, ...); ``refresh()`` does
    nothing while it is unchanged. ``build(figure, kind)`` makes the artists of a figure and
    returns those that change from one redraw to the next (heatmaps, titles, colour bars);
    ``draw()`` updates them and returns ``(kind, figure, background_key)``, the last saying
    what the other artists show (the token ids).

    Drawing text is what takes the time, and most of the text (the token labels) stays the same,
    so the figure is drawn in full only when the background key changes (new tokens); otherwise
    only the changing artists are drawn again over a saved copy of the rest (matplotlib's
    "blitting"). The layout is computed again only when ``layout_key()`` changes (a longer label).
    """

    def __init__(self, build: Callable, state: Callable, draw: Callable, layout_key: Callable, dpi: int):
        self.build, self.state, self.draw, self.layout_key, self.dpi = build, state, draw, layout_key, dpi
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        self.figures: dict[object, Figure] = {}  # one figure per kind (the second picture has five)
        self.changing: dict[object, list] = {}  # kind -> the artists redrawn every time
        self.backgrounds: dict[object, tuple] = {}  # kind -> (background key, saved pixels of the rest)
        self.laid_out_for: dict[object, object] = {}
        self.drawn_state: object = None
        self.figure: Figure | None = None

    def add_figure(self, kind, figure: Figure) -> Figure:
        """Build ``figure`` as the figure of ``kind``; its changing artists are drawn separately."""
        FigureCanvasAgg(figure)
        self.changing[kind] = self.build(figure, kind)
        for artist in self.changing[kind]:
            artist.set_animated(True)  # left out of a full draw: drawn on top, every time
        self.figures[kind] = figure
        return figure

    def figure_for(self, kind, figsize) -> Figure:
        """The figure of one kind, built on first use."""
        if kind not in self.figures:
            self.add_figure(kind, Figure(figsize=figsize, dpi=self.dpi, layout="constrained"))
        return self.figures[kind]

    def refresh(self) -> bool:
        """Redraw if the state changed; returns whether it did."""
        state = self.state()
        if state == self.drawn_state:
            return False
        kind, self.figure, background_key = self.draw()
        canvas = self.figure.canvas
        drawn_for, background = self.backgrounds.get(kind, (None, None))
        if background_key != drawn_for:
            layout_key = self.layout_key()
            self.figure.set_layout_engine("constrained" if layout_key != self.laid_out_for.get(kind) else "none")
            canvas.draw()  # everything but the changing artists: tick labels, axis labels, ...
            self.figure.set_layout_engine("none")  # keep that layout for the redraws that follow
            self.backgrounds[kind] = (background_key, canvas.copy_from_bbox(self.figure.bbox))
            self.laid_out_for[kind] = layout_key
        else:
            canvas.restore_region(background)
        for artist in self.changing[kind]:
            self.figure.draw_artist(artist)
        self.image.value = canvas_to_png(canvas)
        self.drawn_state = state
        return True

    def png(self, dpi: int) -> bytes:
        """The current figure in full (changing artists included) at ``dpi``."""
        if self.figure is None:
            self.refresh()
        kind = next(kind for kind, figure in self.figures.items() if figure is self.figure)
        for artist in self.changing[kind]:
            artist.set_animated(False)  # part of the full drawing, for once
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=dpi)
        for artist in self.changing[kind]:
            artist.set_animated(True)
        self.backgrounds.clear()  # the canvas was drawn at another size: the next redraw is a full one
        return buffer.getvalue()
