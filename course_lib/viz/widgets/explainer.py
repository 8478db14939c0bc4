"""The GPT explainer: follow one prompt through a ``course_lib.GPT``, from words to the next word.

Panels, top to bottom and left to right (the order in which a GPT works):

1. the tokens of the prompt (``<bos>`` first) and their vectors, token embedding plus
   position embedding;
2. one head of one layer, at one stage of attention: ``QK^T``, scaled by ``1/sqrt(d_head)``,
   masked (future positions set to ``-inf``), softmax;
3. the MLP activations of that layer (after GELU), one row per token;
4. the logits of the last position (the most likely tokens);
5. the probabilities after temperature, top-k and top-p, with the cut tokens greyed out;
6. "Generate" samples a token from those probabilities, appends it to the prompt and runs
   everything again.

It works for any ``course_lib.GPT`` and tokenizer of ``course_lib.tokenization``; by default
it loads the tiny GPT trained in lesson 11. Like every widget of the course it exports PNG and
CSV and shows a static figure in a stored notebook.

Built in lesson 11 (train a tiny GPT).
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch

from course_lib import viz
from course_lib.generation import next_token_probs, sample_next_token
from course_lib.viz.widgets.attention_step_through import attention_stage, qkv_from_attention
from course_lib.viz.widgets.base import FigureWidget, _slider_style

EXPLAINER_STAGES = ("QK^T", "÷ sqrt(d_k)", "masked", "softmax")
"""The attention stages the explainer can show (names shared with lesson 03's widget)."""

_STAGE_LABELS = {
    "QK^T": "scores QK^T",
    "÷ sqrt(d_k)": "scaled: QK^T / sqrt(d_head)",
    "masked": "masked: -inf above the diagonal",
    "softmax": "softmax: attention weights",
}
DEFAULT_PROMPT = "if the dog that the cats chase sleeps , then"


class GPTExplainer(FigureWidget):
    """Type a prompt and watch a GPT turn it into next-token probabilities (lesson 11).

    Controls (``.controls``): ``prompt`` (text), ``layer``, ``head``, ``stage`` (one of
    ``EXPLAINER_STAGES``), ``temperature``, ``top_k`` (0 = off), ``top_p`` (1 = off);
    ``.generate_button`` appends a sampled token (drawn with a ``torch.Generator`` seeded
    with ``seed``, so the same clicks give the same text).

    What is shown can be read back: ``current_tokens()``, ``current_embeddings()`` (T, d_model),
    ``current_matrix()`` (the attention stage, (T, T)), ``current_mlp()`` (T, d_ff),
    ``current_logits()`` (V,) and ``current_probs()`` (V,) of the last position.
    """

    def __init__(self, model=None, tokenizer=None, prompt: str = DEFAULT_PROMPT, seed: int = 0, n_bars: int = 12):
        if model is None or tokenizer is None:
            if model is not None or tokenizer is not None:
                raise ValueError("GPTExplainer: pass both model and tokenizer, or neither (the tiny GPT of lesson 11)")
            from course_lib.tiny_gpt import load_tiny_gpt

            model, tokenizer, _ = load_tiny_gpt()
        if not hasattr(model, "blocks") or not hasattr(model, "token_embedding"):
            raise ValueError(f"GPTExplainer: model must be a course_lib.GPT, got {type(model).__name__}")
        if model.config.vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"GPTExplainer: the model has vocab_size={model.config.vocab_size} but the tokenizer has "
                f"{tokenizer.vocab_size} tokens; pass the tokenizer the model was trained with"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.n_bars = min(n_bars, tokenizer.vocab_size)
        self.generator = torch.Generator().manual_seed(seed)
        self._cache_key = None
        config = model.config
        controls = {
            "prompt": widgets.Text(value=prompt, description="prompt", continuous_update=False),
            "layer": widgets.IntSlider(value=0, min=0, max=config.n_layers - 1, description="layer"),
            "head": widgets.IntSlider(value=0, min=0, max=config.n_heads - 1, description="head"),
            "stage": widgets.ToggleButtons(options=EXPLAINER_STAGES, value="softmax", description="stage"),
            "temperature": widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, description="temperature"),
            "top_k": widgets.IntSlider(value=0, min=0, max=tokenizer.vocab_size, description="top-k (0 = off)"),
            "top_p": widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.01, description="top-p (1 = off)"),
        }
        controls["prompt"].layout.width = "640px"
        for control in controls.values():
            control.style = _slider_style()
        self.generate_button = widgets.Button(description="Generate", icon="play", button_style="primary")
        self.tokens_label = widgets.HTML(value="")
        super().__init__(controls, figsize=(14, 9.5))
        self.generate_button.on_click(self._guarded(lambda _: self.generate()))
        self.widget.children = (
            widgets.HBox([controls["prompt"], self.generate_button]),
            self.tokens_label,
            widgets.HBox(
                [controls["layer"], controls["head"], controls["stage"]], layout=widgets.Layout(flex_flow="row wrap")
            ),
            widgets.HBox([controls["temperature"], controls["top_k"], controls["top_p"]]),
            *self.widget.children[1:],
        )

    # ---------------------------------------------------------------- the model run

    def prompt_ids(self) -> list[int]:
        """``<bos>`` plus the prompt's token ids, cut to the model's context length (the last tokens kept)."""
        ids = [self.tokenizer.bos_id] + self.tokenizer.encode(self.controls["prompt"].value)
        return ids[-self.model.config.context_length :]

    def _run(self) -> dict:
        """Run the model on the prompt once, keeping every intermediate the panels show."""
        ids = self.prompt_ids()
        if self._cache_key == ids:
            return self._cache
        model = self.model
        block_inputs: list[torch.Tensor] = []
        hooks = [
            block.self_attn.register_forward_pre_hook(lambda _module, args: block_inputs.append(args[0].detach()))
            for block in model.blocks
        ]
        try:
            with torch.no_grad():
                x = torch.tensor([ids])  # (1, T)
                embeddings = model.position_embedding(model.token_embedding(x))  # (1, T, d_model)
                logits = model(x)[0, -1]  # (V,)
                mlp = [block.ff.last_hidden[0].detach().clone() for block in model.blocks]  # n_layers x (T, d_ff)
        finally:
            for hook in hooks:
                hook.remove()
        self._cache_key = ids
        self._cache = {
            "ids": ids,
            "embeddings": embeddings[0],  # (T, d_model)
            "attention_inputs": [normed[0] for normed in block_inputs],  # n_layers x (T, d_model), after norm1
            "mlp": mlp,
            "logits": logits,
        }
        return self._cache

    def current_tokens(self) -> list[str]:
        """The tokens the model reads: ``<bos>`` and the prompt's tokens."""
        return self.tokenizer.ids_to_tokens(self._run()["ids"])

    def current_embeddings(self) -> np.ndarray:
        """Token embedding + position embedding of every token, (T, d_model)."""
        return self._run()["embeddings"].double().numpy()

    def current_qkv(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of the chosen layer and head, each (T, d_head)."""
        layer, head = self.controls["layer"].value, self.controls["head"].value
        attention = self.model.blocks[layer].self_attn
        q, k, v = qkv_from_attention(attention, self._run()["attention_inputs"][layer])  # (n_heads, T, d_head) each
        return q[head], k[head], v[head]

    def current_matrix(self) -> np.ndarray:
        """The attention stage shown for the chosen layer and head, (T, T)."""
        q, k, v = self.current_qkv()  # (T, d_head) each
        return attention_stage(q, k, v, self.controls["stage"].value, causal=True)

    def current_mlp(self) -> np.ndarray:
        """MLP activations (after GELU) of the chosen layer, (T, d_ff)."""
        return self._run()["mlp"][self.controls["layer"].value].double().numpy()

    def current_logits(self) -> np.ndarray:
        """Logits of the next token after the last position, (V,)."""
        return self._run()["logits"].double().numpy()

    def _sampling_settings(self):
        top_k = self.controls["top_k"].value or None
        top_p = self.controls["top_p"].value
        return self.controls["temperature"].value, top_k, (None if top_p >= 1.0 else top_p)

    def current_probs(self) -> np.ndarray:
        """Probabilities of the next token after temperature, top-k and top-p, (V,)."""
        temperature, top_k, top_p = self._sampling_settings()
        return next_token_probs(self._run()["logits"], temperature, top_k, top_p).double().numpy()

    def generate(self) -> str:
        """Sample one token from ``current_probs()`` and append it to the prompt; returns the token.

        If the token is ``<eos>`` the prompt stays as it is (the sentence is finished).
        """
        probs = torch.as_tensor(self.current_probs())  # (V,)
        token_id = int(sample_next_token(probs[None, :], self.generator)[0])
        token = self.tokenizer.id_to_token[token_id]
        if token_id == self.tokenizer.eos_id:
            self.status.value = "sampled <eos>: the model ends the sentence here"
            return token
        ids = self.prompt_ids()[1:] + [token_id]
        self.status.value = f"sampled {token!r} (p = {float(probs[token_id]):.3f})"
        self.controls["prompt"].value = self.tokenizer.decode(ids)  # triggers a refresh
        return token

    # ---------------------------------------------------------------- the figure

    def _build_figure(self) -> None:
        grid = self.figure.add_gridspec(2, 3, height_ratios=[1.15, 1])
        self.ax_embed = self.figure.add_subplot(grid[0, 0])
        self.ax_attention = self.figure.add_subplot(grid[0, 1])
        self.ax_mlp = self.figure.add_subplot(grid[0, 2])
        self.ax_logits = self.figure.add_subplot(grid[1, 0:1])
        self.ax_probs = self.figure.add_subplot(grid[1, 1:3])
        self.embed_image = viz.plot_matrix(
            np.zeros((2, 2)), ax=self.ax_embed, center=0.0, colorbar_label="value", xlabel="dimension", ylabel="token"
        )
        self.attention_image = viz.plot_matrix(
            np.zeros((2, 2)), ax=self.ax_attention, colorbar_label="score", xlabel="key (attended to)", ylabel="query"
        )
        self.mlp_image = viz.plot_matrix(
            np.zeros((2, 2)),
            ax=self.ax_mlp,
            center=0.0,
            colorbar_label="activation",
            xlabel="hidden unit",
            ylabel="token",
        )
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

    def _update(self) -> None:
        tokens = self.current_tokens()
        self.tokens_label.value = "<b>tokens:</b> " + " | ".join(
            f"<code>{token.replace('<', '&lt;').replace('>', '&gt;')}</code>" for token in tokens
        )
        T = len(tokens)
        # 1. embeddings
        viz.update_image(self.embed_image, self.current_embeddings(), center=0.0)
        viz.set_tick_labels(self.ax_embed, tokens, None)
        self.ax_embed.set_title(f"1. token + position embedding\n({T} tokens x d_model={self.model.config.d_model})")
        # 2. attention stage
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
        viz.set_tick_labels(self.ax_attention, tokens, tokens)
        self.ax_attention.tick_params(axis="x", labelrotation=90)
        self.ax_attention.set_title(f"2. layer {layer}, head {head}: {_STAGE_LABELS[stage]}")
        # 3. MLP
        viz.update_image(self.mlp_image, self.current_mlp(), center=0.0)
        viz.set_tick_labels(self.ax_mlp, tokens, None)
        self.ax_mlp.set_title(f"3. layer {layer}: MLP activations after GELU\n(d_ff={self.current_mlp().shape[1]})")
        # 4. logits of the most likely tokens
        logits = self.current_logits()
        order = np.argsort(-logits, kind="stable")[: self.n_bars]
        labels = [self.tokenizer.id_to_token[i] for i in order]
        for bar, value in zip(self.logit_bars, logits[order], strict=True):
            bar.set_width(value)
        low, high = float(min(0.0, logits[order].min())), float(max(0.0, logits[order].max()))
        self.ax_logits.set_xlim(low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))
        self.ax_logits.set_yticks(np.arange(self.n_bars), labels)
        self.ax_logits.set_title(f"4. logits after '{tokens[-1]}' (top {self.n_bars})")
        # 5. probabilities with the cutoff
        temperature, top_k, top_p = self._sampling_settings()
        before = next_token_probs(self._run()["logits"], temperature).double().numpy()[order]
        final = self.current_probs()[order]
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
        kept_total = int((self.current_probs() > 0).sum())
        settings = [f"temperature={temperature:.2f}" + (" (greedy)" if temperature == 0 else "")]
        settings.append(f"top-k={top_k}" if top_k else "top-k off")
        settings.append(f"top-p={top_p:.2f}" if top_p else "top-p off")
        self.ax_probs.set_title(
            f"5. next-token probabilities: {', '.join(settings)}; {kept_total} of {self.tokenizer.vocab_size} kept"
        )

    def _layout_key(self):
        return tuple(self._run()["ids"])  # a new prompt relabels the axes; the other controls do not

    def _csv_labels(self):
        tokens = self.current_tokens()
        return tokens, tokens
