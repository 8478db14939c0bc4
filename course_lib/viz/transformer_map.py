"""The "you are here" map of the Transformer that opens every lesson."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from course_lib.viz.style import _LATIN_FAMILY

# The "you are here" map
# ----------------------------------------------------------------------------------------

MAP_PARTS: tuple[str, ...] = (
    "input_embedding",
    "input_positional_encoding",
    "encoder_self_attention",
    "encoder_add_norm_1",
    "encoder_feed_forward",
    "encoder_add_norm_2",
    "output_embedding",
    "output_positional_encoding",
    "decoder_masked_self_attention",
    "decoder_add_norm_1",
    "decoder_cross_attention",
    "decoder_add_norm_2",
    "decoder_feed_forward",
    "decoder_add_norm_3",
    "linear",
    "softmax",
)
"""Every box of the map, by name. ``draw_transformer_map(highlight=...)`` takes these or a group of PART_GROUPS."""

ENCODER_PARTS = ("encoder_self_attention", "encoder_add_norm_1", "encoder_feed_forward", "encoder_add_norm_2")
DECODER_PARTS = (
    "decoder_masked_self_attention",
    "decoder_add_norm_1",
    "decoder_cross_attention",
    "decoder_add_norm_2",
    "decoder_feed_forward",
    "decoder_add_norm_3",
)

PART_GROUPS: dict[str, tuple[str, ...]] = {
    "all": MAP_PARTS,
    "embeddings": ("input_embedding", "output_embedding"),
    "positional_encoding": ("input_positional_encoding", "output_positional_encoding"),
    "attention": ("encoder_self_attention", "decoder_masked_self_attention", "decoder_cross_attention"),
    "add_norm": (
        "encoder_add_norm_1",
        "encoder_add_norm_2",
        "decoder_add_norm_1",
        "decoder_add_norm_2",
        "decoder_add_norm_3",
    ),
    "feed_forward": ("encoder_feed_forward", "decoder_feed_forward"),
    "encoder": ENCODER_PARTS,
    "decoder": DECODER_PARTS,
    "output_layer": ("linear", "softmax"),
}
"""Names that stand for several parts at once (``highlight=("attention",)``)."""

LESSON_TITLES: dict[int, str] = {
    0: "overview",
    1: "tokens and embeddings",
    2: "positional encoding",
    3: "self-attention",
    4: "masking",
    5: "multi-head attention",
    6: "MLP, residual connections and layer norm",
    7: "encoder",
    8: "decoder",
    9: "output layer and generation",
    10: "train a translator",
    11: "train a tiny GPT",
    12: "a real pretrained model",
    13: "from GPT-2 to a modern LLM",
    14: "a real chat LLM",
}

LESSON_HIGHLIGHTS: dict[int, tuple[str, ...]] = {
    0: MAP_PARTS,
    1: PART_GROUPS["embeddings"],
    2: PART_GROUPS["positional_encoding"],
    3: ("encoder_self_attention",),  # one head of self-attention; masks are lesson 04, cross-attention lesson 08
    4: ("decoder_masked_self_attention",),
    5: PART_GROUPS["attention"],
    6: PART_GROUPS["feed_forward"] + PART_GROUPS["add_norm"],
    7: ENCODER_PARTS,
    8: DECODER_PARTS,
    9: PART_GROUPS["output_layer"],
    10: MAP_PARTS,
    11: (
        "output_embedding",
        "output_positional_encoding",
        "decoder_masked_self_attention",
        "decoder_add_norm_1",
        "decoder_feed_forward",
        "decoder_add_norm_3",
        "linear",
        "softmax",
    ),
    12: ("input_embedding", "input_positional_encoding") + ENCODER_PARTS,
    # Lesson 13 swaps parts of the decoder-only model: the tokenizer (byte-level BPE) behind the embedding,
    # positions (RoPE, now inside attention), the norms (RMSNorm), attention (grouped-query) and the MLP (SwiGLU).
    13: (
        "output_embedding",
        "output_positional_encoding",
        "decoder_masked_self_attention",
        "decoder_add_norm_1",
        "decoder_feed_forward",
        "decoder_add_norm_3",
    ),
    # Lesson 14 runs a whole real decoder-only model, output layer included.
    14: (
        "output_embedding",
        "output_positional_encoding",
        "decoder_masked_self_attention",
        "decoder_add_norm_1",
        "decoder_feed_forward",
        "decoder_add_norm_3",
        "linear",
        "softmax",
    ),
}
"""Lesson number (0..14) -> the parts its map highlights."""

_PART_STYLE = {  # kind of box -> its strong fill colour
    "embedding": "#f5b7c5",
    "positional": "#d6c4ec",
    "attention": "#f7b267",
    "add_norm": "#f3e39a",
    "feed_forward": "#9fd0ea",
    "linear": "#c3b5ea",
    "softmax": "#a8dba8",
}
_MUTED_FILL = "#f0f0f0"
_MUTED_EDGE = "#c4c4c4"
_MUTED_TEXT = "#a0a0a0"
_STRONG_EDGE = "#2b2b2b"
_STRONG_TEXT = "#111111"
_SHAPE_COLOUR = "#3b5b92"


def _expand_highlight(highlight) -> set[str]:
    if isinstance(highlight, str):
        highlight = (highlight,)
    chosen: set[str] = set()
    for name in highlight:
        if name in PART_GROUPS:
            chosen.update(PART_GROUPS[name])
        elif name in MAP_PARTS:
            chosen.add(name)
        else:
            raise ValueError(
                f"draw_transformer_map: unknown part {name!r}; use one of MAP_PARTS {MAP_PARTS} "
                f"or a group of PART_GROUPS {tuple(PART_GROUPS)}"
            )
    return chosen


class _MapPainter:
    """Draws boxes, arrows and labels of the map in data coordinates (x 0..10, y 0..11)."""

    box_width = 2.8
    box_height = 0.52

    def __init__(self, ax, chosen: set[str], show_shapes: bool):
        self.ax = ax
        self.chosen = chosen
        self.show_shapes = show_shapes

    def box(self, name: str, kind: str, label: str, x: float, y: float, width: float | None = None) -> None:
        width = self.box_width if width is None else width
        strong = name in self.chosen
        patch = FancyBboxPatch(
            (x - width / 2, y - self.box_height / 2),
            width,
            self.box_height,
            boxstyle="round,pad=0.02,rounding_size=0.12",
            facecolor=_PART_STYLE[kind] if strong else _MUTED_FILL,
            edgecolor=_STRONG_EDGE if strong else _MUTED_EDGE,
            linewidth=1.8 if strong else 1.0,
            zorder=3,
            gid=name,
        )
        self.ax.add_patch(patch)
        self.ax.text(
            x,
            y,
            label,
            ha="center",
            va="center",
            fontsize=9.5 if len(label) < 22 else 8.6,
            color=_STRONG_TEXT if strong else _MUTED_TEXT,
            fontweight="bold" if strong else "normal",
            fontfamily=_LATIN_FAMILY,
            zorder=4,
        )

    def arrow(self, start, end, strong: bool = True, style: str = "-|>", connection: str = "arc3") -> None:
        self.ax.add_patch(
            FancyArrowPatch(
                start,
                end,
                arrowstyle=style,
                mutation_scale=11,
                color="#555555" if strong else "#b5b5b5",
                linewidth=1.2,
                connectionstyle=connection,
                shrinkA=0,
                shrinkB=0,
                zorder=2,
            )
        )

    def line(self, xs, ys) -> None:
        self.ax.plot(xs, ys, color="#9a9a9a", linewidth=1.0, zorder=1, solid_capstyle="round")

    def shape(self, x: float, y: float, text: str, ha: str = "left") -> None:
        if self.show_shapes:
            self.ax.text(
                x,
                y,
                text,
                ha=ha,
                va="center",
                fontsize=8.5,
                color=_SHAPE_COLOUR,
                family="monospace",
                zorder=5,
                gid="shape",
            )

    def plus(self, x: float, y: float, name: str) -> None:
        strong = name in self.chosen
        self.ax.add_patch(
            Circle(
                (x, y),
                0.17,
                facecolor="white",
                edgecolor=_STRONG_EDGE if strong else _MUTED_EDGE,
                linewidth=1.4,
                zorder=3,
            )
        )
        self.ax.text(x, y - 0.01, "+", ha="center", va="center", fontsize=12, zorder=4, color="#333333")

    def positional_box(self, name: str, x: float, y: float) -> None:
        """A small "positional encoding" box with a sine wave drawn in it."""
        strong = name in self.chosen
        width, height = 1.25, 0.72
        self.ax.add_patch(
            FancyBboxPatch(
                (x - width / 2, y - height / 2),
                width,
                height,
                boxstyle="round,pad=0.02,rounding_size=0.12",
                facecolor=_PART_STYLE["positional"] if strong else _MUTED_FILL,
                edgecolor=_STRONG_EDGE if strong else _MUTED_EDGE,
                linewidth=1.8 if strong else 1.0,
                zorder=3,
                gid=name,
            )
        )
        wave_x = np.linspace(x - 0.4, x + 0.4, 60)
        wave_y = y - 0.17 + 0.09 * np.sin((wave_x - x) * 2 * np.pi / 0.4)
        self.ax.plot(wave_x, wave_y, color="#333333" if strong else _MUTED_EDGE, linewidth=1.1, zorder=4)
        self.ax.text(
            x,
            y + 0.12,
            "positional\nencoding",
            ha="center",
            va="center",
            fontsize=8,
            linespacing=0.95,
            color=_STRONG_TEXT if strong else _MUTED_TEXT,
            fontweight="bold" if strong else "normal",
            fontfamily=_LATIN_FAMILY,
            zorder=4,
        )

    def stack_frame(self, x: float, y_bottom: float, y_top: float, strong: bool, label_side: str) -> None:
        width = self.box_width + 0.7
        self.ax.add_patch(
            FancyBboxPatch(
                (x - width / 2, y_bottom),
                width,
                y_top - y_bottom,
                boxstyle="round,pad=0.02,rounding_size=0.2",
                facecolor="#fafafa",
                edgecolor="#555555" if strong else "#cfcfcf",
                linewidth=1.5 if strong else 1.0,
                linestyle="-",
                zorder=0,
            )
        )
        label_x = x - width / 2 - 0.12 if label_side == "left" else x + width / 2 + 0.12
        self.ax.text(
            label_x,
            (y_bottom + y_top) / 2,
            "N ×",
            ha="right" if label_side == "left" else "left",
            va="center",
            fontsize=13,
            fontweight="bold",
            fontfamily=_LATIN_FAMILY,
            color="#333333" if strong else _MUTED_TEXT,
        )


def draw_transformer_map(highlight=(), title=None, ax=None, show_shapes=True):
    """Draw the whole encoder-decoder Transformer as a "you are here" map.

    Boxes named in ``highlight`` (names from ``MAP_PARTS`` or groups from ``PART_GROUPS``)
    are drawn in a strong colour, the others muted. Tensor shapes are written on the
    arrows when ``show_shapes`` is True: source ``(B, S)``, target ``(B, T)``, hidden
    states ``(B, S, d_model)`` / ``(B, T, d_model)``, logits and probabilities ``(B, T, V)``.

    Returns:
        the ``Figure`` (10 x 7 inches when ``ax`` is None).

    Used at the top of every lesson (see ``show_map``).
    """
    chosen = _expand_highlight(highlight)
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 7))
    else:
        fig = ax.figure
    paint = _MapPainter(ax, chosen, show_shapes)
    enc_x, dec_x = 2.9, 7.1
    half = paint.box_width / 2
    step = 0.8  # vertical distance between a sublayer and its add & norm
    pair = 1.75  # vertical distance between two sublayers

    # ---- encoder side (left) ----
    y_label, y_embed, y_plus = 0.1, 1.05, 1.95
    ax.text(enc_x, y_label, "source tokens", ha="center", va="center", fontsize=10, color="#333333")
    paint.arrow((enc_x, y_label + 0.18), (enc_x, y_embed - 0.27))
    paint.shape(enc_x + 0.1, (y_label + y_embed) / 2 - 0.05, "(B, S)")
    paint.box("input_embedding", "embedding", "input embedding", enc_x, y_embed)
    paint.arrow((enc_x, y_embed + 0.27), (enc_x, y_plus - 0.17))
    paint.shape(enc_x + 0.1, (y_embed + y_plus) / 2 + 0.02, "(B, S, d_model)")
    paint.plus(enc_x, y_plus, "input_positional_encoding")
    paint.positional_box("input_positional_encoding", enc_x - 2.15, y_plus)
    paint.arrow((enc_x - 2.15 + 0.63, y_plus), (enc_x - 0.17, y_plus))

    frame_bottom = y_plus + 0.45
    y_attn = frame_bottom + 0.75
    enc_rows = [
        ("encoder_self_attention", "attention", "multi-head attention", y_attn),
        ("encoder_add_norm_1", "add_norm", "add & norm", y_attn + step),
        ("encoder_feed_forward", "feed_forward", "feed-forward", y_attn + pair),
        ("encoder_add_norm_2", "add_norm", "add & norm", y_attn + pair + step),
    ]
    enc_top = enc_rows[-1][3] + 0.55
    paint.stack_frame(enc_x, frame_bottom, enc_top, bool(chosen & set(ENCODER_PARTS)), "left")
    paint.arrow((enc_x, y_plus + 0.17), (enc_x, y_attn - 0.27))
    for name, kind, label, y in enc_rows:
        paint.box(name, kind, label, enc_x, y)
    for (_, _, _, y_low), (_, _, _, y_high) in zip(enc_rows, enc_rows[1:], strict=False):
        paint.arrow((enc_x, y_low + 0.27), (enc_x, y_high - 0.27))
    # residual connections on the left of the encoder boxes
    side = enc_x - half - 0.22
    for y_sub, y_norm in ((enc_rows[0][3], enc_rows[1][3]), (enc_rows[2][3], enc_rows[3][3])):
        y_from = y_sub - 0.45
        paint.line([enc_x, side], [y_from, y_from])
        paint.line([side, side], [y_from, y_norm])
        paint.arrow((side, y_norm), (enc_x - half, y_norm), strong=False)

    # ---- decoder side (right) ----
    ax.text(dec_x, y_label, "target tokens (shifted right)", ha="center", va="center", fontsize=10, color="#333333")
    paint.arrow((dec_x, y_label + 0.18), (dec_x, y_embed - 0.27))
    paint.shape(dec_x + 0.1, (y_label + y_embed) / 2 - 0.05, "(B, T)")
    paint.box("output_embedding", "embedding", "output embedding", dec_x, y_embed)
    paint.arrow((dec_x, y_embed + 0.27), (dec_x, y_plus - 0.17))
    paint.shape(dec_x + 0.1, (y_embed + y_plus) / 2 + 0.02, "(B, T, d_model)")
    paint.plus(dec_x, y_plus, "output_positional_encoding")
    paint.positional_box("output_positional_encoding", dec_x + 2.15, y_plus)
    paint.arrow((dec_x + 2.15 - 0.63, y_plus), (dec_x + 0.17, y_plus))

    dec_rows = [
        ("decoder_masked_self_attention", "attention", "masked multi-head attention", y_attn),
        ("decoder_add_norm_1", "add_norm", "add & norm", y_attn + step),
        ("decoder_cross_attention", "attention", "cross-attention", y_attn + pair),
        ("decoder_add_norm_2", "add_norm", "add & norm", y_attn + pair + step),
        ("decoder_feed_forward", "feed_forward", "feed-forward", y_attn + 2 * pair),
        ("decoder_add_norm_3", "add_norm", "add & norm", y_attn + 2 * pair + step),
    ]
    dec_top = dec_rows[-1][3] + 0.55
    paint.stack_frame(dec_x, frame_bottom, dec_top, bool(chosen & set(DECODER_PARTS)), "right")
    paint.arrow((dec_x, y_plus + 0.17), (dec_x, y_attn - 0.27))
    for name, kind, label, y in dec_rows:
        paint.box(name, kind, label, dec_x, y)
    for (_, _, _, y_low), (_, _, _, y_high) in zip(dec_rows, dec_rows[1:], strict=False):
        paint.arrow((dec_x, y_low + 0.27), (dec_x, y_high - 0.27))
    side = dec_x + half + 0.22
    for index in (0, 2, 4):
        y_sub, y_norm = dec_rows[index][3], dec_rows[index + 1][3]
        y_from = y_sub - 0.45
        paint.line([dec_x, side], [y_from, y_from])
        paint.line([side, side], [y_from, y_norm])
        paint.arrow((side, y_norm), (dec_x + half, y_norm), strong=False)

    # ---- encoder output (memory) into cross-attention ----
    y_cross = dec_rows[2][3]
    bend_y = enc_top + 0.35
    mid_x = (enc_x + half + dec_x - half) / 2 + 0.1
    paint.line([enc_x, enc_x], [enc_rows[-1][3] + 0.27, bend_y])
    paint.line([enc_x, mid_x], [bend_y, bend_y])
    paint.line([mid_x, mid_x], [bend_y, y_cross])
    paint.arrow((mid_x, y_cross), (dec_x - half, y_cross))
    paint.shape(enc_x + 0.1, bend_y + 0.2, "memory (B, S, d_model)")
    paint.shape(mid_x + 0.05, y_cross + 0.2, "K, V", ha="left")

    # ---- output layer ----
    y_linear = dec_top + 0.7
    y_softmax = y_linear + 0.95
    y_out = y_softmax + 0.95
    paint.arrow((dec_x, dec_rows[-1][3] + 0.27), (dec_x, y_linear - 0.27))
    paint.shape(dec_x + 0.1, dec_top + 0.12, "(B, T, d_model)")
    paint.box("linear", "linear", "linear", dec_x, y_linear, width=1.9)
    paint.arrow((dec_x, y_linear + 0.27), (dec_x, y_softmax - 0.27))
    paint.shape(dec_x + 0.1, (y_linear + y_softmax) / 2, "logits (B, T, V)")
    paint.box("softmax", "softmax", "softmax", dec_x, y_softmax, width=1.9)
    paint.arrow((dec_x, y_softmax + 0.27), (dec_x, y_out - 0.15))
    paint.shape(dec_x + 0.1, (y_softmax + y_out) / 2 - 0.03, "(B, T, V)")
    ax.text(dec_x, y_out + 0.05, "next-token probabilities", ha="center", va="center", fontsize=10, color="#333333")

    # ---- side titles and legend ----
    ax.text(
        enc_x,
        enc_top + 1.2,
        "ENCODER",
        ha="center",
        va="center",
        fontsize=11,
        fontweight="bold",
        fontfamily=_LATIN_FAMILY,
        color="#444444",
    )
    ax.text(
        dec_x + half + 0.4,
        dec_top - 0.1,
        "DECODER",
        ha="left",
        va="center",
        fontsize=11,
        fontweight="bold",
        fontfamily=_LATIN_FAMILY,
        color="#444444",
    )
    if chosen and chosen != set(MAP_PARTS):
        ax.text(
            0.0,
            y_out + 0.05,
            "coloured: this lesson\ngrey: the rest of the model",
            ha="left",
            va="center",
            fontsize=9,
            color="#555555",
        )
    ax.set_xlim(-0.1, 10.1)
    ax.set_ylim(-0.2, y_out + 0.35)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title, fontsize=14, fontweight="bold", fontfamily=_LATIN_FAMILY)
    return fig


def show_map(lesson: int):
    """The "you are here" map of ``lesson`` (0..14), its parts highlighted, titled with the lesson.

    The notebook calls ``plt.show()`` afterwards. Returns the ``Figure``.
    """
    if isinstance(lesson, bool) or not isinstance(lesson, int) or lesson not in LESSON_HIGHLIGHTS:
        raise ValueError(f"show_map: lesson must be an int in 0..{max(LESSON_HIGHLIGHTS)}, got {lesson!r}")
    title = f"Lesson {lesson:02d}: {LESSON_TITLES[lesson]}"
    return draw_transformer_map(LESSON_HIGHLIGHTS[lesson], title=title)
