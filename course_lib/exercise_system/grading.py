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
    """The verdict on one exercise: passed or not, and why (the first line of the failure)."""

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


def failure_message(error_output) -> str:
    """A short hint from an error output: the CheckFailed message, or the error's name and message."""
    name = error_output.get("ename", "Error")
    value = first_line(error_output.get("evalue", ""))
    if name == "CheckFailed":
        return value or "CheckFailed"
    if name == "NotImplementedError":
        return f"not implemented yet ({value})" if value else "not implemented yet"
    return f"{name}: {value}" if value else name


def has_marker(cell, marker: str) -> bool:
    return any(line.strip().upper().startswith(f"# {marker}") for line in cell.get("source", "").splitlines())


def run_notebook(
    path: Path,
    expected: dict[str, str] | None = None,
    timeout: float = 120.0,
    kernel_name: str = "python3",
) -> NotebookReport:
    """Execute a learner's notebook in a fresh kernel and judge each exercise.

    ``expected`` maps exercise id -> the text the solved check cell printed; when None the
    notebook's own stored outputs are the reference (as nbval does). An exercise passes when
    its check cell runs without error and prints the expected text. ``timeout`` (seconds)
    bounds the whole notebook, kernel start included; cells after a timeout are not run.
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
    if expected is None:
        expected = {
            exercise: text_of_outputs(nb.cells[index].get("outputs", [])) for exercise, index in check_cells.items()
        }
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
            report.results[exercise] = judge_check_cell(
                exercise, nb.cells[index], expected[exercise], index in executed, stopped
            )
    report.problem = stopped
    report.results = dict(sorted(report.results.items(), key=lambda item: exercise_sort_key(item[0])))
    return report


def judge_check_cell(exercise: str, cell, expected: str, executed: bool, stopped: str) -> ExerciseResult:
    """The verdict on one executed (or not executed) check cell."""
    if not executed:
        return ExerciseResult(exercise, False, stopped or "not run")
    errors = [output for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    if errors:
        lines = str(errors[0].get("evalue", "")).splitlines()
        hint = next((line.strip() for line in lines[1:] if line.strip().startswith("Hint:")), "")
        return ExerciseResult(exercise, False, failure_message(errors[0]), hint)
    got = text_of_outputs(cell.get("outputs", []))
    if got != expected:
        shown = first_line(got) or "nothing"
        return ExerciseResult(exercise, False, f"the check printed {shown!r}, expected {first_line(expected)!r}")
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
