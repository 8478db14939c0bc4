"""Rebuild the course's shipped checkpoints, and load them.

From the repository root (any operating system)::

    python -m course_lib.train translator   # lesson 10: checkpoints/translator.*
    python -m course_lib.train gpt          # lesson 11: checkpoints/tiny_gpt.*

Both recipes run a fixed number of steps with a fixed number of torch threads (``--threads``,
default the recipe's 2), seeded data and a seeded model: on the same machine with the same thread
count, a rerun writes the same weights, bit for bit. The time a run takes is measured and
recorded in the JSON file, but nothing depends on it. (``--time-limit SECONDS`` restores the
older runs that stopped on the clock; their weights depend on the machine's speed.)

The translator recipe lives here: the model's size, the batches, the loss (label-smoothed
cross-entropy), exact-match evaluation with greedy decoding, the cross-attention
snapshots, and saving/loading as safetensors (float16 weights) plus a JSON file with the
configuration, the vocabularies, the training history and the measured accuracies.

Built in lesson 10 (train a translator).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from course_lib.data.translation import (
    TranslationPair,
    Vocabulary,
    chinese_vocabulary,
    encode_pairs,
    english_vocabulary,
    make_splits,
    trim_padding,
)
from course_lib.generation import greedy_decode
from course_lib.models import Transformer, TransformerConfig
from course_lib.multihead import readable_path, use_fast_path
from course_lib.tokenization import PAD_ID
from course_lib.training import (
    CheckpointError,
    History,
    check_checkpoint_keys,
    default_checkpoint_dir,
    label_smoothed_cross_entropy,
    load_checkpoint,
    read_checkpoint_info,
    reproducible,
    save_checkpoint,
    train,
    verify_file_hash,
    weights_fingerprint,
)

TRANSLATOR_NAME = "translator"
REBUILD_TRANSLATOR = "python -m course_lib.train translator"
SNAPSHOTS_FILE = f"{TRANSLATOR_NAME}_snapshots.safetensors"


# ---------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class TranslatorRecipe:
    """Everything that decides the shipped translator, in one place.

    ``steps`` is the number of training steps; the cosine schedule ends at the last one. The
    default, 1,700, reaches at least 99.5% exact match on the test split in under three minutes on
    two cores (the shipped run: 99.95% in 109 s; 143 s in an earlier run on a busier machine). With
    ``time_limit_s=None`` (the default) the run is step-based and reproducible: ``threads`` torch
    threads, seeded data, seeded model, and the time it takes is only measured; a rerun on the same
    machine rebuilds the shipped weights bit for bit. ``time_limit_s`` gives the older clock-based run instead (not reproducible).
    ``fast_path`` trains on the fused kernels (``use_fast_path``; the
    snapshots and the final measurements use the readable path) and ``fused_adamw`` updates all
    parameters in one kernel: both give the same training, faster.
    """

    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 3
    d_ff: int = 256
    dropout: float = 0.0
    norm_first: bool = True
    batch_size: int = 64
    steps: int = 1700
    peak_lr: float = 2e-3
    warmup_steps: int = 100
    schedule: str = "cosine"
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    label_smoothing: float = 0.1
    n_train: int = 60_000
    n_val: int = 1_000
    n_test: int = 2_000
    n_long: int = 500
    eval_every: int = 250
    eval_size: int = 200
    snapshot_every: int = 100
    snapshot_dense_until: int = 1000
    snapshot_sparse_every: int = 500
    time_limit_s: float | None = None
    threads: int = 2
    fast_path: bool = True
    fused_adamw: bool = True


def build_translator(recipe: TranslatorRecipe, source_vocab: Vocabulary, target_vocab: Vocabulary) -> Transformer:
    """A course_lib ``Transformer`` of the recipe's size for the two vocabularies."""
    config = TransformerConfig(
        src_vocab_size=len(source_vocab),
        tgt_vocab_size=len(target_vocab),
        d_model=recipe.d_model,
        n_heads=recipe.n_heads,
        n_encoder_layers=recipe.n_layers,
        n_decoder_layers=recipe.n_layers,
        d_ff=recipe.d_ff,
        dropout=recipe.dropout,
        norm_first=recipe.norm_first,
        max_len=64,
        pad_id=source_vocab.pad_id,
    )
    return Transformer(config)


