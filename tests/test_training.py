"""Tests for course_lib.training: the schedule, label smoothing, clipping, determinism, learning."""

import json
import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.training import History, label_smoothed_cross_entropy, lr_at, train

# ---------------------------------------------------------------- schedule


def test_warmup_is_linear_and_reaches_peak_at_warmup_steps():
    peak, warmup = 2e-3, 10
    rates = [lr_at(s, peak_lr=peak, warmup_steps=warmup, total_steps=100) for s in range(warmup + 1)]
    differences = [b - a for a, b in zip(rates, rates[1:], strict=False)]
    assert all(d > 0 for d in differences)
    assert max(differences) - min(differences) < 1e-12  # equal increments: a straight line
    assert rates[warmup] == pytest.approx(peak)
    assert rates[0] < peak / 5


@pytest.mark.parametrize("schedule", ["cosine", "inverse_sqrt"])
def test_peak_is_the_maximum(schedule):
    rates = [lr_at(s, peak_lr=1e-3, warmup_steps=20, total_steps=200, schedule=schedule) for s in range(200)]
    assert max(rates) == pytest.approx(1e-3)
    assert rates.index(max(rates)) == 20


def test_cosine_decays_to_the_floor_along_half_a_cosine():
    peak, warmup, total, ratio = 1.0, 10, 110, 0.1
    at = lambda s: lr_at(s, peak_lr=peak, warmup_steps=warmup, total_steps=total, min_lr_ratio=ratio)  # noqa: E731
    middle = warmup + (total - warmup) // 2
    assert at(middle) == pytest.approx(ratio + (1 - ratio) * 0.5)  # halfway: halfway between peak and floor
    assert at(total) == pytest.approx(ratio)
    assert at(total + 50) == pytest.approx(ratio)
    decay = [at(s) for s in range(warmup, total + 1)]
    assert all(b <= a for a, b in zip(decay, decay[1:], strict=False))


def test_inverse_sqrt_follows_one_over_root_step():
    warmup = 16
    at = lambda s: lr_at(s, peak_lr=1.0, warmup_steps=warmup, total_steps=1000, schedule="inverse_sqrt")  # noqa: E731
    assert at(4 * warmup) == pytest.approx(0.5)
    assert at(64 * warmup) == pytest.approx(1 / 8)


def test_lr_at_rejects_bad_arguments():
    with pytest.raises(ValueError, match="lr_at"):
        lr_at(0, peak_lr=1e-3, warmup_steps=10, total_steps=100, schedule="linear")
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, peak_lr=1e-3, warmup_steps=10, total_steps=100)


# ---------------------------------------------------------------- label smoothing


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_equals_pytorch(smoothing):
    logits = torch.randn(12, 7)
    targets = torch.randint(0, 7, (12,))
    targets[[2, 5]] = -100
    ours = label_smoothed_cross_entropy(logits, targets, smoothing=smoothing)
    theirs = F.cross_entropy(logits, targets, ignore_index=-100, label_smoothing=smoothing)
    assert torch.allclose(ours, theirs, atol=1e-12)


def test_label_smoothing_with_a_pad_id_as_ignore_index():
    logits = torch.randn(9, 5)
    targets = torch.tensor([0, 1, 2, 3, 4, 0, 0, 1, 2])
    ours = label_smoothed_cross_entropy(logits, targets, smoothing=0.1, ignore_index=0)
    theirs = F.cross_entropy(logits, targets, ignore_index=0, label_smoothing=0.1)
    assert torch.allclose(ours, theirs, atol=1e-12)


def test_label_smoothing_checks_shapes():
    with pytest.raises(ValueError, match=r"label_smoothed_cross_entropy: logits must be \(N, V\)"):
        label_smoothed_cross_entropy(torch.randn(2, 3, 5), torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        label_smoothed_cross_entropy(torch.randn(6, 5), torch.zeros(4, dtype=torch.long))


# ---------------------------------------------------------------- the loop


def regression_task(seed: int = 1):
    """A tiny linear regression: a model, a batch function and a loss function."""
    generator = torch.Generator().manual_seed(seed)
    true_weight = torch.randn(4, 1, generator=generator)
    inputs = torch.randn(64, 4, generator=generator)
    outputs = inputs @ true_weight

    def next_batch(step):
        rows = torch.randint(0, 64, (16,))  # drawn from torch's global generator, seeded by train
        return inputs[rows], outputs[rows]

    def loss_fn(model, batch):
        x, y = batch
        return F.mse_loss(model(x), y)

    return next_batch, loss_fn


def test_loss_falls_on_a_tiny_model():
    next_batch, loss_fn = regression_task()
    torch.manual_seed(3)
    model = nn.Linear(4, 1)
    history = train(model, next_batch, loss_fn, steps=200, peak_lr=5e-2, warmup_steps=10, progress=False)
    assert history.train_loss[-1] < 0.01 * history.train_loss[0]
    assert history.steps[-1] == 200
    assert len(history.steps) == len(history.train_loss) == len(history.lr)


def test_same_seed_gives_the_same_losses():
    next_batch, loss_fn = regression_task()
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
        runs.append(train(model, next_batch, loss_fn, steps=30, seed=seed, progress=False, log_every=1).train_loss)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_gradient_clipping_bounds_the_update():
    """The gradient the optimizer sees has norm at most grad_clip, however large the loss."""
    seen_norms = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3))

        def forward(self):
            return (1000.0 * self.weight**2).sum()

    original_step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        gradient = self.param_groups[0]["params"][0].grad
        seen_norms.append(torch.linalg.vector_norm(gradient).item())
        return original_step(self, *args, **kwargs)

    torch.optim.AdamW.step = spy
    try:
        train(Probe(), lambda s: None, lambda m, b: m(), steps=3, grad_clip=0.5, warmup_steps=0, progress=False)
        clipped = list(seen_norms)
        seen_norms.clear()
        train(Probe(), lambda s: None, lambda m, b: m(), steps=1, grad_clip=None, progress=False)
    finally:
        torch.optim.AdamW.step = original_step
    assert all(norm <= 0.5 + 1e-9 for norm in clipped)
    assert seen_norms[0] > 100  # without clipping the same gradient is huge (2000 * sqrt(3))


