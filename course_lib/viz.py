"""Plotting helpers of the course: one look for every figure (matplotlib + seaborn only).

Importing this module

* registers the CJK font shipped by the ``mplfonts`` package (Noto Sans CJK SC) and puts
  it first in ``rcParams["font.sans-serif"]`` (DejaVu Sans stays as fallback), so Chinese
  tokens render as glyphs instead of empty boxes;
* sets the course's plotting style (seaborn's white theme, colour-blind-safe colormaps).

Every lesson opens with ``show_map(lesson)``, the "you are here" map of the Transformer.
The heatmap helpers accept torch tensors or numpy arrays and are shared by the widgets of
``course_lib.widgets``.

Built for lesson 00 (overview) and used by every lesson.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib import font_manager
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle
from matplotlib.path import Path as MarkerPath
from matplotlib.textpath import TextPath

# ----------------------------------------------------------------------------------------
# Style and fonts
# ----------------------------------------------------------------------------------------

CJK_FONT_FILE = "NotoSansCJKsc-Regular.otf"
_LATIN_FAMILY = "DejaVu Sans"  # for bold text and markers: the CJK font has no bold face


def find_cjk_font() -> Path | None:
    """Path of the Noto Sans CJK SC font shipped inside the ``mplfonts`` package (or None)."""
    spec = importlib.util.find_spec("mplfonts")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "fonts" / CJK_FONT_FILE
        if candidate.is_file():
            return candidate
    return None


def setup_style() -> str | None:
    """Apply the course look and register the CJK font; returns the CJK family name (or None).

    Called once on import. Call it again after ``sns.set_theme(...)`` or
    ``plt.rcdefaults()``, which reset the fonts.
    """
    sns.set_theme(style="white", context="notebook")
    family = None
    font_path = find_cjk_font()
    if font_path is not None:
        font_manager.fontManager.addfont(str(font_path))
        family = font_manager.FontProperties(fname=str(font_path)).get_name()
    fallbacks = [name for name in ("DejaVu Sans", "Arial", "Liberation Sans") if name != family]
    # "sans-serif" picks the first installed family of the list above; naming DejaVu Sans
    # again makes matplotlib fall back to it glyph by glyph (e.g. for "ᵀ", absent from the CJK font).
    matplotlib.rcParams["font.family"] = ["sans-serif", "DejaVu Sans"]
    matplotlib.rcParams["font.sans-serif"] = ([family] if family else []) + fallbacks
    matplotlib.rcParams["axes.unicode_minus"] = False  # the CJK font has no U+2212 minus sign
    matplotlib.rcParams["figure.dpi"] = 100
    matplotlib.rcParams["savefig.dpi"] = 100
    matplotlib.rcParams["axes.titlesize"] = 12
    matplotlib.rcParams["axes.labelsize"] = 10
    matplotlib.rcParams["image.cmap"] = "viridis"
    return family


CJK_FONT_FAMILY = setup_style()

# ----------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------


def to_numpy(array, where: str = "to_numpy", name: str = "matrix") -> np.ndarray:
    """A torch tensor (any device, with or without grad) or array-like as a float numpy array."""
    if hasattr(array, "detach") and hasattr(array, "cpu"):
        array = array.detach().cpu().numpy()
    try:
        return np.asarray(array, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {name} must be a tensor or array of numbers, got {type(array).__name__}") from error


def _require_ndim(where: str, name: str, array: np.ndarray, ndim, expected: str) -> None:
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if array.ndim not in allowed:
        raise ValueError(f"{where}: {name} must be {expected}, got shape {tuple(array.shape)}")


def _require_labels(where: str, name: str, labels, size: int, axis_name: str, matrix_shape) -> list[str] | None:
    if labels is None:
        return None
    labels = [str(label) for label in labels]
    if len(labels) != size:
        raise ValueError(
            f"{where}: {name} has {len(labels)} entries but the matrix has {size} {axis_name} "
            f"(matrix shape {tuple(matrix_shape)}); pass one label per {axis_name[:-1]}"
        )
    return labels


# ----------------------------------------------------------------------------------------
# Heatmaps
# ----------------------------------------------------------------------------------------


def get_cmap(name):
    """A colormap by name, including seaborn's ("rocket", "vlag", "mako", ...)."""
    if not isinstance(name, str):
        return name
    try:
        return matplotlib.colormaps[name]
    except KeyError:
        return sns.color_palette(name, as_cmap=True)


