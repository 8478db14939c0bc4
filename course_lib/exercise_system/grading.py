"""Running a learner's notebook (``course check``) and grading a class (``course grade``).

``run_notebook`` runs a learner's own notebook, as it is, in a fresh Jupyter kernel: the
learner's check, which trusts the learner.

``grade_class`` trusts nobody. For each student it reads every notebook first (so nothing a
student's code does later can change another's), keeps only the learner's answer cells
(``submissions``), scans them for tampering (``integrity``), and judges each exercise on its
own, in a throw-away process (``sandbox``): the course's set-up cells, the learner's preamble,
the exercises it needs, the learner's answer cells, then the course's pristine check cell.

* An exercise that needs an earlier one (04.3 calls 04.1's ``causal_mask``) is run with the
  learner's version first; if that fails, again with the course's version, and when only that
  passes it is reported as ``depends on 04.1`` (a pass: the exercise itself is right).
* A timeout or a crash fails only the exercise it happened in.
* Code that rebinds the checkers, reads the solutions, starts processes or writes outside its
  folder is ``flagged``: no marks for that exercise, and the reason in the report.
* Each student is appended to the journal (``reports.Journal``) as soon as they are done, so
  Ctrl-C keeps what is done and ``--resume`` continues.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from course_lib.exercise_system.integrity import suspicious, uses_reference
from course_lib.exercise_system.notebooks import (
    NOTEBOOK_NAME,
    NotebookUnreadable,
    check_cell_exercise,
    course_root,
    exercise_sort_key,
    first_line,
    read_notebook,
    text_of_outputs,
)
from course_lib.exercise_system.reports import (
    ExerciseResult,
    GradedFile,
    GradeTable,
    Journal,
    NotebookReport,
    StudentRecord,
)
from course_lib.exercise_system.sandbox import Sandbox
from course_lib.exercise_system.submissions import (
    LearnerWork,
    LessonPlan,
    context_cells,
    exercise_dependencies,
    find_submissions,
    imported_modules,
    lesson_plans,
    student_folders,
)

__all__ = [
    "ExerciseResult",
    "GradeTable",
    "NotebookReport",
    "failure_message",
    "grade_class",
    "has_marker",
    "judge_check_cell",
    "run_notebook",
]

# Running a learner's notebook
# ----------------------------------------------------------------------------------------------


def _split_hint(evalue: str) -> tuple[str, str]:
    """A checker's message is ``problem (case: ...).`` then ``Hint: ...``: return both, whole."""
    lines = [line.strip() for line in str(evalue).splitlines() if line.strip()]
    at = next((i for i, line in enumerate(lines) if line.startswith("Hint:")), len(lines))
    return " ".join(lines[:at]), " ".join(lines[at:])


def failure_message(error_output) -> str:
    """What went wrong, from an error output: the whole CheckFailed message (its hint aside, never cut
    short, so the failing case stays), or the error's name and message."""
    name = error_output.get("ename", "Error")
    value, _ = _split_hint(error_output.get("evalue", ""))
    if name == "CheckFailed":
        return value or "CheckFailed"
    if name == "NotImplementedError":
        return f"not implemented yet ({value})" if value else "not implemented yet"
    return f"{name}: {value}" if value else name


def has_marker(cell, marker: str) -> bool:
    return any(line.strip().upper().startswith(f"# {marker}") for line in cell.get("source", "").splitlines())


