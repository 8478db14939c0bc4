"""Run a learner's answer cells and the course's check in a throw-away process.

    grader ──JSON lines──▶ host process (one per --jobs slot; imports torch, IPython and the course once)
                              │ fork() for every run
                              ▼
                           run process: its own session, folder, HOME, IPYTHONDIR and TMPDIR;
                           an audit hook; runs the cells; reports on a pipe of its own

The host never runs a learner's code itself: every run is a fresh ``fork`` of it, so nothing a
learner does survives into the next run or reaches another student. Starting a Jupyter kernel
and importing torch costs about 3 s; a fork costs a few milliseconds, which is what lets a class
of 30 be graded in minutes.

After each run the host kills the run's whole process group and then every process left
behind: on Linux the host is a *child subreaper*, so a process that detached itself (double
fork, ``setsid``) is re-parented to the host instead of init, and is found and killed.

The run's audit hook (``sys.addaudithook``; it cannot be removed from Python) refuses, and
reports:

* reading the course's solutions and hints, other students' folders and the grader's files;
* writing or deleting anything outside the run's folder (flagged when the target is a place
  that matters: the class, the course, the grader's output, the real home folder);
* starting processes, sending signals to other processes, ``ctypes``, ``gc`` object walking and
  ``sys.settrace`` (ways around the hook or into the checker).

After each cell the run also checks that nothing in ``course_lib`` (the checkers and the
reference code they compare with), ``builtins``, ``math`` or ``torch`` was rebound.

This is a guard against the tricks seen in class, not a security boundary: the checker runs in
the same process as the learner's code, so code written to attack the grader's own process can
still get past it. INSTRUCTORS.md says what it can and cannot prevent.

Linux and macOS only (it needs ``fork``); the subreaper sweep is Linux only.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from course_lib.exercise_system.sandbox_guard import (
    PR_SET_CHILD_SUBREAPER,
    PR_SET_PDEATHSIG,
    Watch,
    _kill_leftovers,
    _libc_prctl,
    _send,
    _write_all,
    make_guard,
)

READY = "ready"
MAX_REPORT_BYTES = 4_000_000  # a run that writes more than this to its report pipe is stopped
HOST_COMMAND = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
HOST_GRACE_SECONDS = 60  # how long past a run's time limit the grader waits for the host's answer


class SandboxError(RuntimeError):
    """The host process could not be started or stopped answering."""


# ----------------------------------------------------------------------------------------------
# One run, inside the forked process
# ----------------------------------------------------------------------------------------------


def _private_environment(folder: Path, threads: int) -> None:
    """Work in ``folder``, with a private HOME, IPYTHONDIR and TMPDIR inside it."""
    import tempfile

    for name in ("home", "ipython", "tmp"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    os.environ.update(
        HOME=str(folder / "home"),
        USERPROFILE=str(folder / "home"),
        IPYTHONDIR=str(folder / "ipython"),
        TMPDIR=str(folder / "tmp"),
        TEMP=str(folder / "tmp"),
        TMP=str(folder / "tmp"),
    )
    tempfile.tempdir = str(folder / "tmp")
    sys.dont_write_bytecode = True
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(max(1, threads))


def _silence_standard_streams() -> None:
    """Point stdin, stdout and stderr at /dev/null: the host's pipes to the grader are fds 0 and 1."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _error_text(error: BaseException) -> tuple[str, str]:
    return type(error).__name__, str(error)


