"""Heatmaps: matrices, attention weights and grids of heads, with labelled axes and colorbars."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib import font_manager
from matplotlib.patches import Rectangle
from matplotlib.path import Path as MarkerPath
from matplotlib.textpath import TextPath

from course_lib.viz.style import _LATIN_FAMILY, _require_labels, _require_ndim, to_numpy

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