def run_notebook(
    path: Path,
    expected=None,
    timeout: float = 120.0,
    kernel_name: str = "python3",
) -> NotebookReport:
    """Execute a learner's notebook in a fresh kernel and judge each exercise.

    ``expected`` names the exercises to report (ids, or a dict keyed by id such as
    ``expected_check_outputs(solution)``); when None, the notebook's own check cells. An exercise
    passes when its check cell runs without raising (CheckFailed, NotImplementedError or any other
    error) and its checker printed its success line ``✓ NN.M ...``: the checker's verdict decides,
    not the rest of the text, so a correct answer that also prints a debug line or a warning
    passes, as with nbval. ``timeout`` (seconds) bounds the whole notebook, kernel start
    included; cells after a timeout are not run.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    path = Path(path)
    match = NOTEBOOK_NAME.match(path.name)
    lesson = match.group(1) if match else path.stem
    report = NotebookReport(lesson)
    try:
        nb = read_notebook(path)
    except NotebookUnreadable as error:
        report.problem = str(error)
        for exercise in expected or {}:
            report.results[exercise] = ExerciseResult(exercise, False, report.problem)
        return report

    check_cells = {}
    for index, cell in enumerate(nb.cells):
        exercise = check_cell_exercise(cell)
        if exercise and exercise not in check_cells:
            check_cells[exercise] = index
    expected = list(check_cells) if expected is None else list(expected)
    for exercise in expected:
        if exercise not in check_cells:
            report.results[exercise] = ExerciseResult(exercise, False, "check cell missing")

    deadline = time.monotonic() + timeout
    client = NotebookClient(
        nb,
        timeout=max(1, int(timeout)),
        kernel_name=kernel_name,
        allow_errors=True,
        record_timing=False,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    executed = set()
    stopped = ""
    try:
        with client.setup_kernel(stderr=subprocess.DEVNULL):  # hide the kernel's own log lines
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or has_marker(cell, "NBVAL_SKIP"):
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    stopped = f"not run: the notebook took more than {timeout:g} s"
                    break
                client.timeout = max(1, int(remaining))
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    stopped = f"timed out after {timeout:g} s in cell {index} (an endless loop?)"
                    break
                except DeadKernelError:
                    stopped = f"the kernel died in cell {index}"
                    break
                executed.add(index)
    except (CellTimeoutError, DeadKernelError, RuntimeError, OSError) as error:  # e.g. the kernel did not start
        stopped = stopped or f"could not run the notebook: {first_line(error)}"

    for exercise, index in check_cells.items():
        if exercise in expected:
            report.results[exercise] = judge_check_cell(exercise, nb.cells[index], None, index in executed, stopped)
    report.problem = stopped
    report.results = dict(sorted(report.results.items(), key=lambda item: exercise_sort_key(item[0])))
    return report


def judge_check_cell(exercise: str, cell, expected: str | None, executed: bool, stopped: str = "") -> ExerciseResult:
    """The verdict on one executed (or not executed) check cell: did it raise?

    ``expected`` (what the solved run printed) is not compared: it is accepted for callers that pass it.

    An error output fails the exercise with the checker's whole message and its hint. Otherwise
    the exercise passes, whatever else the cell printed (a debug line of the learner's code, a
    warning), as long as the checker's success line ``✓ NN.M`` is among the outputs: without it,
    the check call itself was removed or changed.
    """
    if not executed:
        return ExerciseResult(exercise, False, stopped or "not run")
    errors = [output for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    if errors:
        _, hint = _split_hint(errors[0].get("evalue", ""))
        return ExerciseResult(exercise, False, failure_message(errors[0]), hint)
    if f"✓ {exercise}" not in text_of_outputs(cell.get("outputs", [])):
        return ExerciseResult(
            exercise,
            False,
            f"the check cell ran but its checker did not print its ✓ {exercise} line: was the check call changed? "
            "Put the cell back as it was (`course reset` gives a fresh notebook and keeps a backup of yours)",
        )
    return ExerciseResult(exercise, True, "")


# ----------------------------------------------------------------------------------------------
# Grading a class: one exercise
# ----------------------------------------------------------------------------------------------

DEFAULT_GRADE_TIMEOUT = 60.0  # seconds for one run (one exercise), kernel start not included


@dataclass
class GradingContext:
    """What every run of one grading session shares: the course, and what the runs may not touch."""

    plans: dict[str, LessonPlan]
    class_dir: Path
    solutions_dir: Path
    scratch: Path  # the session's temporary folder: hosts/ and runs/
    outputs: list[Path]  # the grader's own files
    timeout: float = DEFAULT_GRADE_TIMEOUT

    def guard(self, folder: Path) -> dict:
        """The rules of a run's audit hook (see ``sandbox.make_guard``)."""
        root = course_root()
        forbidden = [
            (self.solutions_dir, "read the course's solutions"),
            (root / ".git", "read the course's history (it holds the solutions)"),
            (self.class_dir, "read other students' work"),
            (self.scratch / "runs", "read other students' work"),
            *((path, "read the grader's files") for path in self.outputs),
        ]
        ipython = Path(os.environ.get("IPYTHONDIR") or Path.home() / ".ipython")
        protected = [self.class_dir, root, self.solutions_dir, *self.outputs, Path.home(), ipython, Path(sys.prefix)]
        return {
            "folder": str(folder),
            "forbidden": [[str(path), reason] for path, reason in forbidden],
            "protected": [str(path) for path in protected],
            "block": True,
        }

    def warm_up(self) -> list[list[str]]:
        """The course's own code, one program per lesson (set-up, then each answer and its check),
        for the hosts to run once before any learner's code (see ``sandbox.warm_up``)."""
        programs = []
        for plan in self.plans.values():
            cells = list(plan.setup)
            for exercise in plan.exercises:
                cells += [plan.references[exercise], plan.checks[exercise]]
            programs.append(cells)
        return programs

    def preload(self) -> list[str]:
        """Modules the course's cells import: the hosts import them once, before any fork."""
        names = {"IPython"}
        for plan in self.plans.values():
            for source in [*plan.setup, *plan.references.values(), *plan.checks.values()]:
                names |= imported_modules(source)
        return sorted(names)


