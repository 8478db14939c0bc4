"""The tiny GPT of lesson 11: from grammar sentences to tensors, per-token losses, a trigram
baseline, the training recipe and its shipped checkpoint, generation, and pictures.

The corpus itself (the grammar, its sampler and parser, and the entropy floor) is in
``course_lib.data.grammar``.

Built in lesson 11 (train a tiny GPT).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from course_lib._validation import as_float, require_positive_int
from course_lib.data.grammar import (
    ROLES,
    Sentence,
    estimate_entropy_floor,
    make_tokenizer,
    sample_corpus,
)
from course_lib.generation import generate
from course_lib.models import GPT, GPTConfig
from course_lib.multihead import readable_path, use_fast_path
from course_lib.tokenization import BOS_ID, EOS_ID, PAD_ID, WordTokenizer
from course_lib.training import (
    CheckpointError,
    check_checkpoint_keys,
    default_checkpoint_dir,
    language_model_cross_entropy,
    load_checkpoint,
    save_checkpoint,
    weights_fingerprint,
)
from course_lib.viz.dependencies import ROLE_COLOURS, plot_dependencies  # noqa: F401  (lesson 11 calls them from here)

# ----------------------------------------------------------------------------------------
# From sentences to tensors, and per-token losses
# ----------------------------------------------------------------------------------------


def encode_sentences(sentences: Sequence[Sentence], tokenizer: WordTokenizer) -> torch.Tensor:
    """``<bos> words <eos>`` for every sentence, padded with ``<pad>`` (id 0) to the longest.

    Shapes:
        -> ids (N, 2 + max words). A model reads ``ids[:, :-1]`` and predicts ``ids[:, 1:]``.
    """
    if not sentences:
        raise ValueError("encode_sentences: sentences must not be empty")
    width = 2 + max(len(sentence.words) for sentence in sentences)
    ids = torch.full((len(sentences), width), PAD_ID, dtype=torch.long)  # (N, width)
    for row, sentence in enumerate(sentences):
        encoded = [BOS_ID] + [tokenizer.token_to_id[word] for word in sentence.words] + [EOS_ID]
        ids[row, : len(encoded)] = torch.tensor(encoded)
    return ids


def language_model_loss(model, ids: torch.Tensor, tokens_per_sentence: float | None = None) -> torch.Tensor:
    """Cross-entropy (nats per token) of predicting ``ids[:, 1:]`` from ``ids[:, :-1]``, padding
    excluded: every word and the ``<eos>`` of each sentence count once.

    * ``tokens_per_sentence=None``: the mean over this batch's real tokens.
    * ``tokens_per_sentence=m`` (the corpus's mean number of tokens per sentence): the sum over the
      batch's real tokens divided by the fixed count ``B * m``. Then a token weighs the same in every
      batch. With the per-batch mean, a token in a batch of short sentences weighs more than one in a
      batch of long sentences, and when batches group sentences of similar length (``make_batches``)
      that tilts the model towards what short sentences do (lesson 11 measures it on the first word).

    Shapes:
        ids (B, T + 1) -> scalar
    """
    inputs, targets = ids[:, :-1], ids[:, 1:]  # (B, T) each
    logits = model(inputs)  # (B, T, V)
    flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)  # (B*T, V), (B*T,)
    mean_loss = language_model_cross_entropy(flat_logits, flat_targets, ignore_index=PAD_ID)
    if tokens_per_sentence is None:
        return mean_loss
    where, expected = "language_model_loss", "a number > 0 or None"
    tokens_per_sentence = as_float(where, "tokens_per_sentence", tokens_per_sentence, expected, low=0.0, low_open=True)
    n_real_tokens = (targets != PAD_ID).sum()  # scalar
    return mean_loss * n_real_tokens / (ids.shape[0] * tokens_per_sentence)  # the sum over B * m tokens


@torch.no_grad()
def gpt_token_nll(
    model, sentences: Sequence[Sentence], tokenizer: WordTokenizer, batch_size: int = 256
) -> torch.Tensor:
    """The model's loss ``-log q(token | tokens before)`` on every token, sentence after sentence.

    Shapes:
        -> (total tokens,), where total tokens = sum of ``sentence.n_tokens``: the same tokens,
        in the same order, as ``floor_token_nll``.
    """
    was_training = model.training
    model.eval()
    pieces = []
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start : start + batch_size]
        ids = encode_sentences(chunk, tokenizer)  # (b, T + 1)
        logits = model(ids[:, :-1])  # (b, T, V)
        log_q = torch.log_softmax(logits.double(), dim=-1)  # (b, T, V)
        nll = -log_q.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (b, T)
        for row, sentence in enumerate(chunk):
            pieces.append(nll[row, : sentence.n_tokens])  # (n_tokens,)
    model.train(was_training)
    return torch.cat(pieces)  # (total tokens,)


def floor_token_nll(sentences: Sequence[Sentence]) -> torch.Tensor:
    """The grammar's own ``-log p(token | tokens before)`` on every token: the floor, token by token.

    Shapes:
        -> (total tokens,)
    """
    return -torch.tensor([lp for sentence in sentences for lp in sentence.log_probs], dtype=torch.float64)


def token_roles(sentences: Sequence[Sentence]) -> list[str]:
    """The role of every token (one of ``ROLES`` or ""), aligned with the per-token losses."""
    return [role for sentence in sentences for role in sentence.roles]


def loss_by_role(token_nll: torch.Tensor, roles: Sequence[str]) -> dict[str, float]:
    """Mean loss over all tokens ("all") and over the tokens of each role in ``ROLES``.

    Shapes:
        token_nll (N,), roles: N strings
    """
    if token_nll.dim() != 1 or token_nll.shape[0] != len(roles):
        raise ValueError(
            f"loss_by_role: token_nll must be (N,) with N={len(roles)} like roles, got {tuple(token_nll.shape)}"
        )
    result = {"all": float(token_nll.mean())}
    for role in ROLES:
        chosen = torch.tensor([r == role for r in roles])  # (N,)
        result[role] = float(token_nll[chosen].mean()) if bool(chosen.any()) else float("nan")
    return result


# ----------------------------------------------------------------------------------------
# The baseline: a count-based trigram model
# ----------------------------------------------------------------------------------------


class TrigramModel:
    """Predict each token from the two tokens before it, by counting (with add-k smoothing).

    ``q(w | u, v) = (count(u, v, w) + k) / (count(u, v) + k * V)``, where the context of the
    first word is ``(<pad>, <bos>)``. It sees only two tokens back, so it cannot know the number
    of a subject six words ago, which bracket is open, or whether the sentence began with "if".

    Built in lesson 11 (train a tiny GPT).
    """

    def __init__(self, tokenizer: WordTokenizer, k: float = 0.01):
        if k <= 0:
            raise ValueError(f"TrigramModel: k must be > 0, got {k}")
        self.tokenizer = tokenizer
        self.k = k
        self.counts: Counter = Counter()  # (u, v, w) -> count
        self.context_counts: Counter = Counter()  # (u, v) -> count

    def _trigrams(self, sentence: Sentence):
        ids = [PAD_ID, BOS_ID] + [self.tokenizer.token_to_id[w] for w in sentence.words] + [EOS_ID]
        return zip(ids, ids[1:], ids[2:], strict=False)

    def fit(self, sentences: Sequence[Sentence]) -> TrigramModel:
        for sentence in sentences:
            for u, v, w in self._trigrams(sentence):
                self.counts[(u, v, w)] += 1
                self.context_counts[(u, v)] += 1
        return self

    def token_nll(self, sentences: Sequence[Sentence]) -> torch.Tensor:
        """``-log q(token | two tokens before)`` on every token, aligned with ``floor_token_nll``.

        Shapes:
            -> (total tokens,)
        """
        V = self.tokenizer.vocab_size
        values = [
            -math.log((self.counts[(u, v, w)] + self.k) / (self.context_counts[(u, v)] + self.k * V))
            for sentence in sentences
            for u, v, w in self._trigrams(sentence)
        ]
        return torch.tensor(values, dtype=torch.float64)


# ----------------------------------------------------------------------------------------
# The tiny GPT: recipe, batches, training, checkpoint
# ----------------------------------------------------------------------------------------

CHECKPOINT_DIR = default_checkpoint_dir()
"""The course folder's ``checkpoints/`` (or, after ``pip install .``, the copy shipped in the package)."""
CHECKPOINT_NAME = "tiny_gpt"
REBUILD_TINY_GPT = "python -m course_lib.train gpt"
SNAPSHOT_PREFIX = "snapshot."
EXAMPLE_SENTENCE = (
    "if the dog that the cats chase sleeps ( the girls that sing near the river laugh ) , then the child runs ."
)
"""A sentence with all three dependencies; the attention snapshots are taken on it."""


@dataclass(frozen=True)
class TinyGPTRecipe:
    """Everything that decides the shipped checkpoint (model size, data, optimisation).

    ``steps`` is the number of training steps (the cosine schedule ends at the last one): 3,000
    steps of 32 sentences train in about 150 s on two cores. With ``threads`` torch threads, a
    seeded corpus, batch order and model, a rerun gives the same weights bit for bit on the same
    machine (the shipped checkpoint is such a run). ``fast_path`` trains on the fused kernels
    (``use_fast_path``; the attention snapshots use the readable path) and ``fused_adamw`` updates
    all parameters in one kernel: the same training, faster. ``same_weight_per_token`` divides each
    batch's summed loss by ``batch_size`` times the corpus's mean tokens per sentence instead of by
    the batch's own token count, so short-sentence batches do not weigh more (``language_model_loss``):
    0.0044 instead of 0.0099 nats/token above the floor, with the same steps.
    """

    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    context_length: int = 128  # the longest possible sentence is 112 words + <bos>
    batch_size: int = 32  # 20% more sentences per second than 16 on two cores, still many updates; 64 learned less
    peak_lr: float = 2.5e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0  # the cosine decays all the way to 0: less noise in the final weights
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    n_train_sentences: int = 150_000
    n_heldout_sentences: int = 20_000
    n_floor_sentences: int = 200_000
    eval_every: int = 500
    n_eval_sentences: int = 300
    snapshot_every: int = 250
    heldout_seed_offset: int = 1_000_003
    floor_seed_offset: int = 2_000_003
    steps: int = 3000
    threads: int = 2
    fast_path: bool = True
    fused_adamw: bool = True
    same_weight_per_token: bool = True  # the loss divides by a fixed token count, not the batch's (language_model_loss)

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(
            vocab_size=vocab_size,
            context_length=self.context_length,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
        )


def make_batches(
    sentences: Sequence[Sentence], tokenizer: WordTokenizer, batch_size: int, seed: int = 0
) -> list[torch.Tensor]:
    """Cut the corpus into batches of sentences of similar length (little padding), in a seeded random order.

    Groups of ``16 * batch_size`` consecutive sentences are sorted by length and cut into
    batches, then all batches are shuffled.

    Shapes:
        -> list of ids (batch_size, T + 1), T varying from batch to batch
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"make_batches: batch_size must be a positive int, got {batch_size!r}")
    group = 16 * batch_size
    batches = []
    for start in range(0, len(sentences), group):
        by_length = sorted(sentences[start : start + group], key=lambda sentence: len(sentence.words))
        for first in range(0, len(by_length), batch_size):
            batches.append(encode_sentences(by_length[first : first + batch_size], tokenizer))
    random.Random(seed).shuffle(batches)
    return batches


@torch.no_grad()
def attention_maps(model, ids: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on one sequence and stack every block's attention weights.

    Shapes:
        ids (1, T) -> (n_layers, n_heads, T, T)
    """
    was_training = model.training
    model.eval()
    model(ids)
    maps = torch.stack([block.self_attn.attention_weights[0] for block in model.blocks])  # (n_layers, n_heads, T, T)
    model.train(was_training)
    return maps.float()


def example_ids(tokenizer: WordTokenizer, sentence: str = EXAMPLE_SENTENCE) -> torch.Tensor:
    """``<bos>`` plus the words of ``sentence`` (no ``<eos>``), as the model reads them.

    Shapes:
        -> (1, T)
    """
    return torch.tensor([[BOS_ID] + [tokenizer.token_to_id[word] for word in sentence.split()]])  # (1, T)


def _time_step_and_eval(
    recipe: TinyGPTRecipe, vocab_size: int, batches: list[torch.Tensor], evaluate
) -> tuple[float, float]:
    """Time a few optimisation steps and one evaluation of a throwaway model: (seconds per step,
    seconds per evaluation), to fit the number of steps into a time budget."""
    model = use_fast_path(GPT(recipe.gpt_config(vocab_size)), recipe.fast_path)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.peak_lr, fused=True if recipe.fused_adamw else None)

    def step(batch: torch.Tensor) -> None:
        loss = language_model_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for batch in batches[:10]:  # the first steps pay one-off set-up costs
        step(batch)
    durations = []
    for batch in batches[10:50]:
        start = time.perf_counter()
        step(batch)
        durations.append(time.perf_counter() - start)
    seconds_per_step = sum(durations) / len(durations)
    start = time.perf_counter()
    evaluate(model)
    return seconds_per_step, time.perf_counter() - start