def _text_colour(image, value: float) -> str:
    """Black or white, whichever reads better on the cell colour of ``value``."""
    red, green, blue, _ = image.cmap(image.norm(value))
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    return "black" if luminance > 0.5 else "white"


def format_cell(value: float, fmt: str = "{:.2f}") -> str:
    """Cell text: ``-inf``/``inf`` for infinities, otherwise ``fmt``."""
    if np.isneginf(value):
        return "-inf"
    if np.isposinf(value):
        return "inf"
    if np.isnan(value):
        return "nan"
    return fmt.format(value)


def annotate_cells(
    image, matrix: np.ndarray, fmt: str = "{:.2f}", fontsize: float | None = None, only_infinite: bool = False
) -> list:
    """Write each cell's value on a heatmap (``-inf`` cells included); returns the Text artists.

    ``only_infinite=True`` writes only the ``-inf``/``inf`` cells (cheaper, and enough to show a mask).
    """
    ax = image.axes
    rows, cols = matrix.shape
    if fontsize is None:
        fontsize = max(5.0, min(9.0, 90.0 / max(rows, cols)))
    texts = []
    for i in range(rows):
        for j in range(cols):
            value = matrix[i, j]
            if only_infinite and np.isfinite(value):
                continue
            colour = "black" if not np.isfinite(value) else _text_colour(image, value)
            texts.append(
                ax.text(j, i, format_cell(value, fmt), ha="center", va="center", fontsize=fontsize, color=colour)
            )
    return texts


def _minus_inf_marker() -> MarkerPath:
    """The text "-inf" as a marker path, centred and scaled to fit a unit box."""
    text = TextPath((0, 0), "-inf", size=1, prop=font_manager.FontProperties(family=_LATIN_FAMILY))
    vertices = text.vertices - (text.vertices.max(axis=0) + text.vertices.min(axis=0)) / 2
    return MarkerPath(vertices / np.abs(vertices).max(), text.codes)


def mark_infinite_cells(image, matrix, markers=None):
    """Write "-inf" on every -inf cell of a heatmap, drawn as one scatter of text-shaped markers.

    Much faster to redraw than one ``Text`` per cell, which matters in widgets. Pass the
    returned collection back as ``markers`` to update it in place.

    Shapes:
        matrix: (rows, cols) with the values shown by ``image``.
    """
    matrix = to_numpy(matrix, "mark_infinite_cells", "matrix")
    rows, cols = np.nonzero(np.isneginf(matrix))
    ax = image.axes
    box = ax.get_position()
    width_points = box.width * ax.figure.get_figwidth() * 72
    cell_points = width_points / max(1, matrix.shape[1])
    size = min(16.0, 0.6 * cell_points) ** 2  # the marker is sqrt(size) points wide
    offsets = np.column_stack([cols, rows]) if rows.size else np.empty((0, 2))
    if markers is None:
        markers = ax.scatter(
            offsets[:, 0], offsets[:, 1], marker=_minus_inf_marker(), s=size, c="#333333", linewidths=0, zorder=5
        )
    else:
        markers.set_offsets(offsets)
        markers.set_sizes([size])
    return markers


def _finite_limits(matrix: np.ndarray, center: float | None) -> tuple[float, float]:
    finite = matrix[np.isfinite(matrix)]
    if finite.size == 0:
        low, high = 0.0, 1.0
    else:
        low, high = float(finite.min()), float(finite.max())
    if center is not None:
        half = max(abs(high - center), abs(low - center)) or 1.0
        return center - half, center + half
    if low == high:
        low, high = low - 0.5, high + 0.5
    return low, high