@dataclass
class Attempt:
    """One run of an exercise, judged."""

    passed: bool
    message: str = ""
    hint: str = ""
    flags: list[str] = field(default_factory=list)  # against the exercise itself (or the preamble)
    dependency_flags: list[str] = field(default_factory=list)  # against an earlier exercise's cells
    notes: list[str] = field(default_factory=list)


def run_cells_for(plan: LessonPlan, work: LearnerWork, exercise: str, needs: list[str], reference: bool) -> list:
    """The cells of one run: set-up, the learner's preamble, the exercises it needs (the learner's
    cells, or the course's answers when ``reference``), course cells it uses, then its answer cells."""
    cells = [{"label": "setup", "source": source} for source in plan.setup]
    cells += [{"label": "preamble", "source": cell.source, "learner": True} for cell in work.preamble]
    groups = []
    for needed in needs:
        if reference:
            group = [{"label": f"course {needed}", "source": plan.references[needed]}]
        else:
            group = [{"label": needed, "source": cell.source, "learner": True} for cell in work.answers[needed]]
        groups.append((plan.positions[needed], group))
    sources = [cell["source"] for _, group in groups for cell in group]
    sources += [cell.source for cell in work.answers[exercise]]
    for position, source in context_cells(plan, exercise, sources):
        groups.append((position, [{"label": "context", "source": source}]))
    for _, group in sorted(groups, key=lambda item: item[0]):
        cells += group
    cells += [{"label": exercise, "source": cell.source, "learner": True} for cell in work.answers[exercise]]
    return cells


def judge_outcome(exercise: str, outcome: dict, dependency_labels: set[str], timeout: float) -> Attempt:
    """Turn a run's outcome (from the sandbox) into a verdict with its message, hint and notes."""
    # dict.fromkeys: the same finding reported after a cell and after the check counts once
    flags = list(dict.fromkeys(flag["text"] for flag in outcome["flags"] if flag["label"] not in dependency_labels))
    dependency_flags = list(
        dict.fromkeys(
            f"{flag['label']}: {flag['text']}" for flag in outcome["flags"] if flag["label"] in dependency_labels
        )
    )
    notes = list(dict.fromkeys(note["text"] for note in outcome["notes"]))
    for error in outcome["cell_errors"]:
        where = {"setup": "the course's set-up cell", "preamble": "your cells above the exercises"}.get(
            error["label"], f"your cell for {error['label']}"
        )
        notes.append(f"{where} raised {error['ename']}: {first_line(error['evalue'], 200)}")
    result = outcome.get("result")
    attempt = Attempt(False, flags=flags, dependency_flags=dependency_flags, notes=notes)
    if result is None:
        attempt.message = {
            "timeout": f"timed out after {timeout:g} s (an endless loop?)",
            "overflow": "stopped: the run sent too much output to the grader",
            "host": "the grading process stopped answering (it was restarted); grade this student again",
        }.get(outcome.get("stop"), f"the run ended before the check finished ({outcome.get('ended')}): the code "
              "may exit, crash or use too much memory")  # fmt: skip
    elif result.get("passed"):
        attempt.passed = not dependency_flags
        if dependency_flags:
            attempt.message = "flagged in " + "; ".join(dependency_flags)
    elif result.get("ename"):
        attempt.message = failure_message(result)
        attempt.hint = _split_hint(result.get("evalue", ""))[1]
    else:
        attempt.message = (
            f"the checker did not print its ✓ {exercise} line: something in the answer changed how the check runs"
        )
    return attempt


def static_flags(plan: LessonPlan, work: LearnerWork) -> dict[str, list[str]]:
    """Reasons found by reading the learner's cells, per exercise (and "preamble")."""
    flags = {}
    for label, cells in [("preamble", work.preamble), *work.answers.items()]:
        reasons = []
        for cell in cells:
            reasons += [f"cell {cell.index + 1} {reason}" for reason in suspicious(cell.source)]
            title = plan.titles.get(label)
            if title and uses_reference(cell.source, title):
                reasons.append(f"cell {cell.index + 1} takes course_lib's own {title} instead of writing it")
        if reasons:
            flags[label] = reasons
    return flags