def run_cells(request: dict, shell, watch: Watch, report_fd: int) -> None:
    """Run the request's cells, then its check, reporting to ``report_fd`` (in the forked process)."""
    import builtins

    label = ["setup"]

    def report(kind: str, where: str, text: str) -> None:
        _send(report_fd, {kind: {"label": where, "text": text}})

    def check_rebinding(where: str) -> None:
        changed = watch.changes()
        if changed:
            report("flag", where, f"changed {', '.join(changed[:3])} while running")

    sys.addaudithook(make_guard(request["guard"], label, report))
    for cell in request["cells"]:
        label[0] = cell["label"]
        outcome = shell.run_cell(cell["source"], silent=True)
        error = outcome.error_before_exec or outcome.error_in_exec
        if error is not None and (cell.get("learner") or cell["label"] == "setup"):
            name, value = _error_text(error)
            _send(report_fd, {"cell_error": {"label": cell["label"], "ename": name, "evalue": value}})
        if cell.get("learner"):
            check_rebinding(cell["label"])

    exercise = request["exercise"]
    label[0] = "check"
    namespace = shell.user_ns
    if namespace.get("__builtins__") not in (builtins, vars(builtins)):
        report("flag", label[0], "replaced __builtins__")
        namespace["__builtins__"] = builtins
    printed = io.StringIO()
    started = time.monotonic()
    error = None
    with contextlib.redirect_stdout(printed):
        try:
            exec(compile(request["check"], f"<check {exercise}>", "exec"), namespace)
        except BaseException as caught:  # the checker's CheckFailed, or anything the learner's code raised
            error = caught
    check_rebinding(label[0])
    success_line = f"✓ {exercise}" in printed.getvalue()
    result = {"passed": error is None and success_line, "success_line": success_line}
    result["seconds"] = round(time.monotonic() - started, 3)
    if error is not None:
        result["ename"], result["evalue"] = _error_text(error)
    _send(report_fd, {"result": result})


def _child(request: dict, shell, watch: Watch, report_fd: int, prctl) -> None:
    os.setsid()  # its own session and process group: the host kills the whole group afterwards
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the host
    _silence_standard_streams()
    _private_environment(Path(request["guard"]["folder"]), int(request.get("threads", 1)))
    run_cells(request, shell, watch, report_fd)


# ----------------------------------------------------------------------------------------------
# The host process
# ----------------------------------------------------------------------------------------------


class LineReader:
    """JSON lines from a file descriptor, read with ``os.read`` (so ``select`` sees what is pending)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = b""

    def read(self) -> dict | None:
        while b"\n" not in self.buffer:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


POLL_SECONDS = 0.2  # how often a run's process is checked for having ended while its pipe stays open


def _reap(pid: int) -> int | None:
    """The exit status of run ``pid`` if it has ended (it is then reaped), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 0
    return status if done else None


def _reap_soon(pid: int, within: float = 0.1) -> int | None:
    """Like ``_reap``, allowing a moment: a process closes its pipes just before it can be reaped."""
    deadline = time.monotonic() + within
    while (status := _reap(pid)) is None and time.monotonic() < deadline:
        time.sleep(0.001)
    return status


def _collect(fd: int, pid: int, timeout: float, grader_fd: int) -> tuple[bytes, str, int | None]:
    """Read a run's report until its process ends ("ended"), it runs out of time ("timeout"), it
    writes too much ("overflow"), or the grader goes away ("grader gone"). Returns the report, why
    reading stopped, and the run's exit status when it was reaped here.

    The end of the pipe usually tells that the run is over; a process the run left behind may
    hold the pipe open, so the run's own process is also checked every ``POLL_SECONDS``.
    """
    deadline = time.monotonic() + timeout
    chunks, size = [], 0
    status = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), "timeout", None
        ready, _, _ = select.select([fd, grader_fd], [], [], min(remaining, POLL_SECONDS))
        if grader_fd in ready:
            return b"".join(chunks), "grader gone", None  # the grader sends nothing while a run is on: EOF
        if fd in ready:
            chunk = os.read(fd, 1 << 16)
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_REPORT_BYTES:
                    return b"".join(chunks), "overflow", None
                continue
            status = _reap_soon(pid)
            if status is None:  # the run closed its pipe but goes on: wait for it within the time limit
                fd = _idle_pipe()
                continue
            return b"".join(chunks), "ended", status
        if status is None:
            status = _reap(pid)
            if status is not None:
                chunks.append(_drain(fd))
                return b"".join(chunks), "ended", status


def _idle_pipe() -> int:
    """A descriptor ``select`` never reports (the read end of a pipe nobody writes to)."""
    global _IDLE
    if _IDLE is None:
        _IDLE = os.pipe()
    return _IDLE[0]


_IDLE = None


