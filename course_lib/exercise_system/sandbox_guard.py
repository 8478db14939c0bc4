"""What a grading run watches: the audit hook that refuses and reports reading solutions or other
students' work, writing outside the run's folder, starting processes or walking into the checker;
the check that nothing in course_lib, builtins, math or torch was rebound; and the small process
helpers the host shares with the run. Used by ``sandbox``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

WATCHED_MODULES = ("builtins", "math", "torch", "torch.nn.functional", "torch.testing")
PROCESS_EVENTS = {
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "pty.spawn",
    "os.startfile",
}
SIGNAL_EVENTS = {"os.kill", "os.killpg", "signal.pthread_kill"}
ESCAPE_EVENTS = {"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace", "sys.setprofile"}
LIST_EVENTS = {"os.listdir", "os.scandir", "glob.glob", "glob.glob/2", "os.chdir"}
# Events whose arguments name files that are changed: (event, indexes of the path arguments).
CHANGE_EVENTS = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.symlink": (1,),
    "os.link": (1,),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "shutil.copyfile": (1,),
    "shutil.copytree": (1,),
    "shutil.rmtree": (0,),
    "shutil.move": (0, 1),
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

# ----------------------------------------------------------------------------------------------
# Small helpers shared by the host and the run
# ----------------------------------------------------------------------------------------------


def _libc_prctl():
    """``prctl`` from the C library on Linux, else None (looked up once, in the host)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _send(fd: int, message: dict) -> None:
    _write_all(fd, (json.dumps(message) + "\n").encode("utf-8"))


def _child_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (Linux /proc; elsewhere none can be found)."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == parent:
            found.append(int(entry))
    return found


def _kill_leftovers() -> None:
    """Kill and reap every child of this process: the run's strays, re-parented here (subreaper)."""
    for _ in range(100):
        strays = _child_pids(os.getpid())
        if not strays:
            break
        for pid in strays:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in strays:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


# ----------------------------------------------------------------------------------------------
# What the run watches: rebinding in course_lib, builtins, math and torch
# ----------------------------------------------------------------------------------------------


class Watch:
    """The objects bound in the watched modules when the host started, to spot rebinding."""

    def __init__(self):
        names = [name for name in sys.modules if name == "course_lib" or name.startswith("course_lib.")]
        names += [name for name in WATCHED_MODULES if name in sys.modules]
        self.modules = {}
        for name in sorted(names):
            module = sys.modules[name]
            attrs = {key: value for key, value in vars(module).items() if not key.startswith("__")}
            self.modules[name] = (module, attrs)

    def changes(self) -> list[str]:
        """What was rebound since the host started (``course_lib.checks.check_x``), in order."""
        found = []
        missing = object()
        for name, (module, attrs) in self.modules.items():
            if sys.modules.get(name) is not module:
                found.append(f"sys.modules[{name!r}]")
                continue
            current = vars(module)
            found += [f"{name}.{key}" for key, value in attrs.items() if current.get(key, missing) is not value]
        return found


# ----------------------------------------------------------------------------------------------
# The run's audit hook
# ----------------------------------------------------------------------------------------------


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _real(path) -> str | None:
    """The resolved absolute path of an audit argument, or None when it is not a path (an fd)."""
    if isinstance(path, int) or path is None:
        return None
    try:
        return os.path.realpath(os.fsdecode(os.fspath(path)))
    except (TypeError, ValueError):
        return None


def make_guard(rules: dict, label: list, report):
    """The audit hook of one run. ``rules`` (from the grader): ``folder`` (the run's own folder),
    ``forbidden`` ([root, reason] pairs that may not be read), ``protected`` (roots whose writing is
    flagged), ``block`` (refuse processes and escape hatches). ``label`` holds the cell being run
    (``label[0]``); ``report(kind, label, text)`` sends a flag or a note to the host at once."""
    folder = os.path.realpath(rules["folder"])
    forbidden = tuple((os.path.realpath(root), reason) for root, reason in rules["forbidden"])
    protected = tuple(os.path.realpath(root) for root in rules["protected"]) + tuple(root for root, _ in forbidden)
    block = bool(rules.get("block", True))
    writable = (folder, os.path.realpath(os.devnull))

    def refuse(kind: str, text: str):
        report(kind, label[0], text)
        raise PermissionError(f"not allowed while grading: {text}")

    def check_read(path) -> None:
        real = _real(path)
        if real is None or _inside(real, folder):
            return
        for root, reason in forbidden:
            if _inside(real, root):
                refuse("flag", f"{reason} ({real})")

    def check_write(path) -> None:
        real = _real(path)
        if real is None or any(_inside(real, root) for root in writable):
            return
        if any(_inside(real, root) for root in protected):
            refuse("flag", f"tried to change {real}")
        refuse("note", f"a write outside the run's folder was refused ({real})")

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
            if writing:
                check_write(path)
            else:
                check_read(path)
        elif event in LIST_EVENTS:
            check_read(args[0] if args else None)
        elif event in CHANGE_EVENTS:
            for index in CHANGE_EVENTS[event]:
                if index < len(args):
                    check_write(args[index])
        elif not block:
            return
        elif event in PROCESS_EVENTS:
            refuse("flag", f"tried to start a process ({event})")
        elif event in SIGNAL_EVENTS and args and args[0] not in (0, os.getpid()):
            refuse("flag", f"tried to signal another process ({event})")
        elif event in ESCAPE_EVENTS or event.startswith("ctypes."):
            refuse("flag", f"used {event}, which can get around the grader")

    return hook
