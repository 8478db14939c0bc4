"""The language-model explainer: follow one prompt through a ``GPT`` or a ``Llama``, from text to the next token.

Everything it shows is read from one record of the model's forward pass
(``course_lib.activations.run_with_record``): the widget never computes attention, an MLP or a
norm itself, so it cannot drift from the model it shows. Three pictures, each redrawn only when
what it shows changes:

1. **attention** of the chosen layer and head at the chosen stage: ``QK^T``, scaled by
   ``1/sqrt(d_head)``, masked (future positions set to ``-inf``), softmax;
2. **a closer look** (the ``panel`` control), for that layer and head:

   * ``embeddings``: the token embeddings, then the positions: GPT adds a learned table; Llama
     has no table and rotates q and k instead (RoPE), shown before and after the rotation;
   * ``Q, K, V``: the attention's input (the norm's output) and the head's queries, keys and
     values (Llama: the key/value head this query head shares with its group);
   * ``weights × V``: the head's output, all heads merged, and the output projection;
   * ``residual stream``: the stream entering the layer, the norm before attention, the stream
     after attention, the norm before the MLP, the stream leaving the layer;
   * ``MLP``: GPT: before and after GELU, then down; Llama: gate (SiLU), up, their product,
     then down;

3. **the next token**: the logits of the last position, and the probabilities after
   temperature, top-k and top-p, the cut tokens greyed out behind a cutoff line.

"Generate" samples a token from those probabilities, appends it and runs the model again. The
model runs once per prompt: changing the layer, head, stage, panel or sampling settings only
redraws. Tokens of a byte-level BPE (SmolLM2) are shown as readable pieces, with ``␣`` for a
space and ``↵`` for a newline.

Built in lesson 11 (train a tiny GPT); lesson 14 opens it on SmolLM2.
"""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import PIL.Image
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from course_lib import viz
from course_lib.activations import ActivationRecord, run_with_record
from course_lib.generation import next_token_probs, sample_next_token
from course_lib.llama import Llama
from course_lib.viz.widgets.attention_step_through import STAGE_RECORD_NAMES
from course_lib.viz.widgets.base import FigureWidget, _slider_style
from course_lib.viz.widgets.explainer_pictures import Heatmap, _block_parts, _Picture, _plot_label, readable_tokens

EXPLAINER_STAGES = ("QK^T", "÷ sqrt(d_k)", "masked", "softmax")
"""The attention stages the explainer can show (names shared with lesson 03's widget)."""

EXPLAINER_PANELS = ("embeddings", "Q, K, V", "weights × V", "residual stream", "MLP")
"""What the second picture can show, in the order the model computes it."""

_STAGE_LABELS = {
    "QK^T": "scores QK^T",
    "÷ sqrt(d_k)": "scaled: QK^T / sqrt(d_head)",
    "masked": "masked: -inf above the diagonal",
    "softmax": "softmax: attention weights",
}
DEFAULT_PROMPT = "if the dog that the cats chase sleeps , then"