def _paired_summary(
    model_nll: torch.Tensor, floor_nll: torch.Tensor, sentences: Sequence[Sentence]
) -> dict[str, float]:
    """Held-out loss and its excess over the floor, with standard errors over sentences (ratio estimators)."""
    lengths = torch.tensor([s.n_tokens for s in sentences], dtype=torch.float64)  # (n,)
    sentence_index = torch.repeat_interleave(torch.arange(len(sentences)), lengths.long())  # (N,)
    n = len(sentences)

    def ratio_and_se(per_token: torch.Tensor) -> tuple[float, float]:
        per_sentence = torch.zeros(n, dtype=torch.float64).index_add_(0, sentence_index, per_token.double())  # (n,)
        ratio = float(per_sentence.sum() / lengths.sum())
        residual = per_sentence - ratio * lengths  # (n,)
        return ratio, float(residual.std() / (lengths.mean() * math.sqrt(n)))

    loss, loss_se = ratio_and_se(model_nll)
    floor, floor_se = ratio_and_se(floor_nll)
    excess, excess_se = ratio_and_se(model_nll - floor_nll)
    return {
        "loss": loss,
        "loss_se": loss_se,
        "floor_on_these_sentences": floor,
        "floor_on_these_sentences_se": floor_se,
        "excess_over_floor": excess,
        "excess_over_floor_se": excess_se,
        "n_sentences": n,
        "n_tokens": int(lengths.sum()),
    }