def _drain(fd: int) -> bytes:
    """What is left in a pipe whose writer is gone, or held open by a stray process (no waiting)."""
    chunks = []
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _end_run(pid: int, status: int | None) -> str:
    """Kill the run's process group and every leftover process; return how the run ended."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    if status is None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = 0
    _kill_leftovers()
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        return f"killed by signal {number} ({signal.strsignal(number) or 'unknown'})"
    return f"exit code {os.WEXITSTATUS(status)}"


def _parse_report(data: bytes) -> dict:
    """Turn the run's JSON lines into one outcome: the result, flags, notes and cell errors."""
    outcome = {"flags": [], "notes": [], "cell_errors": [], "result": None}
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(message, dict):
            continue
        for kind, value in message.items():
            if kind == "result":
                if outcome["result"] is not None:  # a second verdict can only be forged
                    outcome["flags"].append({"label": "check", "text": "wrote to the grader's report pipe"})
                outcome["result"] = value
            elif kind in ("flag", "note", "cell_error"):
                outcome[f"{kind}s"].append(value)
    return outcome


def run_once(request: dict, shell, watch: Watch, grader: tuple[int, int], prctl) -> dict:
    """Fork one run, wait for its report within the time limit, then clean up after it.

    ``grader`` is the host's (input, output) pair of descriptors to the grader: the run closes
    both, so a learner's code cannot talk to the grader.
    """
    read_end, write_end = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the run
        os.close(read_end)
        os.close(grader[1])
        code = 0
        try:
            _child(request, shell, watch, write_end, prctl)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    status = None
    try:
        data, stop, status = _collect(read_end, pid, float(request["timeout"]), grader[0])
    finally:
        os.close(read_end)
        ended = _end_run(pid, status)
    outcome = _parse_report(data)
    outcome["stop"] = stop
    outcome["ended"] = ended
    outcome["wall"] = round(time.monotonic() - started, 3)
    return outcome


def preload(modules: list[str]) -> None:
    """Import what the runs will need, once, in the host (a failing import is left to the runs)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def warm_up(programs: list[list[str]]) -> None:
    """Run the course's own code (set-up, reference answers, checks) once, in throw-away namespaces.

    Only trusted course code runs here, never a learner's. What it imports or sets up lazily
    (``torch._dynamo``, which the optimizer pulls in and which takes seconds) is then done once
    per host instead of once per run, and what it rebinds while doing so is not taken for
    tampering: the ``Watch`` snapshot is taken afterwards.
    """
    import torch

    dtype = torch.get_default_dtype()
    for cells in programs:
        namespace = {"__name__": "__warm_up__"}
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for source in cells:
                try:
                    exec(compile(source, "<warm-up>", "exec"), namespace)
                except BaseException:  # a failure here shows up again, in the runs
                    continue
        torch.set_default_dtype(dtype)


def make_shell():
    """The IPython shell every run uses (a fresh copy in each fork): magics work, history is off."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    # Nobody reads a run's output: rendering a traceback costs up to a second, so skip it.
    shell.showtraceback = lambda *args, **kwargs: None
    shell.showsyntaxerror = lambda *args, **kwargs: None
    return shell


def serve() -> int:
    """The host's loop. The first line on stdin says what to import and warm up
    (``{"modules": [...], "warm_up": [[cell, ...], ...]}``); then one JSON request per line on
    stdin, one JSON outcome per line on stdout."""
    out = os.dup(1)  # the answers go here; fd 1 itself goes to /dev/null, so a stray print cannot garble them
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    prctl = _libc_prctl()
    if prctl is not None:
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of a run come back here, to be killed
    reader = LineReader(0)
    setup = reader.read() or {}
    preload(setup.get("modules", []))
    if setup.get("warm_up"):
        warm_up(setup["warm_up"])
    shell = make_shell()
    watch = Watch()
    _send(out, {READY: True, "pid": os.getpid(), "threads": _thread_count()})
    while True:
        request = reader.read()
        if request is None:
            return 0
        outcome = run_once(request, shell, watch, grader=(0, out), prctl=prctl)
        if outcome["stop"] == "grader gone":
            return 0
        _send(out, outcome)