def flagged_result(exercise: str, reasons: list[str]) -> ExerciseResult:
    return ExerciseResult(exercise, False, "flagged: " + "; ".join(reasons), status="flagged")


def grade_exercise(
    sandbox: Sandbox,
    context: GradingContext,
    plan: LessonPlan,
    work: LearnerWork,
    exercise: str,
    needs: list[str],
    flags: dict[str, list[str]],
    folder: Path,
    unusable: dict[str, str] | None = None,
) -> ExerciseResult:
    """Judge one exercise on its own; see the module's docstring.

    ``unusable`` names earlier exercises whose learner's version is not tried again, and why
    ("it timed out"): the run goes straight to the course's version of them.
    """
    unusable = {**(unusable or {}), **{needed: "it was flagged" for needed in needs if needed in flags}}
    own = flags.get("preamble", []) + flags.get(exercise, [])
    if own:
        return flagged_result(exercise, own)

    def attempt(reference: bool) -> Attempt:
        request = {
            "exercise": exercise,
            "cells": run_cells_for(plan, work, exercise, needs, reference),
            "check": plan.checks[exercise],
            "timeout": context.timeout,
            "threads": sandbox.threads,
            "guard": context.guard(folder),
        }
        return judge_outcome(exercise, sandbox.run(request), set() if reference else set(needs), context.timeout)

    first = None
    skipped = [f"your {needed}: {unusable[needed]}" for needed in needs if needed in unusable]
    if not skipped:
        first = attempt(reference=False)
        if first.flags:
            return flagged_result(exercise, first.flags)
        if first.passed:
            return ExerciseResult(exercise, True, notes=first.notes)
    if needs:
        second = attempt(reference=True)
        if second.flags:
            return flagged_result(exercise, second.flags)
        if second.passed:  # name_dependencies() completes the message once every exercise is judged
            why = first.message if first else "; ".join(skipped)
            status = f"depends on {', '.join(needs)}"
            return ExerciseResult(exercise, True, why, status=status, notes=first.notes if first else [])
    chosen = first or second
    return ExerciseResult(exercise, False, chosen.message, chosen.hint, notes=chosen.notes + chosen.dependency_flags)


def name_dependencies(results: dict[str, ExerciseResult], needs: dict[str, list[str]]) -> None:
    """Name the earlier exercises that failed: "depends on 04.1, 04.2" becomes "depends on 04.1"
    when 04.2 passed on its own, with the message saying so."""
    for exercise, result in results.items():
        if result.status.startswith("depends on"):
            failing = [needed for needed in needs[exercise] if not results[needed].passed] or needs[exercise]
            result.status = f"depends on {', '.join(failing)}"
            result.message = f"right with the course's version of {', '.join(failing)}; with yours: {result.message}"


def grade_notebook(
    sandbox: Sandbox, context: GradingContext, plan: LessonPlan, work: LearnerWork, folder: Path
) -> dict[str, ExerciseResult]:
    """Every exercise of one learner notebook, run on a private copy in ``folder`` (removed after)."""
    if work.path is None or work.problem:
        return {exercise: ExerciseResult(exercise, False, work.problem) for exercise in plan.exercises}
    folder.mkdir(parents=True)
    (folder / work.path.name).write_bytes(work.data)
    try:
        flags = static_flags(plan, work)
        needs = exercise_dependencies(plan, work)
        results, unusable = {}, {}
        for exercise in plan.exercises:
            result = grade_exercise(sandbox, context, plan, work, exercise, needs[exercise], flags, folder, unusable)
            results[exercise] = result
            if result.message.startswith("timed out"):  # it would time out again in every later run
                unusable[exercise] = "it timed out"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    name_dependencies(results, needs)
    return results


# ----------------------------------------------------------------------------------------------
# Grading a class: all students
# ----------------------------------------------------------------------------------------------

_run_counter = iter(range(1, 1 << 62))
_counter_lock = threading.Lock()


def _new_run_folder(context: GradingContext) -> Path:
    with _counter_lock:
        number = next(_run_counter)
    return context.scratch / "runs" / f"{number:05d}"


def grade_student(
    sandbox: Sandbox, context: GradingContext, student: str, works: dict[str, LearnerWork], student_dir: Path
) -> StudentRecord:
    record = StudentRecord(student)
    for lesson, plan in context.plans.items():
        work = works[lesson]
        relative = work.path.relative_to(student_dir).as_posix() if work.path else ""
        record.files[lesson] = GradedFile(relative, work.sha256, work.note or work.problem)
        record.results.update(grade_notebook(sandbox, context, plan, work, _new_run_folder(context)))
    return record


