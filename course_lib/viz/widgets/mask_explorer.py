"""The mask explorer (lesson 04)."""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import torch

from course_lib import viz
from course_lib.attention import scaled_dot_product_attention
from course_lib.example import RUNNING_SENTENCE
from course_lib.masks import causal_mask, combine_masks, padding_mask
from course_lib.viz.widgets.attention_step_through import sentence_tokens
from course_lib.viz.widgets.base import FigureWidget, _slider_style

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

    def _changing_artists(self) -> list:
        """The scores panel and its colorbar whole (the colour range follows the mask), and on the weights
        panel its heatmap, frame, title and numbers; the tick labels only change with ``pad_count``."""
        weights_texts = [text for text in self.texts if text.axes is self.ax_weights]
        return [
            self.ax_scores,
            self.scores_image.colorbar_.ax,
            self.weights_image,
            *self.ax_weights.spines.values(),
            self.ax_weights.title,
            *weights_texts,
        ]

    def _csv_labels(self):
        sequence = self.sequence()
        return sequence, sequence