def batch_sampler(source: torch.Tensor, target: torch.Tensor, batch_size: int, seed: int, pool: int = 8):
    """``next_batch(step)`` for ``train``: random batches of sentences of similar length.

    It draws ``pool * batch_size`` random rows at once, sorts them by source length and
    cuts them into ``pool`` batches, served in random order. Sentences in a batch then
    have similar lengths, so little compute goes into padding (``pool=1``: plain random
    batches). Padding columns are trimmed.

    Shapes:
        source (N, S), target (N, T) -> each batch (B, S'), (B, T')
    """
    generator = torch.Generator().manual_seed(seed)
    source_lengths = (source != PAD_ID).sum(dim=1)  # (N,)
    waiting: list[torch.Tensor] = []

    def next_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not waiting:
            rows = torch.randint(0, source.shape[0], (pool * batch_size,), generator=generator)  # (pool * B,)
            rows = rows[torch.argsort(source_lengths[rows], stable=True)]  # (pool * B,) shortest first
            batches = rows.split(batch_size)  # pool tensors of (B,)
            waiting.extend(batches[i] for i in torch.randperm(len(batches), generator=generator).tolist())
        rows = waiting.pop()  # (B,)
        return trim_padding(source[rows]), trim_padding(target[rows])  # (B, S'), (B, T')

    return next_batch


def translation_loss(model: Transformer, batch, smoothing: float = 0.1) -> torch.Tensor:
    """Teacher forcing: the decoder reads ``<bos> y1 .. yn`` and must predict ``y1 .. yn <eos>``.

    Shapes:
        batch = (source (B, S), target (B, T)) -> scalar
    """
    source, target = batch
    decoder_input, expected = target[:, :-1], target[:, 1:]  # (B, T-1) each
    logits = model(source, decoder_input)  # (B, T-1, V)
    V = logits.shape[-1]
    return label_smoothed_cross_entropy(
        logits.reshape(-1, V), expected.reshape(-1), smoothing, ignore_index=model.config.pad_id
    )


@torch.no_grad()
def translate_batch(
    model: Transformer, pairs: list[TranslationPair], source_vocab: Vocabulary, target_vocab: Vocabulary
) -> list[list[str]]:
    """Greedy translations (as Chinese token lists) of a list of pairs' English sides."""
    source, _ = encode_pairs(pairs, source_vocab, target_vocab)  # (N, S)
    max_len = source.shape[1] + 12
    outputs = greedy_decode(model, source, target_vocab.bos_id, target_vocab.eos_id, max_len=max_len)  # (N, 1 + L)
    return [target_vocab.decode(row) for row in outputs]


def exact_match(
    model: Transformer,
    pairs: list[TranslationPair],
    source_vocab: Vocabulary,
    target_vocab: Vocabulary,
    batch_size: int = 500,
) -> tuple[float, list[tuple[TranslationPair, list[str]]]]:
    """Share of sentences translated exactly right by greedy decoding, and the wrong ones
    as (pair, model output) tuples."""
    if not pairs:
        raise ValueError("exact_match: pairs is empty")
    wrong = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        for pair, output in zip(chunk, translate_batch(model, chunk, source_vocab, target_vocab), strict=True):
            if tuple(output) != pair.chinese:
                wrong.append((pair, output))
    return 1.0 - len(wrong) / len(pairs), wrong