def unchanged_since(record: StudentRecord | None, works: dict[str, LearnerWork], student_dir: Path) -> bool:
    """Was this student graded already, on the very same files (for ``--resume``)?"""
    if record is None:
        return False
    for lesson, work in works.items():
        graded = record.files.get(lesson)
        relative = work.path.relative_to(student_dir).as_posix() if work.path else ""
        if graded is None or graded.file != relative or graded.sha256 != work.sha256:
            return False
    return True


def _start_hosts(context: GradingContext, jobs: int) -> list[Sandbox]:
    """Start one host per job, in parallel (each takes seconds: it imports torch and the course).

    Each run uses one thread (the checkers do anyway): the jobs, not the threads, use the CPUs.
    """
    hosts = [
        Sandbox(context.scratch / "hosts" / str(number), context.preload(), 1, context.warm_up())
        for number in range(jobs)
    ]
    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(host.start) for host in hosts]:
            future.result()
    return hosts


def grade_class(
    class_dir: Path,
    solutions_dir: Path,
    journal: Journal,
    lessons: list[str] | None = None,
    timeout: float = DEFAULT_GRADE_TIMEOUT,
    jobs: int = 1,
    resume: bool = False,
    outputs: list[Path] | None = None,
    progress=None,
) -> GradeTable:
    """Grade every student folder of ``class_dir``; append each student to ``journal`` when done.

    ``class_dir`` holds one folder per student (hidden folders and ``__MACOSX`` are not students).
    Every notebook is read before any code runs. With ``resume``, students already in the
    journal, on the same files, are kept. Ctrl-C (KeyboardInterrupt) stops the hosts and is
    raised again; the journal keeps every finished student.
    """
    progress = progress or (lambda text: None)
    class_dir = Path(class_dir).resolve()
    if not class_dir.is_dir():
        raise FileNotFoundError(f"no such folder: {class_dir}")
    plans = lesson_plans(solutions_dir, lessons)
    if not plans:
        raise ValueError("the lessons asked for have no exercises")
    folders = {folder.name: folder for folder in student_folders(class_dir)}
    if not folders:
        raise ValueError(f"no student folders in {class_dir}")
    works = {name: find_submissions(folder, plans) for name, folder in folders.items()}  # read all, first
    done = journal.records() if resume else {}
    records = {name: done[name] for name in folders if unchanged_since(done.get(name), works[name], folders[name])}
    if not resume:
        journal.start_afresh()
    todo = [name for name in folders if name not in records]
    if records:
        progress(f"{len(records)} student(s) already graded in {journal.path}; grading the other {len(todo)}")
    exercises = sorted((e for plan in plans.values() for e in plan.exercises), key=exercise_sort_key)
    if todo:
        with tempfile.TemporaryDirectory(prefix="course-grade-") as scratch:
            context = GradingContext(
                plans,
                class_dir,
                Path(solutions_dir).resolve(),
                Path(scratch).resolve(),
                [Path(path).resolve() for path in outputs or []],  # a run works in another folder
                timeout,
            )
            for name, record in _grade_all(context, todo, works, folders, jobs, journal, progress):
                records[name] = record
    return GradeTable.from_records(exercises, list(records.values()))


def _grade_all(context, todo, works, folders, jobs, journal, progress):
    """Yield (student, record) as students finish, ``jobs`` at a time, appending each to the journal."""
    jobs = max(1, min(jobs, len(todo)))
    hosts = _start_hosts(context, jobs)
    free: queue.Queue[Sandbox] = queue.Queue()
    for host in hosts:
        free.put(host)
    lock = threading.Lock()
    stop = threading.Event()
    finished = [0]

    def work(name: str) -> StudentRecord | None:
        if stop.is_set():
            return None
        host = free.get()
        try:
            started = time.monotonic()
            record = grade_student(host, context, name, works[name], folders[name])
        finally:
            free.put(host)
        with lock:
            journal.append(record)
            finished[0] += 1
            passed = sum(result.passed for result in record.results.values())
            flagged = sum(result.status == "flagged" for result in record.results.values())
            progress(
                f"[{finished[0]}/{len(todo)}] {name}: {passed}/{len(record.results)} pass"
                + (f", {flagged} flagged" if flagged else "")
                + f" ({time.monotonic() - started:.1f} s)"
            )
        return record

    pool = ThreadPoolExecutor(jobs)
    try:
        futures = {pool.submit(work, name): name for name in todo}
        for future in as_completed(futures):
            record = future.result()
            if record is not None:
                yield futures[future], record
    except BaseException:
        stop.set()
        for host in hosts:
            host.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for host in hosts:
            host.close()
