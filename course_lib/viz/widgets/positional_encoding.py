"""The positional-encoding explorer (lesson 02)."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from course_lib import viz
from course_lib.positional import sinusoidal_positional_encoding
from course_lib.viz.widgets.base import FigureWidget, _slider_style

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
        self.ax_dot.set_title(f"PE[p] · PE[{position}] for every position p")

    def _changing_artists(self) -> list:
        """On the table: the heatmap, its x axis (d_model changes its range), the position line, frame and
        title, in the order the axes draws them; the curves and the dot products whole. The colorbar and
        the table's y axis (max_len positions) never change."""
        table_parts = [self.table_image, self.ax_table.xaxis, self.position_line, *self.ax_table.spines.values()]
        table_parts.sort(key=lambda artist: artist.get_zorder())  # a stable sort, as Axes.draw does
        return [*table_parts, self.ax_table.title, self.ax_curves, self.ax_dot]

    def current_matrix(self) -> np.ndarray:
        """The displayed encoding table, shape (max_len, d_model)."""
        return self._encoding()

    def current_dot_products(self) -> np.ndarray:
        """The displayed dot products PE[position] · PE[p] for every p, shape (max_len,)."""
        return np.asarray(self.dot_line.get_ydata(), dtype=float)

    def _csv_labels(self):
        matrix = self.current_matrix()
        return [f"pos {p}" for p in range(matrix.shape[0])], [f"dim {i}" for i in range(matrix.shape[1])]
