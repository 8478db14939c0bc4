"""Line and bar plots shared by the lessons and the widgets: positional encodings and sampling."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from course_lib.viz.heatmaps import plot_matrix
from course_lib.viz.style import _require_labels, _require_ndim, to_numpy

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
    ax.legend(
        fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0
    )  # beside the curves, never over them
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