def test_learning_rate_follows_the_schedule():
    next_batch, loss_fn = regression_task()
    history = train(
        nn.Linear(4, 1), next_batch, loss_fn, steps=50, peak_lr=1e-2, warmup_steps=5, progress=False, log_every=1
    )
    expected = [lr_at(s - 1, peak_lr=1e-2, warmup_steps=5, total_steps=50) for s in history.steps]
    assert history.lr == pytest.approx(expected)


def test_evaluate_and_snapshot_run_in_eval_mode_without_gradients():
    next_batch, loss_fn = regression_task()
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 1))
    modes = []

    def evaluate(m):
        modes.append((m.training, torch.is_grad_enabled()))
        return {"score": 1.0}

    def snapshot(m):
        modes.append((m.training, torch.is_grad_enabled()))
        return m[0].weight.clone()

    training_modes = []

    def loss_in_train_mode(m, batch):
        training_modes.append(m.training)
        return loss_fn(m, batch)

    history = train(
        model,
        next_batch,
        loss_in_train_mode,
        steps=20,
        eval_every=5,
        evaluate=evaluate,
        snapshot_every=10,
        snapshot=snapshot,
        progress=False,
    )
    assert all(training_modes)
    assert all(mode == (False, False) for mode in modes)
    assert history.eval_steps == [5, 10, 15, 20]
    assert [step for step, _ in history.snapshots] == [0, 10, 20]
    assert not torch.equal(history.snapshots[0][1], history.snapshots[-1][1])  # the weights moved
    assert history.metric("score") == [1.0] * 4


def test_time_limit_stops_early():
    next_batch, loss_fn = regression_task()
    history = train(nn.Linear(4, 1), next_batch, loss_fn, steps=10**7, time_limit_s=0.2, progress=False)
    assert history.steps[-1] < 10**7
    assert history.seconds < 5
    assert math.isfinite(history.train_loss[-1])


def test_history_round_trips_through_a_dict():
    history = History(steps=[1, 2], train_loss=[2.0, 1.0], lr=[0.1, 0.2], eval_steps=[2], eval_metrics=[{"a": 1.0}])
    assert History.from_dict(history.to_dict()) == history


def test_train_rejects_bad_arguments():
    with pytest.raises(ValueError, match="train: steps"):
        train(nn.Linear(1, 1), lambda s: None, lambda m, b: None, steps=0)
    with pytest.raises(ValueError, match="evaluate"):
        train(nn.Linear(1, 1), lambda s: None, lambda m, b: None, steps=1, eval_every=5)


# ---------------------------------------------------------------- the translator recipe and its checkpoint


def test_translator_checkpoint_round_trip(tmp_path):
    from course_lib.data.translation import chinese_vocabulary, encode_pairs, english_vocabulary, make_splits
    from course_lib.train import TranslatorRecipe, load_translator, load_translator_snapshots, train_translator

    recipe = TranslatorRecipe(
        d_model=16, n_heads=2, n_layers=1, d_ff=32, batch_size=8, steps=4, warmup_steps=2,
        n_train=40, n_val=10, n_test=10, n_long=4, eval_every=2, eval_size=5, snapshot_every=2,
    )  # fmt: skip
    run = train_translator(tmp_path, recipe=recipe, progress=False)
    model, info = load_translator(tmp_path)
    pairs = make_splits(0, 1, 10, 10, 4)["test"]
    source, target = encode_pairs(pairs, english_vocabulary(), chinese_vocabulary())
    with torch.no_grad():
        expected = run.model(source, target[:, :-1])
        loaded = model(source, target[:, :-1])
    assert torch.allclose(expected, loaded, atol=1e-6)  # the weights were rounded to float16 before measuring
    assert info["facts"]["test_exact_match"] == run.facts["test_exact_match"]
    assert info["history"]["eval_steps"] == [2, 4]
    steps, snapshots = load_translator_snapshots(tmp_path)
    assert steps == [0, 2, 4]
    assert snapshots.shape[:4] == (3, 1, 4, 2)  # (n_snapshots, n_layers, n_sentences, n_heads, T, S)
    assert torch.allclose(snapshots.sum(dim=-1)[..., 0].double(), torch.ones(3, 1, 4, 2), atol=1e-2)  # rows sum to 1