@torch.no_grad()
def cross_attention(model: Transformer, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-attention weights of every decoder layer, reading the reference target.

    Shapes:
        source (B, S), target (B, T) with <bos> .. <eos> -> (n_layers, B, n_heads, T - 1, S)
    """
    model.eval()
    model(source, target[:, :-1])  # (B, T-1, V); we want the weights it leaves behind
    return torch.stack([layer.cross_attn.attention_weights for layer in model.decoder.layers])


# ---------------------------------------------------------------- saving and loading


def _tied_names(config: TransformerConfig) -> tuple[str, ...]:
    """Weights stored once because they are tied to another one."""
    return ("output.weight",) if config.tie_output else ()


def save_translator(directory: Path, run: TranslatorRun, recipe: TranslatorRecipe) -> None:
    """Write ``translator.safetensors`` (float16 weights), ``translator_snapshots.safetensors`` and
    ``translator.json`` (config, vocabularies, history, facts, and the SHA-256 of both weight files)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = run.model
    state = model.state_dict()
    weights = {name: tensor.detach().to(torch.float16).contiguous() for name, tensor in state.items()}
    for name in _tied_names(model.config):
        weights.pop(name)  # tied to the target embedding: stored once
    save_file(
        {"cross_attention": run.snapshots.to(torch.float16).contiguous(), "steps": torch.tensor(run.snapshot_steps)},
        str(directory / SNAPSHOTS_FILE),
    )
    info = {
        "model_config": asdict(model.config),
        "recipe": asdict(recipe),
        "source_vocabulary": english_vocabulary().id_to_token,
        "target_vocabulary": chinese_vocabulary().id_to_token,
        "snapshot_sentences": [[list(p.english), list(p.chinese)] for p in run.snapshot_pairs],
        "history": run.history.to_dict(),
        "facts": run.facts,
    }
    save_checkpoint(directory, TRANSLATOR_NAME, weights, info, hashed=(SNAPSHOTS_FILE,))


def load_translator(directory: Path | str | None = None) -> tuple[Transformer, dict]:
    """Load the shipped translator (float16 on disk, float32 in memory) and its JSON info.

    Returns ``(model, info)``: the model in eval mode, and the dict written by
    ``save_translator`` (``info["facts"]`` holds the measured accuracies).

    A missing, damaged (SHA-256 differs from the JSON's), unreadable or mismatched file raises a
    ``CheckpointError`` (a ``ValueError``; ``CheckpointNotFoundError`` for a missing file) that
    names the file and says how to rebuild it.
    """
    where = "load_translator"
    directory = Path(directory) if directory is not None else default_checkpoint_dir()
    required = ("model_config", "source_vocabulary", "target_vocabulary")
    weights, info = load_checkpoint(where, directory, TRANSLATOR_NAME, REBUILD_TRANSLATOR, required)
    json_path = directory / f"{TRANSLATOR_NAME}.json"
    if info["source_vocabulary"] != english_vocabulary().id_to_token or (
        info["target_vocabulary"] != chinese_vocabulary().id_to_token
    ):
        raise CheckpointError(
            f"{where}: the vocabularies in {json_path} differ from course_lib.data.translation's; "
            f"rebuild the checkpoint with `{REBUILD_TRANSLATOR}`"
        )
    try:
        config = TransformerConfig(**info["model_config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{where}: {json_path} holds an invalid model_config ({error}); rebuild it with `{REBUILD_TRANSLATOR}`"
        ) from None
    model = Transformer(config)
    weights_path = directory / f"{TRANSLATOR_NAME}.safetensors"
    check_checkpoint_keys(where, weights_path, REBUILD_TRANSLATOR, model, weights, tied=_tied_names(config))
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)  # tied weights come along
    model.eval()
    return model, info


def load_translator_snapshots(directory: Path | str | None = None) -> tuple[list[int], torch.Tensor]:
    """The cross-attention snapshots saved during training.

    Shapes:
        -> steps (n_snapshots,), weights (n_snapshots, n_layers, n_sentences, n_heads, T, S) float32
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    where = "load_translator_snapshots"
    directory = Path(directory) if directory is not None else default_checkpoint_dir()
    info = read_checkpoint_info(where, directory, TRANSLATOR_NAME, REBUILD_TRANSLATOR)
    path = directory / SNAPSHOTS_FILE
    verify_file_hash(where, path, info.get(f"{SNAPSHOTS_FILE}_sha256"), REBUILD_TRANSLATOR)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"{where}: {path} cannot be read ({error}); rebuild it with `{REBUILD_TRANSLATOR}`"
        ) from None
    if set(tensors) != {"steps", "cross_attention"}:
        raise CheckpointError(
            f"{where}: {path} must hold 'steps' and 'cross_attention', got {sorted(tensors)}; "
            f"rebuild it with `{REBUILD_TRANSLATOR}`"
        )
    return tensors["steps"].tolist(), tensors["cross_attention"].float()


# ---------------------------------------------------------------- the whole run


def _round_to_float16(model: Transformer) -> None:
    """Round the weights to float16 and back, so the model evaluated is the model shipped."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.to(torch.float16).to(parameter.dtype))


@dataclass
class TranslatorRun:
    """What ``train_translator`` produces: the model, its history, the measured facts and the
    cross-attention snapshots (n_snapshots, n_layers, n_sentences, n_heads, T, S)."""

    model: Transformer
    history: History
    facts: dict
    snapshot_steps: list[int]
    snapshots: torch.Tensor
    snapshot_pairs: list[TranslationPair]


def train_translator(
    out_dir: Path | str | None = None,
    seed: int = 0,
    time_limit_s: float | None = None,
    recipe: TranslatorRecipe | None = None,
    progress: bool = True,
    save: bool = True,
    threads: int | None = None,
) -> TranslatorRun:
    """Generate the data, train the translator, measure it (greedy exact match on the
    validation, test and long sets, after rounding the weights to float16 as shipped) and
    save it when ``save``.

    ``time_limit_s`` and ``threads`` replace the recipe's. With the recipe's defaults the run is
    reproducible: the same seed and thread count on the same machine give the same weights."""
    recipe = recipe or TranslatorRecipe()
    if time_limit_s is not None:
        recipe = replace(recipe, time_limit_s=time_limit_s)
    if threads is not None:
        recipe = replace(recipe, threads=threads)
    with reproducible(recipe.threads):  # a fixed thread count and deterministic kernels
        return _train_translator(out_dir, seed, recipe, progress, save)


def _train_translator(
    out_dir: Path | str | None, seed: int, recipe: TranslatorRecipe, progress: bool, save: bool
) -> TranslatorRun:
    out_dir = Path(out_dir) if out_dir is not None else default_checkpoint_dir()
    random.seed(seed)
    torch.manual_seed(seed)
    load_average = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None  # a busy machine trains slower
    source_vocab, target_vocab = english_vocabulary(), chinese_vocabulary()
    splits = make_splits(seed, recipe.n_train, recipe.n_val, recipe.n_test, recipe.n_long)
    train_source, train_target = encode_pairs(splits["train"], source_vocab, target_vocab)  # (N, S), (N, T)
    model = use_fast_path(build_translator(recipe, source_vocab, target_vocab), recipe.fast_path)

    eval_pairs = splits["val"][: recipe.eval_size]
    snapshot_pairs = splits["test"][:4]
    snap_source, snap_target = encode_pairs(snapshot_pairs, source_vocab, target_vocab)  # (4, S), (4, T)

    def evaluate(m):
        with readable_path(m):  # greedy decoding exactly as the shipped model decodes
            return {"val_exact_match": exact_match(m, eval_pairs, source_vocab, target_vocab)[0]}

    def snapshot(m):
        with readable_path(m):  # the readable path keeps the cross-attention weights
            return cross_attention(m, snap_source, snap_target)

    history = train(
        model,
        batch_sampler(train_source, train_target, recipe.batch_size, seed),
        lambda m, batch: translation_loss(m, batch, recipe.label_smoothing),
        steps=recipe.steps,
        peak_lr=recipe.peak_lr,
        warmup_steps=recipe.warmup_steps,
        schedule=recipe.schedule,
        weight_decay=recipe.weight_decay,
        grad_clip=recipe.grad_clip,
        eval_every=recipe.eval_every,
        evaluate=evaluate,
        snapshot_every=recipe.snapshot_every,
        snapshot=snapshot,
        seed=seed,
        time_limit_s=recipe.time_limit_s,
        schedule_by_time=recipe.time_limit_s is not None,
        progress=progress,
        fused_adamw=recipe.fused_adamw,
    )
    use_fast_path(model, False)  # measured, saved and loaded on the readable path
    trained_fingerprint = weights_fingerprint(model)  # before rounding: a rerun must match it bit for bit
    _round_to_float16(model)
    started = time.perf_counter()
    facts: dict = {
        "seed": seed,
        "steps_done": history.steps[-1],
        "training_seconds": round(history.train_seconds, 1),
        "training_seconds_with_final_evaluation": round(history.seconds, 1),
        "steps_per_second": round(history.steps[-1] / max(history.train_seconds, 1e-9), 2),
        "trained_weights_sha256": trained_fingerprint,
        "schedule": "by steps" if recipe.time_limit_s is None else "by time",
        "load_average_at_start": load_average,
        "torch_threads": torch.get_num_threads(),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "split_sizes": {name: len(pairs) for name, pairs in splits.items()},
    }
    wrong_examples = {}
    for name in ("val", "test", "long"):
        accuracy, wrong = exact_match(model, splits[name], source_vocab, target_vocab)
        facts[f"{name}_exact_match"] = round(accuracy, 5)
        wrong_examples[name] = [[p.source_text, p.target_text, "".join(output)] for p, output in wrong[:20]]
    facts["evaluation_seconds"] = round(time.perf_counter() - started, 1)
    facts["wrong_examples"] = wrong_examples
    # Attention forms early: keep every snapshot up to snapshot_dense_until, fewer after it, and the last.
    last_step = history.snapshots[-1][0]
    kept = [
        (step, weights)
        for step, weights in history.snapshots
        if step <= recipe.snapshot_dense_until or step % recipe.snapshot_sparse_every == 0 or step == last_step
    ]
    run = TranslatorRun(
        model,
        history,
        facts,
        [step for step, _ in kept],
        torch.stack([weights for _, weights in kept]),  # (n_snapshots, n_layers, 4, n_heads, T, S)
        snapshot_pairs,
    )
    if save:
        save_translator(out_dir, run, recipe)
    return run


def _print_translator_facts(facts: dict, out_dir: Path | None) -> None:
    print(
        f"trained {facts['steps_done']} steps in {facts['training_seconds']} s "
        f"({facts['torch_threads']} threads, load average {facts['load_average_at_start']} at the start)"
    )
    for name in ("val", "test", "long"):
        size = facts["split_sizes"][name]
        print(f"{name:>5} exact match: {100 * facts[f'{name}_exact_match']:.2f}% of {size} sentences")
    if out_dir is not None:
        for path in sorted(out_dir.glob(f"{TRANSLATOR_NAME}*")):
            print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["translator", "gpt"], help="which checkpoint to rebuild")
    parser.add_argument("--out-dir", type=Path, default=None, help="where to write (default: checkpoints/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the recipe's, 2)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="the older clock-based run: a time budget in seconds instead of a step count (not reproducible)",
    )
    parser.add_argument("--no-save", action="store_true", help="train and report, but write nothing (translator)")
    args = parser.parse_args(argv)
    out_dir = args.out_dir if args.out_dir is not None else default_checkpoint_dir()
    if args.what == "translator":
        recipe = TranslatorRecipe() if args.steps is None else TranslatorRecipe(steps=args.steps)
        run = train_translator(out_dir, args.seed, args.time_limit, recipe, save=not args.no_save, threads=args.threads)
        _print_translator_facts(run.facts, None if args.no_save else out_dir)
    else:
        from course_lib.tiny_gpt import TinyGPTRecipe, train_gpt_checkpoint  # written for lesson 11

        recipe = TinyGPTRecipe() if args.steps is None else TinyGPTRecipe(steps=args.steps)
        train_gpt_checkpoint(out_dir, args.seed, args.time_limit, recipe=recipe, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