def set_tick_labels(ax, row_labels=None, col_labels=None, max_labels: int = 40) -> None:
    """Put token labels on a heatmap's axes (every n-th one when there are many)."""
    if col_labels is not None:
        step = max(1, math.ceil(len(col_labels) / max_labels))
        ticks = list(range(0, len(col_labels), step))
        ax.set_xticks(ticks, [col_labels[t] for t in ticks], rotation=45, ha="right", rotation_mode="anchor")
    if row_labels is not None:
        step = max(1, math.ceil(len(row_labels) / max_labels))
        ticks = list(range(0, len(row_labels), step))
        ax.set_yticks(ticks, [row_labels[t] for t in ticks])


def update_image(image, matrix, center: float | None = None, vmin=None, vmax=None) -> None:
    """Change a heatmap in place: new data (any size), extent and colour limits."""
    matrix = to_numpy(matrix, "update_image", "matrix")
    rows, cols = matrix.shape
    image.set_data(np.ma.masked_invalid(matrix))
    image.set_extent((-0.5, cols - 0.5, rows - 0.5, -0.5))
    low, high = _finite_limits(matrix, center)
    image.set_clim(low if vmin is None else vmin, high if vmax is None else vmax)
    image.axes.set_xlim(-0.5, cols - 0.5)
    image.axes.set_ylim(rows - 0.5, -0.5)
    if hasattr(image, "_hatch_background"):
        image._hatch_background.set_bounds(-0.5, -0.5, cols, rows)


def plot_matrix(
    matrix,
    row_labels=None,
    col_labels=None,
    ax=None,
    title=None,
    xlabel=None,
    ylabel=None,
    cmap="viridis",
    center=None,
    annotate=False,
    colorbar=True,
    colorbar_label="value",
    vmin=None,
    vmax=None,
    fmt="{:.2f}",
):
    """Heatmap of a 2-D matrix with labels and a colorbar.

    ``center`` switches to seaborn's diverging "vlag" colormap, symmetric around ``center``
    (use it for signed values such as scores or encodings). Non-finite cells (``-inf`` from
    a mask) are drawn hatched and, with ``annotate=True``, written as ``-inf``.

    Shapes:
        matrix: (rows, cols), a torch tensor or a numpy array;
        row_labels: rows entries, col_labels: cols entries (or None).

    Returns:
        the ``AxesImage`` (change it in place with ``update_image``).

    Used from lesson 01 on.
    """
    where = "plot_matrix"
    matrix = to_numpy(matrix, where, "matrix")
    _require_ndim(where, "matrix", matrix, 2, "2-D (rows, cols)")
    row_labels = _require_labels(where, "row_labels", row_labels, matrix.shape[0], "rows", matrix.shape)
    col_labels = _require_labels(where, "col_labels", col_labels, matrix.shape[1], "columns", matrix.shape)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    colormap = get_cmap("vlag" if center is not None and cmap == "viridis" else cmap)
    colormap = colormap.with_extremes(bad=(1, 1, 1, 0))  # transparent: the hatched background shows through
    low, high = _finite_limits(matrix, center)
    rows, cols = matrix.shape
    background = Rectangle(
        (-0.5, -0.5), cols, rows, facecolor="#f2f2f2", edgecolor="#9a9a9a", hatch="///", linewidth=0, zorder=0
    )
    ax.add_patch(background)
    image = ax.imshow(
        np.ma.masked_invalid(matrix),
        cmap=colormap,
        vmin=low if vmin is None else vmin,
        vmax=high if vmax is None else vmax,
        aspect="auto",
        interpolation="nearest",
        zorder=1,
    )
    image._hatch_background = background
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    set_tick_labels(ax, row_labels, col_labels)
    ax.set_xlabel(xlabel if xlabel is not None else "column")
    ax.set_ylabel(ylabel if ylabel is not None else "row")
    if title is not None:
        ax.set_title(title)
    if colorbar:
        image.colorbar_ = ax.figure.colorbar(image, ax=ax, label=colorbar_label, fraction=0.046, pad=0.04)
    if annotate:
        image.annotations_ = annotate_cells(image, matrix, fmt)
    return image