def train_gpt_checkpoint(
    out_dir=CHECKPOINT_DIR,
    seed: int = 0,
    time_limit_s: float | None = None,
    progress: bool = False,
    recipe: TinyGPTRecipe | None = None,
    threads: int | None = None,
) -> dict:
    """Train the tiny GPT of lesson 11 from scratch, measure it, and save the checkpoint.

    1. Estimate the entropy floor (``estimate_entropy_floor``).
    2. Sample the training corpus and cut it into batches.
    3. Train with ``course_lib.training.train`` for ``recipe.steps`` steps, with ``recipe.threads``
       torch threads (or ``threads``): the same seed and thread count on the same machine give the
       same weights, bit for bit; the time it takes is measured and recorded. With a time budget
       ``time_limit_s`` instead, a short timing run fits the number of steps to it (as the shipped
       run did), so the result depends on the machine's speed.
    4. Measure the held-out loss on fresh sentences, the trigram baseline on the same sentences,
       and both per role (agreeing verb, closing bracket, then / or).
    5. Write ``tiny_gpt.safetensors`` (weights and attention snapshots) and ``tiny_gpt.json``
       (recipe, measurements, training history) into ``out_dir``; print the numbers.

    ``recipe`` defaults to ``TinyGPTRecipe()``, the recipe of the shipped checkpoint. Returns the
    dictionary written to ``tiny_gpt.json``.

    Built in lesson 11 (train a tiny GPT).
    """
    from course_lib.training import reproducible, train

    if time_limit_s is not None and not time_limit_s > 0:
        raise ValueError(f"train_gpt_checkpoint: time_limit_s must be > 0 or None, got {time_limit_s}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = TinyGPTRecipe() if recipe is None else recipe
    threads = require_positive_int("train_gpt_checkpoint", "threads", recipe.threads if threads is None else threads)
    settings = ExitStack()  # undone at the end
    settings.enter_context(reproducible(threads))  # a fixed thread count and deterministic kernels
    tokenizer = make_tokenizer()

    t0 = time.perf_counter()
    floor = estimate_entropy_floor(recipe.n_floor_sentences, seed=seed + recipe.floor_seed_offset)
    print(
        f"entropy floor: {floor.nats_per_token:.4f} ± {floor.standard_error:.4f} nats/token "
        f"(Monte Carlo over {floor.n_sentences} sentences, {time.perf_counter() - t0:.1f} s)"
    )
    t0 = time.perf_counter()
    train_sentences = sample_corpus(recipe.n_train_sentences, seed=seed)
    heldout = sample_corpus(recipe.n_heldout_sentences, seed=seed + recipe.heldout_seed_offset)
    batches = make_batches(train_sentences, tokenizer, recipe.batch_size, seed=seed)
    tokens_per_sentence = sum(sentence.n_tokens for sentence in train_sentences) / len(train_sentences)
    eval_sentences = heldout[: recipe.n_eval_sentences]
    eval_floor = float(floor_token_nll(eval_sentences).mean())
    print(
        f"data: {len(train_sentences)} training sentences, {len(heldout)} held-out ({time.perf_counter() - t0:.1f} s)"
    )

    def evaluate(model) -> dict[str, float]:
        return {"heldout_loss": float(gpt_token_nll(model, eval_sentences, tokenizer).mean()), "floor": eval_floor}

    steps, calibration_seconds = recipe.steps, 0.0
    if time_limit_s is not None:  # the older, clock-based run: fit the number of steps to the budget
        wall_start = time.perf_counter()
        seconds_per_step, seconds_per_eval = _time_step_and_eval(recipe, tokenizer.vocab_size, batches, evaluate)
        calibration_seconds = time.perf_counter() - wall_start
        budget = max(time_limit_s - calibration_seconds, 0.001)  # a slow machine may spend it all on timing
        cost_per_step = seconds_per_step + seconds_per_eval / recipe.eval_every  # evaluations included
        steps = max(1, int(0.97 * (budget - seconds_per_eval) / cost_per_step))
        print(f"timing: {seconds_per_step * 1000:.0f} ms per step -> {steps} steps planned for {time_limit_s:.0f} s")

    torch.manual_seed(seed)
    model = use_fast_path(GPT(recipe.gpt_config(tokenizer.vocab_size)), recipe.fast_path)
    snapshot_ids = example_ids(tokenizer)

    def snapshot(model):
        with readable_path(model):  # the readable path keeps the attention weights
            return attention_maps(model, snapshot_ids)

    def training_loss(model, batch: torch.Tensor) -> torch.Tensor:
        """Every token weighs the same in every batch (or, without ``same_weight_per_token``, the batch mean)."""
        return language_model_loss(model, batch, tokens_per_sentence if recipe.same_weight_per_token else None)

    history = train(
        model,
        lambda step: batches[step % len(batches)],
        training_loss,
        steps=steps,
        peak_lr=recipe.peak_lr,
        warmup_steps=recipe.warmup_steps,
        weight_decay=recipe.weight_decay,
        grad_clip=recipe.grad_clip,
        eval_every=recipe.eval_every,
        evaluate=evaluate,
        snapshot_every=recipe.snapshot_every,
        snapshot=snapshot,
        seed=seed,
        progress=progress,
        log_every=10,
        min_lr_ratio=recipe.min_lr_ratio,
        fused_adamw=recipe.fused_adamw,
    )
    training_seconds = calibration_seconds + history.seconds
    steps_done = history.steps[-1]
    print(
        f"training: {steps_done} steps of {recipe.batch_size} sentences in {training_seconds:.1f} s "
        f"({calibration_seconds:.1f} s timing run + {history.seconds:.1f} s training loop, {threads} threads, "
        f"{steps_done / max(history.train_seconds, 1e-9):.1f} steps/s)"
    )

    t0 = time.perf_counter()
    gpt_nll = gpt_token_nll(model, heldout, tokenizer)
    floor_nll = floor_token_nll(heldout)
    trigram = TrigramModel(tokenizer).fit(train_sentences)
    trigram_nll = trigram.token_nll(heldout)
    roles = token_roles(heldout)
    summary = _paired_summary(gpt_nll, floor_nll, heldout)
    by_role = {
        "gpt": loss_by_role(gpt_nll, roles),
        "trigram": loss_by_role(trigram_nll, roles),
        "floor": loss_by_role(floor_nll, roles),
        "count": {role: sum(r == role for r in roles) for role in ROLES},
    }
    print(
        f"held-out loss: {summary['loss']:.4f} ± {summary['loss_se']:.4f} nats/token on {summary['n_tokens']} tokens "
        f"({len(heldout)} fresh sentences); floor {floor.nats_per_token:.4f} ± {floor.standard_error:.4f}"
    )
    print(
        f"excess over the floor, measured on the same sentences: {summary['excess_over_floor']:.4f} "
        f"± {summary['excess_over_floor_se']:.4f} nats/token (target: at most 0.007)"
    )
    print(f"trigram held-out loss: {by_role['trigram']['all']:.4f} nats/token")
    for role in ROLES:
        print(
            f"  {role:16s} floor {by_role['floor'][role]:.4f}  GPT {by_role['gpt'][role]:.4f}  "
            f"trigram {by_role['trigram'][role]:.4f}  ({by_role['count'][role]} tokens)"
        )
    print(f"(measurement {time.perf_counter() - t0:.1f} s)")

    weights = {name: tensor.detach().float().contiguous() for name, tensor in model.state_dict().items()}
    if model.config.tie_weights:
        weights.pop("lm_head.weight")  # the same tensor as token_embedding.weight
    for step, maps in history.snapshots:
        weights[f"{SNAPSHOT_PREFIX}{step:06d}"] = maps.half().contiguous()  # float16: plenty for a picture
    weights_path = out_dir / f"{CHECKPOINT_NAME}.safetensors"
    info = {
        "recipe": asdict(recipe),
        "gpt_config": asdict(model.config),
        "vocabulary": tokenizer.id_to_token,
        "seed": seed,
        "time_limit_s": time_limit_s,
        "torch_threads": torch.get_num_threads(),
        "training_seconds": training_seconds,
        "training_loop_seconds": history.seconds,
        "steps_per_second": steps_done / max(history.train_seconds, 1e-9),
        "schedule": "by steps" if time_limit_s is None else "by time",
        "steps": steps_done,
        "steps_planned": steps,
        "tokens_per_sentence": tokens_per_sentence,
        "trained_weights_sha256": weights_fingerprint(model),  # the weights alone, bit for bit
        "floor": asdict(floor),
        "heldout": summary,
        "by_role": by_role,
        "trigram_k": trigram.k,
        "snapshot_sentence": EXAMPLE_SENTENCE,
        "snapshot_steps": [step for step, _ in history.snapshots],
        "history": history.to_dict(),
    }
    info = save_checkpoint(out_dir, CHECKPOINT_NAME, weights, info)  # also records the weights' SHA-256
    size_mb = weights_path.stat().st_size / 1e6
    print(f"saved {weights_path} ({size_mb:.2f} MB) and {CHECKPOINT_NAME}.json")
    settings.close()  # the previous thread count and algorithms again
    return info


def load_tiny_gpt(directory=CHECKPOINT_DIR) -> tuple[GPT, WordTokenizer, dict]:
    """Load the checkpoint written by ``train_gpt_checkpoint``: ``(model, tokenizer, info)``.

    ``model`` is in eval mode; ``info`` is the content of ``tiny_gpt.json`` plus
    ``info["snapshots"]``, a list of ``(step, attention maps (n_layers, n_heads, T, T))``.

    A missing, damaged (SHA-256 differs from the JSON's), unreadable or mismatched file raises a
    ``CheckpointError`` (a ``ValueError``; ``CheckpointNotFoundError`` for a missing file) that
    names the file and says how to rebuild it.
    """
    where = "load_tiny_gpt"
    directory = Path(directory)
    tensors, info = load_checkpoint(where, directory, CHECKPOINT_NAME, REBUILD_TINY_GPT, ("gpt_config", "vocabulary"))
    json_path = directory / f"{CHECKPOINT_NAME}.json"
    try:
        config = GPTConfig(**info["gpt_config"])
        tokenizer = WordTokenizer(info["vocabulary"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{where}: {json_path} holds an invalid gpt_config or vocabulary ({error}); "
            f"rebuild it with `{REBUILD_TINY_GPT}`"
        ) from None
    model = GPT(config)
    weights = {name: t for name, t in tensors.items() if not name.startswith(SNAPSHOT_PREFIX)}
    tied = ("lm_head.weight",) if config.tie_weights else ()
    weights_path = directory / f"{CHECKPOINT_NAME}.safetensors"
    check_checkpoint_keys(where, weights_path, REBUILD_TINY_GPT, model, weights, tied)
    if config.tie_weights:
        weights["lm_head.weight"] = weights["token_embedding.weight"]
    model.load_state_dict(weights, strict=True)
    model.eval()
    info["snapshots"] = sorted(
        (int(name[len(SNAPSHOT_PREFIX) :]), tensor.float())
        for name, tensor in tensors.items()
        if name.startswith(SNAPSHOT_PREFIX)
    )
    return model, tokenizer, info


@torch.no_grad()
def generate_sentences(
    model,
    tokenizer: WordTokenizer,
    n_sentences: int,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> list[str]:
    """Let the model write ``n_sentences`` sentences from ``<bos>`` until ``<eos>``; words joined by spaces.

    Pass a seeded ``torch.Generator`` for the same sentences every time.
    """
    if isinstance(n_sentences, bool) or not isinstance(n_sentences, int) or n_sentences <= 0:
        raise ValueError(f"generate_sentences: n_sentences must be a positive int, got {n_sentences!r}")
    prompt = torch.full((n_sentences, 1), BOS_ID, dtype=torch.long)  # (n, 1)
    max_new = model.config.context_length - 1
    ids = generate(model, prompt, max_new, temperature=temperature, generator=generator, eos_id=EOS_ID)  # (n, <= T)
    texts = []
    for row in ids[:, 1:].tolist():
        words = []
        for token_id in row:
            if token_id == EOS_ID:
                break
            words.append(tokenizer.id_to_token[token_id])
        texts.append(" ".join(words))
    return texts


# ----------------------------------------------------------------------------------------
# Where the heads look, per dependency (the picture of the dependencies is in course_lib.viz)
# ----------------------------------------------------------------------------------------


def link_attention(maps: torch.Tensor, sentence: Sentence, role: str) -> torch.Tensor:
    """How much each head looks at the word a dependent word depends on, just before predicting it.

    To predict word ``j`` the model's query sits at input position ``j`` (input = ``<bos>`` +
    words, so word ``j - 1`` is there); the word it depends on, word ``i``, is key ``i + 1``.
    Returns the attention weight on that key, averaged over the sentence's links of ``role``.

    Shapes:
        maps (n_layers, n_heads, T, T) -> (n_layers, n_heads)
    """
    links = [(i, j) for link_role, i, j in sentence.links if link_role == role]
    if not links:
        raise ValueError(f"link_attention: the sentence has no {role!r} link; its links are {sentence.links}")
    return torch.stack([maps[:, :, j, i + 1] for i, j in links]).mean(dim=0)  # (n_layers, n_heads)
