"""Ablation toggles: what breaks without scaling, the causal mask, residuals or positions (lessons 06 and 07)."""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import seaborn as sns
import torch

from course_lib import viz
from course_lib.embeddings import TokenEmbedding
from course_lib.encoder import EncoderLayer
from course_lib.example import RUNNING_SENTENCE
from course_lib.masks import causal_mask
from course_lib.multihead import merge_heads, split_heads
from course_lib.positional import sinusoidal_positional_encoding
from course_lib.viz.widgets.attention_step_through import sentence_tokens
from course_lib.viz.widgets.base import FigureWidget

# 6. Ablations (lessons 06 and 07)
# ----------------------------------------------------------------------------------------

ABLATIONS = ("no_scaling", "no_causal_mask", "no_residual", "no_positional_encoding")
_ABLATION_LABELS = {
    "no_scaling": "remove ÷ sqrt(d_k)",
    "no_causal_mask": "remove causal mask",
    "no_residual": "remove residual connections",
    "no_positional_encoding": "remove positional encoding",
}


class AblationModel:
    """A small seeded decoder-only stack of course_lib layers with a forward pass that can
    switch parts off, recomputed step by step from the layers' own weights.

    ``EncoderLayer(norm_first=True)`` blocks with a causal mask (a GPT block), over
    ``TokenEmbedding`` + sinusoidal positions. The core modules are not changed: the ablated
    forward pass reads their weights and recomputes attention itself.

    Built for lessons 06 and 07.
    """

    def __init__(self, sentence=RUNNING_SENTENCE, d_model=32, n_heads=4, d_ff=64, n_layers=2, seed=0):
        self.tokens = sentence_tokens(sentence)
        vocabulary = sorted(set(self.tokens))
        self.ids = torch.tensor([[vocabulary.index(word) for word in self.tokens]])  # (1, T)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.embedding = TokenEmbedding(len(vocabulary), d_model)
            self.layers = [EncoderLayer(d_model, n_heads, d_ff, norm_first=True) for _ in range(n_layers)]
        for layer in self.layers:
            layer.eval()
        self.n_heads = n_heads

    def embed(self, positional_encoding: bool = True) -> torch.Tensor:
        """Token embeddings, plus sinusoidal positions unless switched off. (1, T, d_model)."""
        x = self.embedding(self.ids)  # (1, T, d_model)
        if positional_encoding:
            x = x + sinusoidal_positional_encoding(x.shape[1], x.shape[2])  # (1, T, d_model)
        return x

    @torch.no_grad()
    def reference_forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The unablated pass with the layers' own ``forward``: output (T, d_model), weights (n_layers, n_heads, T, T)."""
        x = self.embed()  # (1, T, d_model)
        mask = causal_mask(x.shape[1])  # (T, T)
        weights = []
        for layer in self.layers:
            x = layer(x, mask)  # (1, T, d_model)
            weights.append(layer.self_attn.attention_weights[0])  # (n_heads, T, T)
        return x[0], torch.stack(weights)

    @torch.no_grad()
    def forward(
        self,
        no_scaling: bool = False,
        no_causal_mask: bool = False,
        no_residual: bool = False,
        no_positional_encoding: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward pass step by step, with the chosen parts removed.

        Shapes:
            returns output (T, d_model) and attention weights (n_layers, n_heads, T, T)
        """
        x = self.embed(positional_encoding=not no_positional_encoding)  # (1, T, d_model)
        T = x.shape[1]
        mask = None if no_causal_mask else causal_mask(T)  # (T, T), True = may attend
        all_weights = []
        for layer in self.layers:
            attention = layer.self_attn
            h = layer.norm1(x)  # (1, T, d_model)
            q = split_heads(attention.w_q(h), attention.n_heads)  # (1, n_heads, T, d_head)
            k = split_heads(attention.w_k(h), attention.n_heads)  # (1, n_heads, T, d_head)
            v = split_heads(attention.w_v(h), attention.n_heads)  # (1, n_heads, T, d_head)
            scores = q @ k.transpose(-2, -1)  # (1, n_heads, T, T)
            if not no_scaling:
                scores = scores / math.sqrt(attention.d_head)  # (1, n_heads, T, T)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))  # (1, n_heads, T, T)
            weights = torch.softmax(scores, dim=-1)  # (1, n_heads, T, T)
            attended = attention.w_o(merge_heads(weights @ v))  # (1, T, d_model)
            x = attended if no_residual else x + attended  # (1, T, d_model)
            fed = layer.ff(layer.norm2(x))  # (1, T, d_model)
            x = fed if no_residual else x + fed  # (1, T, d_model)
            all_weights.append(weights[0])  # (n_heads, T, T)
        return x[0], torch.stack(all_weights)


class AblationToggles(FigureWidget):
    """Switch parts of a small seeded model off and see what changes (lessons 06 and 07).

    Checkboxes: ``no_scaling`` (remove ÷ sqrt(d_k)), ``no_causal_mask``, ``no_residual``
    (remove both residual connections of every block), ``no_positional_encoding``; sliders
    ``layer`` and ``head``. Left: the unablated model's attention for that layer/head; middle:
    the ablated model's; right: the output vector's norm per token for both.

    The model is an ``AblationModel`` (``.model``), a decoder-only stack of course_lib layers
    on the running sentence. ``current_matrix()`` is the ablated attention weights (T, T).
    """

    def __init__(self, sentence=RUNNING_SENTENCE, d_model=32, n_heads=4, d_ff=64, n_layers=2, seed=0):
        self.model = AblationModel(sentence, d_model, n_heads, d_ff, n_layers, seed)
        controls = {name: widgets.Checkbox(value=False, description=_ABLATION_LABELS[name]) for name in ABLATIONS}
        controls["layer"] = widgets.IntSlider(value=0, min=0, max=n_layers - 1, description="layer")
        controls["head"] = widgets.IntSlider(value=0, min=0, max=n_heads - 1, description="head")
        self.baseline_output, self.baseline_weights = self.model.forward()
        self._results: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        super().__init__(controls, figsize=(15, 5))

    def ablations(self) -> dict[str, bool]:
        """The checkbox states, as keyword arguments of ``AblationModel.forward``."""
        return {name: self.controls[name].value for name in ABLATIONS}

    def ablated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Output (T, d_model) and weights (n_layers, n_heads, T, T) of the ablated model (computed once per setting)."""
        settings = self.ablations()
        key = tuple(settings.values())
        if key not in self._results:
            self._results[key] = self.model.forward(**settings)
        return self._results[key]

    def current_matrix(self) -> np.ndarray:
        """The ablated model's attention weights for the chosen layer and head, (T, T)."""
        _, weights = self.ablated()
        return weights[self.controls["layer"].value, self.controls["head"].value].double().numpy()

    def current_norms(self) -> np.ndarray:
        """(T, 2): output norm per token, [unablated, ablated]."""
        output, _ = self.ablated()
        return np.stack([self.baseline_output.norm(dim=-1).numpy(), output.norm(dim=-1).numpy()], axis=1)

    def _build_figure(self) -> None:
        tokens = self.model.tokens
        self.ax_base, self.ax_ablated, self.ax_norm = self.figure.subplots(1, 3, width_ratios=[1, 1, 1.1])
        zeros = np.zeros((len(tokens), len(tokens)))
        self.base_image = viz.plot_attention(zeros, tokens, tokens, ax=self.ax_base, vmax=1.0)
        self.ablated_image = viz.plot_attention(zeros, tokens, tokens, ax=self.ax_ablated, vmax=1.0)
        positions = np.arange(len(tokens))
        colours = sns.color_palette("colorblind", 2)
        self.base_bars = self.ax_norm.bar(positions - 0.2, zeros[0], width=0.4, color=colours[0], label="unablated")
        self.ablated_bars = self.ax_norm.bar(positions + 0.2, zeros[0], width=0.4, color=colours[1], label="ablated")
        self.ax_norm.set_xticks(positions, tokens, rotation=45, ha="right", rotation_mode="anchor")
        self.ax_norm.set_xlabel("token")
        self.ax_norm.set_ylabel("‖output vector‖")
        self.ax_norm.legend(loc="upper left", fontsize=9)
        self.ax_norm.set_title("output norm per token")

    def _update(self) -> None:
        layer, head = self.controls["layer"].value, self.controls["head"].value
        self.base_image.set_data(self.baseline_weights[layer, head].numpy())
        self.ablated_image.set_data(self.current_matrix())
        self.ax_base.set_title(f"unablated: layer {layer}, head {head}")
        removed = [_ABLATION_LABELS[name].removeprefix("remove ") for name, on in self.ablations().items() if on]
        self.ax_ablated.set_title("without " + ", ".join(removed) if removed else "ablated (nothing removed yet)")
        self.ax_ablated.title.set_fontsize(10 if len(removed) > 1 else 12)
        norms = self.current_norms()  # (T, 2)
        for bar, value in zip(self.base_bars, norms[:, 0], strict=True):
            bar.set_height(value)
        for bar, value in zip(self.ablated_bars, norms[:, 1], strict=True):
            bar.set_height(value)
        self.ax_norm.set_ylim(0, float(norms.max()) * 1.15)

    def _changing_artists(self) -> list:
        """The two heatmaps (their frames are drawn over them) with their titles, and the whole bar chart
        (its bars, y axis and legend)."""
        changing = []
        for ax, image in ((self.ax_base, self.base_image), (self.ax_ablated, self.ablated_image)):
            changing += [image, *ax.spines.values(), ax.title]
        return [*changing, self.ax_norm]

    def _csv_labels(self):
        return self.model.tokens, self.model.tokens
