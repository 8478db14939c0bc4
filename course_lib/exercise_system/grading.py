"""Running a learner's notebook and grading a class: one verdict per exercise."""

from __future__ import annotations

import csv
import io
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from course_lib.exercise_system.notebooks import (
    NOTEBOOK_NAME,
    NotebookUnreadable,
    check_cell_exercise,
    exercise_sort_key,
    expected_check_outputs,
    first_line,
    lesson_notebooks,
    read_notebook,
    text_of_outputs,
)

# Running a learner's notebook
# ----------------------------------------------------------------------------------------------


@dataclass
class ExerciseResult:
    """The verdict on one exercise: passed or not, and why (the checker's whole message, without its hint)."""

    exercise: str
    passed: bool
    message: str = ""
    hint: str = ""  # the checker's "Hint: ..." line, when it gave one


@dataclass
class NotebookReport:
    """All verdicts for one notebook, plus a problem that concerns the whole notebook."""

    lesson: str
    results: dict[str, ExerciseResult] = field(default_factory=dict)
    problem: str = ""


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
# Grading a class
# ----------------------------------------------------------------------------------------------


@dataclass
class GradeTable:
    """Student x exercise verdicts, plus the notes that explain the failures."""

    exercises: list[str]
    rows: dict[str, dict[str, ExerciseResult]]

    def total(self, student: str) -> int:
        return sum(result.passed for result in self.rows[student].values())

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["student", *self.exercises, "total"])
        for student, results in self.rows.items():
            cells = ["pass" if results[exercise].passed else "fail" for exercise in self.exercises]
            writer.writerow([student, *cells, self.total(student)])
        return buffer.getvalue()

    def details_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["student", "exercise", "result", "reason"])
        for student, results in self.rows.items():
            for exercise in self.exercises:
                result = results[exercise]
                writer.writerow([student, exercise, "pass" if result.passed else "fail", result.message])
        return buffer.getvalue()

    def to_markdown(self) -> str:
        def escape(text: str) -> str:
            return str(text).replace("|", "\\|")

        n = len(self.exercises)
        lines = [
            "| student | " + " | ".join(self.exercises) + " | total |",
            "|---|" + "---|" * n + "---|",
        ]
        for student, results in self.rows.items():
            marks = ["pass" if results[exercise].passed else "fail" for exercise in self.exercises]
            lines.append(f"| {escape(student)} | " + " | ".join(marks) + f" | {self.total(student)}/{n} |")
        notes = [
            f"- {escape(student)}, {exercise}: {escape(results[exercise].message)}"
            for student, results in self.rows.items()
            for exercise in self.exercises
            if not results[exercise].passed
        ]
        if notes:
            lines += ["", "Why exercises failed:", "", *notes]
        return "\n".join(lines) + "\n"


def find_student_notebook(student_dir: Path, name: str) -> Path:
    """``student_dir/name``, or the one ``NN_*.ipynb`` of that lesson if the student renamed it."""
    path = Path(student_dir) / name
    if not path.exists():
        renamed = sorted(Path(student_dir).glob(f"{name[:2]}_*.ipynb"))
        if len(renamed) == 1:
            return renamed[0]
    return path


def grade_class(
    class_dir: Path,
    solutions_dir: Path,
    lessons: list[str] | None = None,
    timeout: float = 120.0,
    progress=None,
) -> GradeTable:
    """Run every student's exercise notebooks and tabulate the verdicts.

    ``class_dir`` holds one folder per student, each with ``NN_*.ipynb`` notebooks named as in
    ``solutions_dir``. A missing or unreadable notebook, a timeout or a deleted check cell
    fails the exercises concerned, with a note, and grading carries on.
    """
    class_dir = Path(class_dir)
    if not class_dir.is_dir():
        raise FileNotFoundError(f"no such folder: {class_dir}")
    solutions = lesson_notebooks(solutions_dir)
    if not solutions:
        raise FileNotFoundError(f"no solution notebooks NN_*.ipynb in {solutions_dir}")
    if lessons:
        unknown = sorted(set(lessons) - set(solutions))
        if unknown:
            raise ValueError(f"unknown lesson(s) {unknown}; the solutions have {sorted(solutions)}")
        solutions = {lesson: solutions[lesson] for lesson in sorted(set(lessons))}
    expected = {lesson: expected_check_outputs(read_notebook(path)) for lesson, path in solutions.items()}
    exercises = sorted((e for per_lesson in expected.values() for e in per_lesson), key=exercise_sort_key)
    students = sorted(p for p in class_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    rows = {}
    for student in students:
        row = {}
        for lesson, solution_path in solutions.items():
            if progress:
                progress(f"{student.name}: {solution_path.name}")
            report = run_notebook(find_student_notebook(student, solution_path.name), expected[lesson], timeout=timeout)
            row.update(report.results)
        rows[student.name] = row
    return GradeTable(exercises, rows)
