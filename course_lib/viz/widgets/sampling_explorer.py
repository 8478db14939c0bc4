"""The sampling explorer: temperature, top-k and top-p on one distribution (lesson 09)."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch

from course_lib import viz
from course_lib.generation import next_token_probs
from course_lib.viz.widgets.base import FigureWidget, _slider_style

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