def _thread_count() -> int:
    """Threads of this process (fork copies only the calling one: the host should have one)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


# ----------------------------------------------------------------------------------------------
# The grader's side: one host per job
# ----------------------------------------------------------------------------------------------


def host_environment(scratch: Path, threads: int) -> dict[str, str]:
    """The host's environment: private HOME, IPYTHONDIR and caches; no start-up files of any kind."""
    import matplotlib

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JUPYTER", "IPYTHON", "PYTHONSTARTUP", "PYTHONINSPECT", "MPL"))
    }
    from course_lib.exercise_system.notebooks import course_root

    package_parent = str(course_root())
    env.update(
        HOME=str(scratch / "home"),
        IPYTHONDIR=str(scratch / "ipython"),
        XDG_CACHE_HOME=str(scratch / "cache"),
        XDG_CONFIG_HOME=str(scratch / "config"),
        TORCH_HOME=str(scratch / "cache" / "torch"),
        MPLBACKEND="Agg",
        MPLCONFIGDIR=matplotlib.get_configdir(),  # the real font cache: building one takes seconds
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONNOUSERSITE="1",
        PYTHONPATH=os.pathsep.join([package_parent, *filter(None, [os.environ.get("PYTHONPATH")])]),
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
    )
    for name in ("home", "ipython", "cache", "config"):
        (scratch / name).mkdir(parents=True, exist_ok=True)
    return env


class Sandbox:
    """A host process and the means to send it runs. Use as a context manager."""

    def __init__(
        self,
        scratch: Path,
        modules: list[str],
        threads: int = 1,
        warm_up: list[list[str]] | None = None,
        start_timeout: float = 300.0,
    ):
        if not hasattr(os, "fork"):
            raise SandboxError("grading needs fork(): run `course grade` on Linux or macOS (on Windows: in WSL)")
        self.scratch = Path(scratch)
        self.modules = list(modules)
        self.warm_up = warm_up or []
        self.threads = threads
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.reader: LineReader | None = None
        self.stopped = False  # set by stop(): no more runs, no restart

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            # Run this file, not the module: importing the package would import nbformat and torch
            # (seconds each), which a course without torch does not need.
            [sys.executable, "-c", HOST_COMMAND, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self.scratch,
            env=host_environment(self.scratch, self.threads),
            start_new_session=True,  # Ctrl-C in the terminal reaches the grader only; it stops the host
        )
        self.reader = LineReader(self.process.stdout.fileno())
        setup = {"modules": self.modules, "warm_up": self.warm_up}
        with contextlib.suppress(OSError):
            _write_all(self.process.stdin.fileno(), (json.dumps(setup) + "\n").encode("utf-8"))
        ready = self._receive(self.start_timeout)
        if not ready or not ready.get(READY):
            self.close()
            raise SandboxError("the grading process did not start (is course_lib installed in this Python?)")

    def _receive(self, timeout: float) -> dict | None:
        fd = self.process.stdout.fileno()
        if b"\n" not in self.reader.buffer:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return None
        try:
            return self.reader.read()
        except (OSError, ValueError):
            return None

    def run(self, request: dict) -> dict:
        """Send one run; return its outcome. If the host itself failed, restart it and say so."""
        if self.stopped:
            raise SandboxError("grading was stopped")
        if self.process is None or self.process.poll() is not None:
            self.start()
        try:
            _write_all(self.process.stdin.fileno(), (json.dumps(request) + "\n").encode("utf-8"))
            outcome = self._receive(float(request["timeout"]) + HOST_GRACE_SECONDS)
        except OSError:
            outcome = None
        if outcome is None:
            self.close()
            return {"flags": [], "notes": [], "cell_errors": [], "result": None, "stop": "host", "ended": "host lost"}
        return outcome

    def stop(self) -> None:
        """Kill the host at once (from another thread too): its run dies with it (parent-death signal)."""
        self.stopped = True
        process = self.process
        if process is not None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop the host (closing its stdin makes it exit; it is killed if it does not)."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with contextlib.suppress(OSError):
            process.stdout.close()


if __name__ == "__main__":
    sys.exit(serve())