class LanguageModelExplainer(FigureWidget):
    """Type a prompt and watch a GPT or a Llama turn it into next-token probabilities (lesson 11).

    Args:
        model, tokenizer: a course_lib ``GPT`` or ``Llama`` and its tokenizer (a tokenizer of
            lesson 01, or a ``ByteLevelBPETokenizer``); neither: the tiny GPT of lesson 11.
        prompt: the starting text. A tokenizer with a ``bos_id`` gets it put first.
        seed: seeds the generator of "Generate", so the same clicks give the same text.
        n_bars: how many of the most likely tokens the next-token picture shows.

    Controls (``.controls``): ``prompt`` (text), ``layer``, ``head``, ``stage`` (one of
    ``EXPLAINER_STAGES``), ``panel`` (one of ``EXPLAINER_PANELS``), ``temperature``, ``top_k``
    (0 = off), ``top_p`` (1 = off); ``.generate_button`` appends a sampled token.

    What is shown can be read back, all of it from ``current_record()`` (the
    ``ActivationRecord`` of the prompt): ``current_tokens()``, ``current_embeddings()``
    (T, d_model), ``current_qkv()`` (each (T, d_head)), ``current_matrix()`` (the attention
    stage, (T, T)), ``current_mlp()`` (T, d_ff), ``current_panel()`` (the second picture's
    heatmaps), ``current_logits()`` (V,) and ``current_probs()`` (V,) of the last position.
    ``pictures`` holds the three pictures; ``redraws`` counts how often each was redrawn.
    """

    def __init__(self, model=None, tokenizer=None, prompt: str = DEFAULT_PROMPT, seed: int = 0, n_bars: int = 12):
        where = "LanguageModelExplainer"
        if model is None or tokenizer is None:
            if model is not None or tokenizer is not None:
                raise ValueError(f"{where}: pass both model and tokenizer, or neither (the tiny GPT of lesson 11)")
            from course_lib.tiny_gpt import load_tiny_gpt

            model, tokenizer, _ = load_tiny_gpt()
        self.parts = _block_parts(model)
        if model.config.vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"{where}: the model has vocab_size={model.config.vocab_size} but the tokenizer has "
                f"{tokenizer.vocab_size} tokens; pass the tokenizer the model was trained with"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.is_llama = isinstance(model, Llama)
        self.n_bars = min(n_bars, tokenizer.vocab_size)
        self.generator = torch.Generator().manual_seed(seed)
        self._encoded: tuple[str, list[int]] = ("", [])  # (prompt text, its ids), set by "Generate" too
        self._record_ids: list[int] | None = None
        self._record: ActivationRecord | None = None
        self._labels: list[str] = []
        self._top_for: tuple = (None, None)  # (ids, the top tokens after them)
        self.redraws = {"attention": 0, "panel": 0, "next token": 0}
        self._panel_images: dict[str, list] = {}  # panel -> its heatmaps (AxesImage)
        self._panel_outlines: dict[str, Rectangle | None] = {}
        self._panel_ticks_for: dict[str, list[int] | None] = {}
        config = model.config
        controls = {
            "prompt": widgets.Text(value=prompt, description="prompt", continuous_update=False),
            "layer": widgets.IntSlider(value=0, min=0, max=config.n_layers - 1, description="layer"),
            "head": widgets.IntSlider(value=0, min=0, max=config.n_heads - 1, description="head"),
            "stage": widgets.ToggleButtons(options=EXPLAINER_STAGES, value="softmax", description="stage"),
            "panel": widgets.ToggleButtons(options=EXPLAINER_PANELS, value="Q, K, V", description="look at"),
            "temperature": widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, description="temperature"),
            "top_k": widgets.IntSlider(
                value=0, min=0, max=min(tokenizer.vocab_size, 200), description="top-k (0 = off)"
            ),
            "top_p": widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.01, description="top-p (1 = off)"),
        }
        controls["prompt"].layout.width = "640px"
        for control in controls.values():
            control.style = _slider_style()
        self.generate_button = widgets.Button(description="Generate", icon="play", button_style="primary")
        self.tokens_label = widgets.HTML(value="")
        super().__init__(controls, figsize=(6.4, 5.4))
        self.generate_button.on_click(self._guarded(lambda _: self.generate()))
        attention, panel, next_token = (picture.image for picture in self.pictures.values())
        self.widget.children = (
            widgets.HBox([controls["prompt"], self.generate_button]),
            self.tokens_label,
            widgets.HBox(
                [controls["layer"], controls["head"], controls["stage"]], layout=widgets.Layout(flex_flow="row wrap")
            ),
            widgets.HBox([controls["temperature"], controls["top_k"], controls["top_p"]]),
            widgets.HBox([attention, next_token], layout=widgets.Layout(flex_flow="row wrap")),
            controls["panel"],
            panel,
            *self.widget.children[2:],
        )

    # ---------------------------------------------------------------- the model run

    def _text_ids(self) -> list[int]:
        """The prompt's token ids, encoded once per text. After "Generate" they are exactly the
        generated ids (decoding and encoding again could cut the text into other tokens)."""
        text = self.controls["prompt"].value
        if self._encoded[0] != text:
            self._encoded = (text, list(self.tokenizer.encode(text)))
        return list(self._encoded[1])

    def prompt_ids(self) -> list[int]:
        """The ids the model reads: ``bos_id`` (if the tokenizer has one) and the prompt's ids,
        cut to the model's context length (the last tokens kept)."""
        bos_id = getattr(self.tokenizer, "bos_id", None)
        ids = ([bos_id] if bos_id is not None else []) + self._text_ids()
        if not ids:
            raise ValueError("LanguageModelExplainer: the prompt has no tokens; type some text")
        return ids[-self.model.config.context_length :]

    def current_record(self) -> ActivationRecord:
        """The record of the model's forward pass on the prompt: run once per prompt, then reused."""
        ids = self.prompt_ids()
        if ids != self._record_ids:
            device = next(self.model.parameters()).device
            self._record = run_with_record(self.model, torch.tensor([ids], device=device))  # (1, T) -> record
            self._record_ids = ids
            self._labels = readable_tokens(self.tokenizer, ids)
        return self._record

    def _read(self, name: str, *index) -> np.ndarray:
        """One recorded tensor (a slice of it) as float64 numpy, for plotting."""
        return self.current_record()[name][index].detach().to("cpu", torch.float64).numpy()

    def _attention_name(self, what: str) -> str:
        return f"blocks.{self.controls['layer'].value}.self_attn.{what}"

    def _kv_head(self) -> int:
        """The key/value head the chosen query head reads (itself, without grouped-query attention)."""
        return int(self.current_record()[self._attention_name("kv_head")][self.controls["head"].value])

    def current_tokens(self) -> list[str]:
        """The tokens the model reads, as readable labels (see ``readable_tokens``)."""
        self.current_record()
        return list(self._labels)

    def current_embeddings(self) -> np.ndarray:
        """What enters block 0, (T, d_model): GPT: token + position embedding; Llama: the token embedding."""
        return self._read("token_embeddings" if self.is_llama else "embeddings", 0)

    def current_qkv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Queries of the chosen head, keys and values of the key/value head it reads, each (T, d_head)."""
        head, kv_head = self.controls["head"].value, self._kv_head()
        q = self._read(self._attention_name("q"), 0, head)  # (T, d_head), after RoPE for Llama
        k = self._read(self._attention_name("k"), 0, kv_head)  # (T, d_head)
        v = self._read(self._attention_name("v"), 0, kv_head)  # (T, d_head)
        return q, k, v

    def current_matrix(self) -> np.ndarray:
        """The attention stage shown for the chosen layer and head, (T, T)."""
        stage = STAGE_RECORD_NAMES[self.controls["stage"].value]
        return self._read(self._attention_name(stage), 0, self.controls["head"].value)

    def current_mlp(self) -> np.ndarray:
        """The MLP's hidden activations of the chosen layer, (T, d_ff): GPT after GELU, Llama gate × up."""
        return self._read(f"blocks.{self.controls['layer'].value}.{self.parts['mlp']}.hidden", 0)

    def current_logits(self) -> np.ndarray:
        """Logits of the next token after the last position, (V,)."""
        return self._read("logits", 0, -1)

    def _sampling_settings(self):
        top_k = self.controls["top_k"].value or None
        top_p = self.controls["top_p"].value
        return self.controls["temperature"].value, top_k, (None if top_p >= 1.0 else top_p)

    def current_probs(self) -> np.ndarray:
        """Probabilities of the next token after temperature, top-k and top-p, (V,)."""
        temperature, top_k, top_p = self._sampling_settings()
        logits = torch.from_numpy(self.current_logits())  # (V,)
        return next_token_probs(logits, temperature, top_k, top_p).numpy()

    def generate(self) -> str:
        """Sample one token from ``current_probs()`` and append it to the prompt; returns its label.

        If the token is the tokenizer's ``eos_id`` the prompt stays as it is (the text is finished).
        """
        probs = torch.from_numpy(self.current_probs())  # (V,)
        token_id = int(sample_next_token(probs[None, :], self.generator)[0])
        token = readable_tokens(self.tokenizer, [token_id])[0]
        if token_id == getattr(self.tokenizer, "eos_id", None):
            self.status.value = f"sampled {token}: the model ends the text here"
            return token
        ids = self._text_ids() + [token_id]
        text = self.tokenizer.decode(ids)
        self._encoded = (text, ids)
        self.status.value = f"sampled {token!r} (p = {float(probs[token_id]):.3f})"
        if self.controls["prompt"].value == text:
            self.refresh()  # the new token adds no visible text (an unfinished character): redraw anyway
        else:
            self.controls["prompt"].value = text  # triggers a refresh
        return token

    # ---------------------------------------------------------------- the second picture's heatmaps

    def current_panel(self) -> list[Heatmap]:
        """The heatmaps of the second picture for the chosen panel, layer and head, read from the record."""
        return self._panel_heatmaps(self.controls["panel"].value)

    def _panel_heatmaps(self, panel: str) -> list[Heatmap]:
        heatmaps_of = {
            "embeddings": self._embedding_heatmaps,
            "Q, K, V": self._qkv_heatmaps,
            "weights × V": self._output_heatmaps,
            "residual stream": self._residual_heatmaps,
            "MLP": self._mlp_heatmaps,
        }
        if panel not in heatmaps_of:
            raise ValueError(f"LanguageModelExplainer: panel must be one of {EXPLAINER_PANELS}, got {panel!r}")
        return heatmaps_of[panel]()

    def _embedding_heatmaps(self) -> list[Heatmap]:
        """GPT: token embedding + position embedding; Llama: the token embedding, and q and k before
        and after RoPE (its positions enter inside attention, in every layer)."""
        if not self.is_llama:
            return [
                Heatmap("token embedding", self._read("token_embeddings", 0), "d_model"),
                Heatmap("+ position embedding (a learned table)", self._read("position_embeddings"), "d_model"),
                Heatmap("= what enters layer 0", self._read("embeddings", 0), "d_model"),
            ]
        layer, head, kv_head = self.controls["layer"].value, self.controls["head"].value, self._kv_head()
        attention = f"blocks.{layer}.self_attn"
        return [
            Heatmap("token embedding (no position table)", self._read("token_embeddings", 0), "d_model"),
            Heatmap(f"q, head {head}, before RoPE", self._read(f"{attention}.q_before_rope", 0, head), "d_head"),
            Heatmap("q after RoPE (turned)", self._read(f"{attention}.q", 0, head), "d_head"),
            Heatmap(f"k, kv head {kv_head}, before RoPE", self._read(f"{attention}.k_before_rope", 0, kv_head), "d_head"),
            Heatmap("k after RoPE", self._read(f"{attention}.k", 0, kv_head), "d_head"),
        ]  # fmt: skip

    def _qkv_heatmaps(self) -> list[Heatmap]:
        """The attention's input (the norm's output), then the head's Q and its group's K and V."""
        layer, head, kv_head = self.controls["layer"].value, self.controls["head"].value, self._kv_head()
        normed = self._read(f"blocks.{layer}.{self.parts['attention_norm']}.output", 0)
        q, k, v = self.current_qkv()
        rotated = " (after RoPE)" if self.is_llama else ""
        shared = f"kv head {kv_head}" if self.is_llama else f"head {head}"  # a group's shared keys and values
        return [
            Heatmap(f"input: {self.parts['norm']}(x), layer {layer}", normed, "d_model"),
            Heatmap(f"Q, head {head}{rotated}", q, "d_head"),
            Heatmap(f"K, {shared}{rotated}", k, "d_head"),
            Heatmap(f"V, {shared}", v, "d_head"),
        ]

    def _output_heatmaps(self) -> list[Heatmap]:
        """The head's output (weights x V), all heads merged (the chosen one framed), then x W_O."""
        head = self.controls["head"].value
        attention = f"blocks.{self.controls['layer'].value}.self_attn"
        d_head = self.current_record()[f"{attention}.heads"].shape[-1]
        return [
            Heatmap(f"weights × V: head {head}'s output", self._read(f"{attention}.heads", 0, head), "d_head"),
            Heatmap("merged: all heads side by side", self._read(f"{attention}.merged", 0), "n_heads · d_head",
                    columns=(head * d_head, (head + 1) * d_head)),
            Heatmap("output: merged · W_O", self._read(f"{attention}.output", 0), "d_model"),
        ]  # fmt: skip

    def _residual_heatmaps(self) -> list[Heatmap]:
        """The residual stream through the layer, with the two norms' outputs."""
        layer, norm = self.controls["layer"].value, self.parts["norm"]
        block = f"blocks.{layer}"
        return [
            Heatmap(f"x entering layer {layer}", self._read(f"{block}.residual_in", 0), "d_model"),
            Heatmap(f"{norm}(x): attention's input", self._read(f"{block}.{self.parts['attention_norm']}.output", 0), "d_model"),
            Heatmap("x + attention", self._read(f"{block}.residual_after_self_attn", 0), "d_model"),
            Heatmap(f"{norm}(x): the MLP's input", self._read(f"{block}.{self.parts['mlp_norm']}.output", 0), "d_model"),
            Heatmap(f"x + MLP: leaving layer {layer}", self._read(f"{block}.residual_out", 0), "d_model"),
        ]  # fmt: skip

    def _mlp_heatmaps(self) -> list[Heatmap]:
        """GPT: before and after the activation, then down; Llama: gate, up, their product, then down."""
        mlp = f"blocks.{self.controls['layer'].value}.{self.parts['mlp']}"
        if self.is_llama:
            return [
                Heatmap("gate: SiLU(x · W_gate)", self._read(f"{mlp}.gate", 0), "d_ff"),
                Heatmap("up: x · W_up", self._read(f"{mlp}.up", 0), "d_ff"),
                Heatmap("hidden: gate × up (SwiGLU)", self._read(f"{mlp}.hidden", 0), "d_ff"),
                Heatmap("output: hidden · W_down", self._read(f"{mlp}.output", 0), "d_model"),
            ]
        activation = self.model.config.activation.upper()
        return [
            Heatmap(f"x · W_1 (before {activation})", self._read(f"{mlp}.pre_activation", 0), "d_ff"),
            Heatmap(f"hidden: {activation}(x · W_1)", self._read(f"{mlp}.hidden", 0), "d_ff"),
            Heatmap("output: hidden · W_2", self._read(f"{mlp}.output", 0), "d_model"),
        ]

    # ---------------------------------------------------------------- the pictures

    def _build_figure(self) -> None:
        """Three pictures: attention (on the base class's figure), a closer look, the next token."""
        attention = _Picture(
            self._build_attention, self._attention_state, self._draw_attention, self._longest_token, self.dpi
        )
        attention.image = self.image
        attention.add_figure("attention", self.figure)
        panel = _Picture(self._build_panel, self._panel_state, self._draw_panel, self._longest_token, self.dpi)
        next_token = _Picture(self._build_next_token, self._next_token_state, self._draw_next_token, self._longest_top_token, self.dpi)  # fmt: skip
        self.pictures = {"attention": attention, "panel": panel, "next token": next_token}

    def _longest_token(self) -> int:
        """The length of the longest token label: the layout is recomputed only when it changes."""
        return max(len(token) for token in self.current_tokens())

    def _top_tokens(self) -> tuple[np.ndarray, list[str]]:
        """The ids of the ``n_bars`` largest logits, largest first, and their labels (once per prompt)."""
        ids = self.prompt_ids()
        if self._top_for[0] != ids:
            order = np.argsort(-self.current_logits(), kind="stable")[: self.n_bars]
            self._top_for = (ids, (order, readable_tokens(self.tokenizer, order.tolist())))
        return self._top_for[1]

    def _longest_top_token(self) -> int:
        return max(len(token) for token in self._top_tokens()[1])

    def _attention_state(self):
        c = self.controls
        return (tuple(self.prompt_ids()), c["layer"].value, c["head"].value, c["stage"].value)

    def _panel_state(self):
        c = self.controls
        panel = c["panel"].value
        if panel == "embeddings" and not self.is_llama:
            return (tuple(self.prompt_ids()), panel)  # GPT's embeddings do not depend on the layer or head
        return (tuple(self.prompt_ids()), panel, c["layer"].value, c["head"].value)

    def _next_token_state(self):
        return (tuple(self.prompt_ids()), *self._sampling_settings())

    def refresh(self) -> None:
        """Redraw the pictures whose controls changed (all three for a new prompt); the time it
        took is appended to ``update_seconds``."""
        if self._held:
            self._missed_update = True
            return
        start = time.perf_counter()
        label = "<b>tokens:</b> " + " | ".join(f"<code>{html.escape(t)}</code>" for t in self.current_tokens())
        if self.tokens_label.value != label:
            self.tokens_label.value = label
        for name, picture in self.pictures.items():
            if picture.refresh():
                self.redraws[name] += 1
        self.update_seconds.append(time.perf_counter() - start)

    # -- 1. attention

    def _build_attention(self, figure: Figure, kind) -> list:
        """One heatmap (T, T) with a colour bar; returns the artists that change."""
        self.ax_attention = figure.add_subplot()
        self.attention_image = viz.plot_matrix(
            np.zeros((2, 2)), ax=self.ax_attention, colorbar_label="score", xlabel="key (attended to)", ylabel="query"
        )
        self._attention_ticks_for = None
        image = self.attention_image
        return [image._hatch_background, image, self.ax_attention.title, image.colorbar_.ax]

    def _draw_attention(self):
        stage = self.controls["stage"].value
        matrix = self.current_matrix()
        layer, head = self.controls["layer"].value, self.controls["head"].value
        transparent = (1, 1, 1, 0)  # masked (-inf) cells let the hatched background show
        if stage == "softmax":
            self.attention_image.set_cmap(viz.get_cmap("rocket").with_extremes(bad=transparent))
            viz.update_image(self.attention_image, matrix, vmin=0.0, vmax=1.0)
            self.attention_image.colorbar_.set_label("attention weight")
        else:
            self.attention_image.set_cmap(viz.get_cmap("vlag").with_extremes(bad=transparent))
            viz.update_image(self.attention_image, matrix, center=0.0)
            self.attention_image.colorbar_.set_label("score")
        ids = self.prompt_ids()
        if self._attention_ticks_for != ids:
            labels = [_plot_label(t) for t in self.current_tokens()]
            viz.set_tick_labels(self.ax_attention, labels, labels)
            self.ax_attention.tick_params(axis="x", labelrotation=90)
            self._attention_ticks_for = ids
        shared = f" (k, v: kv head {self._kv_head()})" if self.is_llama else ""
        self.ax_attention.set_title(f"layer {layer}, head {head}{shared}\n{_STAGE_LABELS[stage]}", y=1.0)
        return "attention", self.figure, tuple(ids)

    # -- 2. a closer look

    def _build_panel(self, figure: Figure, panel: str) -> list:
        """A row of heatmaps, one per matrix of the panel; returns the artists that change.

        No colour bars (each would redraw its tick labels every time): a heatmap's title gives
        its colour scale, symmetric around 0 (white) and reaching the 99th percentile of the
        sizes, so that a few huge values (SmolLM2's residual stream has some) do not wash out
        the rest; its largest value is given too.
        """
        heatmaps = self._panel_heatmaps(panel)
        widths = [1.6 if h.xlabel in ("d_model", "d_ff", "n_heads · d_head") else 1.0 for h in heatmaps]
        axes = figure.subplots(1, len(heatmaps), width_ratios=widths, squeeze=False)[0]
        changing = []
        self._panel_images[panel] = []
        self._panel_outlines[panel] = None  # a frame around the chosen head's columns, where there is one
        self._panel_ticks_for[panel] = None
        for ax, heatmap in zip(axes, heatmaps, strict=True):
            image = viz.plot_matrix(heatmap.matrix, ax=ax, center=0.0, colorbar=False, xlabel=heatmap.xlabel)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel("")
            image._hatch_background.set_visible(False)  # no -inf here: nothing for the hatching to show
            changing += [image, ax.title]
            if heatmap.columns is not None:
                outline = Rectangle((0, 0), 1, 1, fill=False, edgecolor="black", linewidth=2)
                self._panel_outlines[panel] = ax.add_patch(outline)
                changing.append(outline)
            self._panel_images[panel].append(image)
        axes[0].set_ylabel("token")
        return changing

    def _draw_panel(self):
        panel = self.controls["panel"].value
        heatmaps = self._panel_heatmaps(panel)
        figure = self.pictures["panel"].figure_for(panel, (14, 3.9))
        for image, heatmap in zip(self._panel_images[panel], heatmaps, strict=True):
            size = np.abs(heatmap.matrix)
            scale = max(float(np.quantile(size, 0.99)), 1e-12)  # a few huge values would wash out the rest
            viz.update_image(image, heatmap.matrix, vmin=-scale, vmax=scale)
            title = f"{heatmap.title}\ncolour ±{scale:.3g} (largest {size.max():.3g})"
            image.axes.set_title(title, fontsize=9, y=1.0)  # a fixed y: nothing to measure before drawing it
            if heatmap.columns is not None:
                first, end = heatmap.columns
                self._panel_outlines[panel].set_bounds(first - 0.5, -0.5, end - first, heatmap.matrix.shape[0])
        ids = self.prompt_ids()
        if self._panel_ticks_for[panel] != ids:
            labels = [_plot_label(t) for t in self.current_tokens()]
            viz.set_tick_labels(self._panel_images[panel][0].axes, labels, None)
            self._panel_ticks_for[panel] = ids
        return panel, figure, tuple(ids)

    # -- 3. the next token

    def _build_next_token(self, figure: Figure, kind) -> list:
        """Logits (top n_bars) and the probabilities with the cutoff; every artist changes with the
        sampling settings except the logits, so the probabilities' axes are redrawn whole."""
        grid = figure.add_gridspec(1, 2, width_ratios=[1, 1.7])
        self.ax_logits = figure.add_subplot(grid[0, 0])
        self.ax_probs = figure.add_subplot(grid[0, 1])
        positions = np.arange(self.n_bars)
        self.logit_bars = self.ax_logits.barh(positions, np.zeros(self.n_bars), color=viz.KEPT_COLOUR)
        self.ax_logits.invert_yaxis()
        self.ax_logits.set_xlabel("logit")
        self.kept_bars, self.ghost_bars = viz.plot_sampling_bars(
            np.zeros(self.n_bars), [""] * self.n_bars, before_cut=np.zeros(self.n_bars), ax=self.ax_probs
        )
        self.cutoff_line = self.ax_probs.axvline(0, color="black", linestyle="--", linewidth=1.2)
        self.cutoff_text = self.ax_probs.text(
            0, 0.95, "", transform=self.ax_probs.get_xaxis_transform(), fontsize=9, va="top"
        )
        return [self.ax_probs]

    def _draw_next_token(self):
        figure = self.pictures["next token"].figure_for("next token", (7.6, 5.4))
        logits = self.current_logits()  # (V,)
        order, tokens = self._top_tokens()
        labels = [_plot_label(t) for t in tokens]
        for bar, value in zip(self.logit_bars, logits[order], strict=True):
            bar.set_width(value)
        low, high = float(min(0.0, logits[order].min())), float(max(0.0, logits[order].max()))
        self.ax_logits.set_xlim(low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))
        self.ax_logits.set_yticks(np.arange(self.n_bars), labels)
        last = _plot_label(self.current_tokens()[-1])
        self.ax_logits.set_title(f"logits after '{last}'\n(top {self.n_bars})", y=1.0)
        temperature, top_k, top_p = self._sampling_settings()
        before = next_token_probs(torch.from_numpy(logits), temperature).numpy()[order]
        probs = self.current_probs()  # (V,)
        final = probs[order]
        for bar, ghost, p_before, p_final in zip(self.kept_bars, self.ghost_bars, before, final, strict=True):
            ghost.set_height(p_before)
            bar.set_height(p_final)
            bar.set_color(viz.KEPT_COLOUR if p_final > 0 else viz.GREY)
        self.ax_probs.set_xticks(np.arange(self.n_bars), labels, rotation=45, ha="right", rotation_mode="anchor")
        kept_shown = int((final > 0).sum())
        if kept_shown < self.n_bars:
            self.cutoff_line.set_xdata([kept_shown - 0.5, kept_shown - 0.5])
            self.cutoff_line.set_visible(True)
            self.cutoff_text.set_position((kept_shown - 0.4, 0.95))
            self.cutoff_text.set_text("cutoff: never sampled")
        else:
            self.cutoff_line.set_visible(False)
            self.cutoff_text.set_text("")
        self.ax_probs.set_ylim(0, max(0.05, float(max(before.max(), final.max())) * 1.15))
        kept_total = int((probs > 0).sum())
        settings = [f"temperature={temperature:.2f}" + (" (greedy)" if temperature == 0 else "")]
        settings.append(f"top-k={top_k}" if top_k else "top-k off")
        settings.append(f"top-p={top_p:.2f}" if top_p else "top-p off")
        self.ax_probs.set_title(
            f"next-token probabilities\n{', '.join(settings)}: {kept_total} of {self.tokenizer.vocab_size} kept",
            fontsize=10,
            y=1.0,
        )
        return "next token", figure, tuple(self.prompt_ids())

    # ---------------------------------------------------------------- export

    def _csv_labels(self):
        tokens = self.current_tokens()
        return tokens, tokens

    def _all_pictures_png(self, dpi: int) -> bytes:
        """The three pictures in one PNG: attention and the next token side by side, the closer look below."""
        attention, panel, next_token = (
            PIL.Image.open(io.BytesIO(picture.png(dpi))).convert("RGB") for picture in self.pictures.values()
        )
        top = max(attention.height, next_token.height)
        sheet = PIL.Image.new(
            "RGB", (max(attention.width + next_token.width, panel.width), top + panel.height), "white"
        )
        sheet.paste(attention, (0, 0))
        sheet.paste(next_token, (attention.width, 0))
        sheet.paste(panel, (0, top))
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    def export_png(self, path) -> Path:
        """Write the three pictures as one PNG file; returns the path."""
        path = Path(path)
        path.write_bytes(self._all_pictures_png(110))
        return path

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle["image/png"] = base64.b64encode(self._all_pictures_png(self.dpi)).decode("ascii")
        bundle["text/plain"] = f"<{type(self).__name__}: a widget; run the notebook to use its controls>"
        return bundle


GPTExplainer = LanguageModelExplainer
"""The name lesson 11 uses: the explainer works for a ``GPT`` and a ``Llama`` alike."""
