"""All heads of one layer side by side (lessons 05 and 12)."""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np

from course_lib import viz
from course_lib.viz.heatmaps import _check_attention
from course_lib.viz.widgets.base import FigureWidget

# ----------------------------------------------------------------------------------------
# 4. All heads (lessons 05 and 12)
# ----------------------------------------------------------------------------------------


class HeadGrid(FigureWidget):
    """All heads of one layer as small heatmaps; the chosen head enlarged (lessons 05 and 12).

    Shapes:
        weights: (n_heads, T_q, T_k), or (n_layers, n_heads, T_q, T_k) for a layer slider;
        a leading batch of 1 from ``attention_weights`` (1, n_heads, T_q, T_k) is read as one layer.

    ``HeadGrid.from_record(record, tokens)`` reads the weights of every layer from the record of
    a forward pass (``course_lib.activations.run_with_record``).

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
        _check_attention(where, weights[0, 0], query_tokens, key_tokens)
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

    @classmethod
    def from_record(
        cls,
        record,
        query_tokens,
        key_tokens=None,
        attention: str = "blocks.{}.self_attn",
        batch_index: int = 0,
        **kwargs,
    ) -> HeadGrid:
        """All heads of every layer, read from an ``ActivationRecord`` (``course_lib.activations``).

        ``attention`` names the attention module, ``{}`` standing for the layer number:
        ``"blocks.{}.self_attn"`` (GPT, Llama), ``"encoder.layers.{}.self_attn"``,
        ``"decoder.layers.{}.cross_attn"`` (key_tokens are then the source tokens). Without
        ``{}`` it names one module, and the grid has one layer. Other arguments go to ``HeadGrid``.

        Shapes:
            record[attention + ".weights"]: (B, n_heads, T_q, T_k) per layer -> the grid's
            weights (n_layers, n_heads, T_q, T_k) of sequence ``batch_index``
        """
        if "{}" in attention:
            weights = record.stack(f"{attention}.weights")[:, batch_index]  # (n_layers, n_heads, T_q, T_k)
        else:
            weights = record[f"{attention}.weights"][batch_index]  # (n_heads, T_q, T_k)
        return cls(weights, query_tokens, key_tokens, **kwargs)

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
