"""The rotary position embedding explorer (lesson 13)."""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import torch

from course_lib import viz
from course_lib.rotary import apply_rope, rope_angles
from course_lib.viz.widgets.base import FigureWidget, _slider_style

# ----------------------------------------------------------------------------------------
# RoPE (lesson 13)
# ----------------------------------------------------------------------------------------


class RopeExplorer(FigureWidget):
    """Watch RoPE turn the pairs of a query, and see that q·k depends only on the distance (lesson 13).

    A query ``q`` and a key ``k`` (seeded random vectors of ``d_head`` numbers) are rotated with
    ``course_lib.rotary.apply_rope`` (rotate-half layout: dimension i pairs with i + d_head/2) at
    every position 0 .. max_position - 1.

    Controls: ``position`` (of the query), ``pair`` (i, 0 .. d_head/2 - 1), ``base`` (log scale) and
    ``same_vector`` (k = q: the same content at both positions, so the score peaks at distance 0).

    Panels:

    1. pair i of the query, ``(q_i, q_{i + d_head/2})``, at position 0 (grey) and at the chosen
       position (blue), with the path of its tip in between: the pair turns by ``position * θ_i``
       radians, ``θ_i = base ** (-2i / d_head)``, and keeps its length;
    2. how far every pair has turned at the chosen position (angle modulo 2π): the first pairs
       spin fast, the last ones barely move;
    3. the score ``q_m · k_n`` for every query position m and key position n: the same along each
       diagonal, so it depends only on the distance m - n (the chosen query row is marked);
    4. the same score against the distance m - n, with the contribution of the chosen pair.

    ``current_matrix()`` is the score matrix of panel 3, shape (max_position, max_position).
    """

    def __init__(self, d_head: int = 64, max_position: int = 48, base: float = 10000.0, seed: int = 0):
        where = "RopeExplorer"
        if isinstance(d_head, bool) or not isinstance(d_head, int) or d_head < 2 or d_head % 2:
            raise ValueError(f"{where}: d_head must be an even int >= 2 (RoPE turns pairs), got {d_head!r}")
        if isinstance(max_position, bool) or not isinstance(max_position, int) or max_position < 2:
            raise ValueError(f"{where}: max_position must be an int >= 2, got {max_position!r}")
        if not base > 1:
            raise ValueError(f"{where}: base must be > 1, got {base!r}")
        self.d_head = d_head
        self.max_position = max_position
        generator = torch.Generator().manual_seed(seed)
        self.q = torch.randn(d_head, generator=generator, dtype=torch.float64)  # (d_head,)
        self.k = torch.randn(d_head, generator=generator, dtype=torch.float64)  # (d_head,)
        self._cache: tuple[tuple[float, bool], torch.Tensor, torch.Tensor] | None = None
        controls = {
            "position": widgets.IntSlider(
                value=min(5, max_position - 1), min=0, max=max_position - 1, description="position",
                style=_slider_style(),
            ),
            "pair": widgets.IntSlider(value=0, min=0, max=d_head // 2 - 1, description="pair i", style=_slider_style()),
            "base": widgets.FloatLogSlider(
                value=base, base=10, min=1, max=6, step=0.1, description="base", style=_slider_style()
            ),
            "same_vector": widgets.Checkbox(value=True, description="k = q (same vector)", indent=False),
        }  # fmt: skip
        super().__init__(controls, figsize=(11, 8.4))

    # -- the numbers --
    def _rotated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """q and k rotated at every position, (max_position, d_head) each (cached per base)."""
        base, same = float(self.controls["base"].value), bool(self.controls["same_vector"].value)
        if self._cache is None or self._cache[0] != (base, same):
            positions = torch.arange(self.max_position)  # (L,)
            shape = (self.max_position, self.d_head)
            k = self.q if same else self.k  # (d_head,)
            q_rotated = apply_rope(self.q.expand(shape), positions, base)  # (L, d_head)
            k_rotated = apply_rope(k.expand(shape), positions, base)  # (L, d_head)
            self._cache = ((base, same), q_rotated, k_rotated)
        return self._cache[1], self._cache[2]

    def current_matrix(self) -> np.ndarray:
        """The scores q_m · k_n, shape (max_position, max_position): rows m (query), columns n (key)."""
        q_rotated, k_rotated = self._rotated()
        return (q_rotated @ k_rotated.T).numpy()  # (L, L)

    def current_pair(self) -> np.ndarray:
        """The chosen pair (q_i, q_{i + d_head/2}) of the query at the chosen position, shape (2,)."""
        q_rotated, _ = self._rotated()
        i, half = self.controls["pair"].value, self.d_head // 2
        position = self.controls["position"].value
        return q_rotated[position, [i, i + half]].numpy()

    def current_angles(self) -> np.ndarray:
        """How far each pair has turned at the chosen position, modulo 2π: shape (d_head/2,)."""
        position = torch.tensor([self.controls["position"].value])
        angles = rope_angles(position, self.d_head, float(self.controls["base"].value))[0]  # (d_head/2,)
        return np.mod(angles.numpy(), 2 * math.pi)

    def scores_by_distance(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distances m - n from -(L-1) to L-1, the score at each, and the chosen pair's part of it."""
        q_rotated, k_rotated = self._rotated()
        i, half = self.controls["pair"].value, self.d_head // 2
        L = self.max_position
        distances = np.arange(-(L - 1), L)
        rows = np.maximum(distances, 0)  # query position m
        cols = np.maximum(-distances, 0)  # key position n, so that m - n = distance
        products = (q_rotated[rows] * k_rotated[cols]).numpy()  # (2L - 1, d_head)
        return distances, products.sum(axis=1), products[:, i] + products[:, i + half]

    # -- the figure --
    def _build_figure(self) -> None:
        grid = self.figure.add_gridspec(2, 2, width_ratios=[1, 1.25])
        self.ax_pair = self.figure.add_subplot(grid[0, 0])
        self.ax_angles = self.figure.add_subplot(grid[0, 1])
        self.ax_scores = self.figure.add_subplot(grid[1, 0])
        self.ax_distance = self.figure.add_subplot(grid[1, 1])
        blue, grey = viz.KEPT_COLOUR, "#7f7f7f"

        circle = np.linspace(0, 2 * math.pi, 200)
        (self.circle_line,) = self.ax_pair.plot(np.cos(circle), np.sin(circle), color="#d0d0d0", linewidth=1)
        (self.trail_line,) = self.ax_pair.plot([], [], ".", color=blue, alpha=0.35, markersize=4)
        self.start_arrow = self.ax_pair.annotate(
            "", xy=(0, 0), xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color=grey, linewidth=1.5)
        )
        self.arrow = self.ax_pair.annotate(
            "", xy=(0, 0), xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color=blue, linewidth=2.5)
        )
        self.ax_pair.axhline(0, color="#e0e0e0", linewidth=0.8, zorder=0)
        self.ax_pair.axvline(0, color="#e0e0e0", linewidth=0.8, zorder=0)
        self.ax_pair.set_aspect("equal", adjustable="box")
        self.ax_pair.set_xlabel("first number of the pair, q[i]")
        self.ax_pair.set_ylabel("second number, q[i + d_head/2]")

        n_pairs = self.d_head // 2
        self.angle_bars = self.ax_angles.bar(np.arange(n_pairs), np.zeros(n_pairs), width=0.8, color=viz.GREY)
        self.ax_angles.set_xlim(-0.7, n_pairs - 0.3)
        self.ax_angles.set_ylim(0, 2 * math.pi)
        self.ax_angles.set_yticks([0, math.pi / 2, math.pi, 3 * math.pi / 2, 2 * math.pi])
        self.ax_angles.set_yticklabels(["0", "π/2", "π", "3π/2", "2π"])
        self.ax_angles.set_xlabel("pair i (dimensions i and i + d_head/2)")
        self.ax_angles.set_ylabel("angle turned, modulo 2π")

        self.scores_image = viz.plot_matrix(
            self.current_matrix(), ax=self.ax_scores, center=0.0, xlabel="key position n",
            ylabel="query position m", colorbar_label="score q·k",
        )  # fmt: skip
        self.row_marker = self.ax_scores.axhline(0, color="black", linewidth=1.2, linestyle="--")

        (self.total_line,) = self.ax_distance.plot([], [], color=blue, linewidth=1.8, label="q·k (all pairs)")
        (self.pair_line,) = self.ax_distance.plot([], [], color="#d55e00", linewidth=1.2, label="pair i's part")
        self.distance_marker = self.ax_distance.axvline(0, color="black", linestyle="--", linewidth=1)
        self.ax_distance.axhline(0, color="#e0e0e0", linewidth=0.8, zorder=0)
        self.ax_distance.set_xlim(-(self.max_position - 1), self.max_position - 1)
        self.ax_distance.set_xlabel("distance m - n (query position - key position)")
        self.ax_distance.set_ylabel("score")
        self.ax_distance.legend(loc="upper right", fontsize=8)

    def _update(self) -> None:
        q_rotated, _ = self._rotated()
        position, i = self.controls["position"].value, self.controls["pair"].value
        base, half = float(self.controls["base"].value), self.d_head // 2
        theta = base ** (-2 * i / self.d_head)

        trail = q_rotated[: position + 1][:, [i, i + half]].numpy()  # (position + 1, 2)
        radius = float(np.hypot(*trail[0])) or 1.0
        self.circle_line.set_data(radius * np.cos(np.linspace(0, 2 * math.pi, 200)),
                                  radius * np.sin(np.linspace(0, 2 * math.pi, 200)))  # fmt: skip
        self.trail_line.set_data(trail[:, 0], trail[:, 1])
        self.start_arrow.xy = tuple(trail[0])
        self.arrow.xy = tuple(trail[-1])
        limit = 1.2 * radius
        self.ax_pair.set_xlim(-limit, limit)
        self.ax_pair.set_ylim(-limit, limit)
        turns = position * theta / (2 * math.pi)
        self.ax_pair.set_title(
            f"pair {i} at position {position}: turned {position} × {theta:.3g} rad ({turns:.2f} turns)"
        )

        angles = self.current_angles()
        for index, (bar, angle) in enumerate(zip(self.angle_bars, angles, strict=True)):
            bar.set_height(angle)
            bar.set_color(viz.KEPT_COLOUR if index == i else viz.GREY)
        self.ax_angles.set_title(f"all pairs at position {position}: early pairs spin fast, late ones crawl")

        scores = self.current_matrix()
        viz.update_image(self.scores_image, scores, center=0.0)
        self.row_marker.set_ydata([position, position])
        self.ax_scores.set_title(f"score q·k (base {base:.0f}): equal along each diagonal")

        distances, totals, pair_part = self.scores_by_distance()
        self.total_line.set_data(distances, totals)
        self.pair_line.set_data(distances, pair_part)
        self.distance_marker.set_xdata([position, position])
        low, high = min(totals.min(), pair_part.min()), max(totals.max(), pair_part.max())
        margin = 0.08 * (high - low or 1.0)
        self.ax_distance.set_ylim(low - margin, high + margin)
        self.ax_distance.set_title(f"score against distance (marked: m - n = {position})")

    def _csv_labels(self):
        labels = [str(p) for p in range(self.max_position)]
        return [f"query {p}" for p in labels], [f"key {p}" for p in labels]