def _check_attention(where: str, weights, query_tokens, key_tokens) -> tuple[np.ndarray, list[str], list[str]]:
    weights = to_numpy(weights, where, "weights")
    _require_ndim(where, "weights", weights, 2, "(T_q, T_k)")
    query_tokens = [str(t) for t in query_tokens]
    key_tokens = [str(t) for t in key_tokens]
    T_q, T_k = weights.shape
    if len(query_tokens) != T_q:
        raise ValueError(
            f"{where}: weights has T_q={T_q} query rows but there are {len(query_tokens)} query_tokens "
            f"(weights {tuple(weights.shape)}); pass one token per query"
        )
    if len(key_tokens) != T_k:
        raise ValueError(
            f"{where}: weights has T_k={T_k} key columns but there are {len(key_tokens)} key_tokens "
            f"(weights {tuple(weights.shape)}); pass one token per key"
        )
    return weights, query_tokens, key_tokens


def plot_attention(
    weights,
    query_tokens,
    key_tokens,
    ax=None,
    title=None,
    annotate=False,
    cmap="rocket",
    colorbar=True,
    vmin=0.0,
    vmax=None,
):
    """Attention weights as a heatmap: rows are queries (attending), columns keys (attended to).

    Shapes:
        weights: (T_q, T_k); query_tokens: T_q strings; key_tokens: T_k strings.

    Returns:
        the ``AxesImage``.

    Used from lesson 03 (self-attention) on.
    """
    weights, query_tokens, key_tokens = _check_attention("plot_attention", weights, query_tokens, key_tokens)
    return plot_matrix(
        weights,
        row_labels=query_tokens,
        col_labels=key_tokens,
        ax=ax,
        title=title,
        xlabel="key (attended to)",
        ylabel="query (attending)",
        cmap=cmap,
        annotate=annotate,
        colorbar=colorbar,
        colorbar_label="attention weight",
        vmin=vmin,
        vmax=vmax,
    )


def plot_head_grid(weights, query_tokens, key_tokens, ncols=4, title=None, figsize=None):
    """Every head's attention weights as small heatmaps sharing one colour scale.

    Shapes:
        weights: (n_heads, T_q, T_k); query_tokens: T_q strings; key_tokens: T_k strings.

    Returns:
        the ``Figure``.

    Used in lessons 05 (multi-head attention) and 12 (a real pretrained model).
    """
    where = "plot_head_grid"
    weights = to_numpy(weights, where, "weights")
    _require_ndim(where, "weights", weights, 3, "(n_heads, T_q, T_k)")
    _check_attention(where, weights[0], query_tokens, key_tokens)
    n_heads = weights.shape[0]
    ncols = max(1, min(ncols, n_heads))
    nrows = math.ceil(n_heads / ncols)
    if figsize is None:
        figsize = (2.8 * ncols + 1.2, 2.6 * nrows + 0.8)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout="constrained")
    vmax = float(weights.max()) if weights.size else 1.0
    image = None
    for head, ax in enumerate(axes.flat):
        if head >= n_heads:
            ax.set_axis_off()
            continue
        image = plot_matrix(
            weights[head], ax=ax, cmap="rocket", colorbar=False, vmin=0.0, vmax=vmax, xlabel="", ylabel=""
        )
        ax.set_title(f"head {head}", fontsize=10)
        row, col = divmod(head, ncols)
        set_tick_labels(ax, query_tokens if col == 0 else None, key_tokens if row == nrows - 1 else None)
        if col != 0:
            ax.set_yticks([])
        if head + ncols < n_heads:
            ax.set_xticks([])
    fig.supxlabel("key (attended to)", fontsize=10)
    fig.supylabel("query (attending)", fontsize=10)
    fig.colorbar(image, ax=axes, label="attention weight", shrink=0.8)
    if title is not None:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------------------
# Helpers shared with the widgets
# ----------------------------------------------------------------------------------------


def plot_pe(encoding, ax=None, title="sinusoidal positional encoding", colorbar=True):
    """Heatmap of a positional-encoding table: positions down, dimensions across.

    Shapes:
        encoding: (seq_len, d_model)

    Returns:
        the ``AxesImage``.

    Used in lesson 02 (positional encoding).
    """
    encoding = to_numpy(encoding, "plot_pe", "encoding")
    _require_ndim("plot_pe", "encoding", encoding, 2, "(seq_len, d_model)")
    return plot_matrix(
        encoding,
        ax=ax,
        title=title,
        xlabel="dimension i",
        ylabel="position",
        center=0.0,
        colorbar=colorbar,
        colorbar_label="PE value",
        vmin=-1.0,
        vmax=1.0,
    )