def test_translator_recipe_rebuilds_bit_identical_weights(tmp_path):
    """Two step-based runs of the same recipe, seed and thread count write the same bytes."""
    torch.set_default_dtype(torch.float32)  # as the recipe trains (the float64 of the other tests hides the issue)
    from course_lib.train import TranslatorRecipe, train_translator

    # Large enough (d_model 64, batches of 64) that two threads share the embedding gradient's work:
    # without deterministic kernels its sums come out in a different order from run to run.
    recipe = TranslatorRecipe(
        d_model=64, n_heads=2, n_layers=1, d_ff=64, batch_size=64, steps=5, warmup_steps=2,
        n_train=300, n_val=10, n_test=10, n_long=4, eval_every=2, eval_size=5, snapshot_every=2,
    )  # fmt: skip
    assert recipe.time_limit_s is None and recipe.fast_path  # step-based, trained on the fused kernels
    runs = [train_translator(tmp_path / name, recipe=recipe, progress=False) for name in ("a", "b")]
    trained = [run.facts["trained_weights_sha256"] for run in runs]  # float32, before rounding to float16
    assert trained[0] == trained[1]
    for key, tensor in runs[0].model.state_dict().items():
        assert torch.equal(tensor, runs[1].model.state_dict()[key]), key
    infos = [json.loads((tmp_path / name / "translator.json").read_text()) for name in ("a", "b")]
    assert infos[0]["weights_sha256"] == infos[1]["weights_sha256"]
    assert infos[0]["translator_snapshots.safetensors_sha256"] == infos[1]["translator_snapshots.safetensors_sha256"]
    assert infos[0]["facts"]["steps_done"] == 5 and infos[0]["facts"]["schedule"] == "by steps"
    assert infos[0]["facts"]["torch_threads"] == recipe.threads


def test_the_shipped_translator_is_the_default_recipe_by_steps():
    """The shipped checkpoint was made by today's default recipe, counted in steps, so
    ``python -m course_lib.train translator`` rebuilds it; an older clock-based recipe still loads."""
    from course_lib.train import TranslatorRecipe, default_checkpoint_dir

    path = default_checkpoint_dir() / "translator.json"
    if not path.exists():
        pytest.skip("no shipped translator checkpoint")
    info = json.loads(path.read_text())
    assert TranslatorRecipe(**info["recipe"]) == TranslatorRecipe()
    assert info["facts"]["schedule"] == "by steps"
    assert info["facts"]["steps_done"] == TranslatorRecipe().steps
    assert info["facts"]["torch_threads"] == TranslatorRecipe().threads
    older = dict(info["recipe"], steps=3000, time_limit_s=180.0)  # what the first shipped run's JSON said
    assert TranslatorRecipe(**older).time_limit_s == 180.0


def test_shipped_translator_checkpoint():
    """The checkpoint in the repository: small, loadable with today's vocabularies, and as good as it says."""
    from course_lib.data.translation import chinese_vocabulary, english_vocabulary, make_splits
    from course_lib.train import default_checkpoint_dir, exact_match, load_translator

    directory = default_checkpoint_dir()
    if not (directory / "translator.json").exists():
        pytest.skip("no shipped translator checkpoint")
    for path in directory.glob("translator*.safetensors"):
        assert path.stat().st_size <= 5_000_000, path
    model, info = load_translator(directory)
    assert info["facts"]["test_exact_match"] >= 0.99
    test = make_splits(info["facts"]["seed"], 1, info["recipe"]["n_val"], info["recipe"]["n_test"], 0)["test"][:200]
    accuracy, _ = exact_match(model.float(), test, english_vocabulary(), chinese_vocabulary())
    assert accuracy >= 0.97


def test_schedule_by_time_finishes_the_decay_when_time_runs_out():
    next_batch, loss_fn = regression_task()

    def slow_loss(model, batch):
        time.sleep(0.01)
        return loss_fn(model, batch)

    history = train(
        nn.Linear(4, 1), next_batch, slow_loss, steps=10**6, peak_lr=1.0, warmup_steps=2, time_limit_s=0.5,
        schedule_by_time=True, progress=False, log_every=1,
    )  # fmt: skip
    assert history.steps[-1] < 1000  # stopped by the clock, far from 10**6 steps
    assert max(history.lr) > 0.5  # the warm-up and the peak happened
    assert history.lr[-1] < 0.15  # and the cosine decayed to near its floor (0.1) in time
