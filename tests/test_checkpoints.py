"""The shipped checkpoints: verified on load, clear errors when damaged, and shipped in the wheel.

Both loaders (``load_translator`` for lesson 10, ``load_tiny_gpt`` for lesson 11) go through one
helper, ``course_lib.training.load_checkpoint``, so every damage below fails the same way for
both: a ``CheckpointError`` (a ValueError) that names the file and the command that rebuilds it.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from course_lib import tiny_gpt, train, training
from course_lib.training import CheckpointError, CheckpointNotFoundError, file_sha256

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "checkpoints"

LOADERS = {
    "translator": (lambda directory: train.load_translator(directory), "python -m course_lib.train translator"),
    "tiny_gpt": (lambda directory: tiny_gpt.load_tiny_gpt(directory), "python -m course_lib.train gpt"),
}


@pytest.fixture
def copied(tmp_path):
    """A copy of the shipped checkpoints to damage."""
    for path in SHIPPED.glob("*"):
        if path.suffix in (".json", ".safetensors"):
            shutil.copy(path, tmp_path / path.name)
    return tmp_path


def weights_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.safetensors"


def rewrite_weights(directory: Path, name: str, change) -> None:
    """Change the tensors with ``change(tensors)`` and record the new file's SHA-256, as a rebuild would:
    only the content is wrong, the hash is right."""
    path = weights_path(directory, name)
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))
    json_path = directory / f"{name}.json"
    info = json.loads(json_path.read_text(encoding="utf-8"))
    info["weights_sha256"] = file_sha256(path)
    json_path.write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")


def edit_json(directory: Path, name: str, change) -> None:
    json_path = directory / f"{name}.json"
    info = json.loads(json_path.read_text(encoding="utf-8"))
    change(info)
    json_path.write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")


def first_weight(tensors) -> str:
    return sorted(name for name in tensors if not name.startswith("snapshot."))[0]


def flip_a_data_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    header_length = struct.unpack("<Q", data[:8])[0]
    data[8 + header_length + 1000] ^= 0x10  # a byte of tensor data; the header stays readable
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": (lambda d, n: weights_path(d, n).write_bytes(weights_path(d, n).read_bytes()[:5000]),
                  r"cannot be read as safetensors \(empty, truncated or another format"),
    "empty": (lambda d, n: weights_path(d, n).write_bytes(b""), r"cannot be read as safetensors"),
    "garbage": (lambda d, n: weights_path(d, n).write_bytes(b"not a checkpoint at all" * 50),
                r"cannot be read as safetensors"),
    "one flipped byte": (lambda d, n: flip_a_data_byte(weights_path(d, n)),
                         r"is damaged or was replaced: its SHA-256 is [0-9a-f]{16}\.\.\., but its JSON records"),
    "NaN weights": (lambda d, n: rewrite_weights(d, n, lambda t: t[first_weight(t)].view(-1)[0].fill_(float("nan"))),
                    r"holds NaN or infinite values in '"),
    "infinite weights": (lambda d, n: rewrite_weights(d, n, lambda t: t[first_weight(t)].view(-1)[3].fill_(float("inf"))),
                         r"holds NaN or infinite values"),
    "missing key": (lambda d, n: rewrite_weights(d, n, lambda t: t.pop(first_weight(t))),
                    r"does not fit the model: missing \['"),
    "extra key": (lambda d, n: rewrite_weights(d, n, lambda t: t.update({"surprise.weight": torch.zeros(3)})),
                  r"does not fit the model: missing \[\], unexpected \['surprise.weight'\]"),
    "wrong shape": (lambda d, n: rewrite_weights(d, n, lambda t: t.update({first_weight(t): torch.zeros(3)})),
                    r"must be \(.*\) for this configuration, got \(3\)"),
    "wrong hash": (lambda d, n: edit_json(d, n, lambda info: info.update(weights_sha256="0" * 64)),
                   r"is damaged or was replaced: its SHA-256 is .*but its JSON records 0000000000000000"),
    "no hash": (lambda d, n: edit_json(d, n, lambda info: info.pop("weights_sha256")),
                r"records no SHA-256 for it"),
    "JSON not JSON": (lambda d, n: (d / f"{n}.json").write_text("{ this is not json"), r"is not valid JSON"),
    "JSON not an object": (lambda d, n: (d / f"{n}.json").write_text("[1, 2]"), r"must hold a JSON object"),
    "JSON without the config": (lambda d, n: edit_json(d, n, lambda info: info.pop(next(k for k in info if "config" in k))),
                                r"\.json lacks \['(model|gpt)_config'\]"),
    "JSON with a broken config": (
        lambda d, n: edit_json(d, n, lambda info: info[next(k for k in info if "config" in k)].update(n_heads=0)),
        r"holds an invalid (model_config|gpt_config or vocabulary) \(.*n_heads must be a positive int"),
}  # fmt: skip


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("name", list(LOADERS))
def test_a_damaged_checkpoint_names_the_file_and_how_to_rebuild_it(copied, name, damage):
    load, rebuild = LOADERS[name]
    harm, message = DAMAGE[damage]
    harm(copied, name)
    with pytest.raises(CheckpointError, match=message) as error:
        load(copied)
    text = str(error.value)
    assert str(copied / name) in text, text  # the file, with its folder
    assert f"`{rebuild}`" in text, text
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("missing", ["json", "safetensors"])
@pytest.mark.parametrize("name", list(LOADERS))
def test_a_missing_file_is_both_file_not_found_and_a_value_error(copied, name, missing):
    load, rebuild = LOADERS[name]
    (copied / f"{name}.{missing}").unlink()
    with pytest.raises(CheckpointNotFoundError, match=rf"{name}\.{missing} not found; rebuild .* `{rebuild}`"):
        load(copied)
    with pytest.raises(FileNotFoundError):
        load(copied)
    with pytest.raises(ValueError):
        load(copied)


def test_an_empty_folder_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"translator\.json not found"):
        train.load_translator(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"tiny_gpt\.json not found"):
        tiny_gpt.load_tiny_gpt(tmp_path / "nowhere")


def test_damaged_translator_snapshots_are_refused(copied):
    path = copied / "translator_snapshots.safetensors"
    flip_a_data_byte(path)
    with pytest.raises(CheckpointError, match=r"translator_snapshots\.safetensors is damaged or was replaced"):
        train.load_translator_snapshots(copied)
    path.unlink()
    with pytest.raises(CheckpointNotFoundError, match=r"translator_snapshots\.safetensors not found"):
        train.load_translator_snapshots(copied)


def test_the_shipped_json_files_record_the_hash_of_their_weights():
    for name, extra in (("translator", ["translator_snapshots.safetensors"]), ("tiny_gpt", [])):
        info = json.loads((SHIPPED / f"{name}.json").read_text(encoding="utf-8"))
        assert info["weights_sha256"] == file_sha256(SHIPPED / f"{name}.safetensors"), name
        for file_name in extra:
            assert info[f"{file_name}_sha256"] == file_sha256(SHIPPED / file_name)


def test_save_checkpoint_records_the_hash_and_load_checkpoint_verifies_it(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    info = training.save_checkpoint(tmp_path, "thing", tensors, {"note": "ünïcode ok"})
    assert info["weights_sha256"] == file_sha256(tmp_path / "thing.safetensors")
    loaded, loaded_info = training.load_checkpoint("test", tmp_path, "thing", "make thing")
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])
    assert loaded_info == info


def test_the_default_folder_is_the_course_folder_when_running_from_it():
    assert training.default_checkpoint_dir() == SHIPPED
    assert tiny_gpt.CHECKPOINT_DIR == SHIPPED
    assert train.default_checkpoint_dir() == SHIPPED


def test_a_wheel_install_ships_and_loads_both_checkpoints(tmp_path):
    """``pip install .`` (not editable): the wheel carries the checkpoints inside course_lib/."""
    source = tmp_path / "source"  # build from a copy: no build/ or egg-info left in the course folder
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "course_lib", source / "course_lib", ignore=ignore)
    shutil.copytree(SHIPPED, source / "checkpoints", ignore=ignore)
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."]
    subprocess.run(build, cwd=source, check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = dist.glob("course_lib-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for file_name in ("translator.json", "translator.safetensors", "translator_snapshots.safetensors",
                          "tiny_gpt.json", "tiny_gpt.safetensors"):  # fmt: skip
            assert f"course_lib/checkpoints/{file_name}" in names, file_name
        archive.extractall(site)

    script = f"""
import sys
sys.path.insert(0, {str(site)!r})
import course_lib
assert course_lib.__file__.startswith({str(site)!r}), course_lib.__file__
from course_lib.tiny_gpt import CHECKPOINT_DIR, load_tiny_gpt
from course_lib.train import default_checkpoint_dir, load_translator, load_translator_snapshots
assert str(default_checkpoint_dir()).startswith({str(site)!r}), default_checkpoint_dir()
model, info = load_translator()
steps, snapshots = load_translator_snapshots()
gpt, tokenizer, gpt_info = load_tiny_gpt()
print("loaded", type(model).__name__, type(gpt).__name__, len(steps), CHECKPOINT_DIR)
"""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded Transformer GPT" in result.stdout