def plot_pe_curves(encoding, dims, ax=None, position=None):
    """A few dimensions of a positional-encoding table as curves over position.

    Shapes:
        encoding: (seq_len, d_model); dims: dimension indices to draw.

    Returns:
        the list of ``Line2D`` (one per dimension).

    Used in lesson 02 (positional encoding).
    """
    encoding = to_numpy(encoding, "plot_pe_curves", "encoding")
    _require_ndim("plot_pe_curves", "encoding", encoding, 2, "(seq_len, d_model)")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    positions = np.arange(encoding.shape[0])
    colours = sns.color_palette("colorblind", len(dims))
    lines = []
    for colour, dim in zip(colours, dims, strict=True):
        kind = "sin" if dim % 2 == 0 else "cos"
        (line,) = ax.plot(positions, encoding[:, dim], color=colour, label=f"dim {dim} ({kind})")
        lines.append(line)
    ax.set_xlabel("position")
    ax.set_ylabel("PE value")
    ax.set_ylim(-1.15, 1.15)
    ax.legend(fontsize=8, loc="upper right", ncols=2)
    if position is not None:
        ax.axvline(position, color="black", linestyle="--", linewidth=1)
    return lines


GREY = "#c8c8c8"
KEPT_COLOUR = sns.color_palette("colorblind")[0]


def plot_sampling_bars(probs, tokens, before_cut=None, ax=None, title=None):
    """Next-token probabilities as bars; tokens whose final probability is 0 are greyed.

    ``before_cut`` (optional, same length) is drawn as grey outlines behind the bars: the
    probabilities after temperature but before top-k/top-p, so a learner sees what was cut.

    Shapes:
        probs: (N,), tokens: N strings, before_cut: (N,) or None.

    Returns:
        ``(kept_bars, ghost_bars)`` BarContainers (``ghost_bars`` is None without ``before_cut``).

    Used in lesson 09 (output layer and generation).
    """
    where = "plot_sampling_bars"
    probs = to_numpy(probs, where, "probs")
    _require_ndim(where, "probs", probs, 1, "(N,)")
    tokens = _require_labels(where, "tokens", tokens, probs.shape[0], "bars", probs.shape)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    positions = np.arange(len(probs))
    ghost_bars = None
    if before_cut is not None:
        before_cut = to_numpy(before_cut, where, "before_cut")
        if before_cut.shape != probs.shape:
            raise ValueError(f"{where}: before_cut must have shape {probs.shape} like probs, got {before_cut.shape}")
        ghost_bars = ax.bar(
            positions, before_cut, width=0.8, facecolor="none", edgecolor="#8a8a8a", hatch="//", linewidth=1
        )
    kept_bars = ax.bar(positions, probs, width=0.8, color=[KEPT_COLOUR if p > 0 else GREY for p in probs])
    ax.set_xticks(positions, tokens, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_xlabel("next token")
    ax.set_ylabel("probability")
    ax.set_xlim(-0.6, len(probs) - 0.4)
    if title is not None:
        ax.set_title(title)
    return kept_bars, ghost_bars


# ----------------------------------------------------------------------------------------
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
}

LESSON_HIGHLIGHTS: dict[int, tuple[str, ...]] = {
    0: MAP_PARTS,
    1: PART_GROUPS["embeddings"],
    2: PART_GROUPS["positional_encoding"],
    3: PART_GROUPS["attention"],
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
}
"""Lesson number (0..12) -> the parts its map highlights."""

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
    """The "you are here" map of ``lesson`` (0..12), its parts highlighted, titled with the lesson.

    The notebook calls ``plt.show()`` afterwards. Returns the ``Figure``.
    """
    if isinstance(lesson, bool) or not isinstance(lesson, int) or lesson not in LESSON_HIGHLIGHTS:
        raise ValueError(f"show_map: lesson must be an int in 0..12, got {lesson!r}")
    title = f"Lesson {lesson:02d}: {LESSON_TITLES[lesson]}"
    return draw_transformer_map(LESSON_HIGHLIGHTS[lesson], title=title)
