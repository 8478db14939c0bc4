"""Exercise notebooks: build them from the solutions, run them, grade a class.

The solution notebooks in ``solutions/`` are the source of truth. In a solution notebook

* a *solution cell* carries ``metadata["course"] = {"exercise": "03.2", "title": ...}`` and marks
  each answer with ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines;
* a *check cell* starts with the comment ``# Check exercise 03.2`` and calls
  ``course_lib.checks.check_<name>(...)``, which prints one line when the answer is right.

``build_exercise_notebook`` turns a solution notebook into an exercise notebook: each marked
region becomes ``raise NotImplementedError("Exercise 03.2: ...")`` and everything else, the
stored outputs of the check cells included, stays as the solved run made it. So
``pytest --nbval exercises/03_*.ipynb`` fails exactly until the learner's work is right.

``run_notebook`` executes a learner's notebook cell by cell in a fresh kernel (with a time
limit for the whole notebook) and gives one verdict per exercise, the same verdict nbval
gives: the check cell must run without error and print what the solved run printed.

Used by the ``course`` command (``course_lib.cli``).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
NOTEBOOK_NAME = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")
CHECK_COMMENT = re.compile(r"^\s*#\s*check\s+exercise\s+(\d\d\.\d+)\b", re.IGNORECASE | re.MULTILINE)
EXERCISE_ID = re.compile(r"^\d\d\.\d+$")
NOTEBOOK_METADATA_KEPT = ("kernelspec", "language_info")
NBFORMAT_MINOR = 5


# ----------------------------------------------------------------------------------------------
# Where things are
# ----------------------------------------------------------------------------------------------


def course_root() -> Path:
    """The course folder: the parent of the ``course_lib`` package (an editable install)."""
    return Path(__file__).resolve().parent.parent


def default_solutions_dir() -> Path:
    """``solutions/`` of the current folder if there is one, else the course folder's."""
    here = Path("solutions")
    return here if here.is_dir() else course_root() / "solutions"


def lesson_notebooks(folder: Path) -> dict[str, Path]:
    """Map lesson number ("03") to the notebook ``NN_*.ipynb`` in ``folder``."""
    found = {}
    for path in sorted(Path(folder).glob("*.ipynb")):
        match = NOTEBOOK_NAME.match(path.name)
        if match:
            found[match.group(1)] = path
    return found


def lesson_of(exercise_id: str) -> str:
    """ "03.2" -> "03"."""
    return exercise_id.split(".")[0]


def exercise_sort_key(exercise_id: str) -> tuple[int, int]:
    lesson, number = exercise_id.split(".")
    return int(lesson), int(number)


# ----------------------------------------------------------------------------------------------
# Reading notebooks
# ----------------------------------------------------------------------------------------------


class NotebookUnreadable(ValueError):
    """The file is missing, is not JSON, or is not a Jupyter notebook."""


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook, raising ``NotebookUnreadable`` with a plain message when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise NotebookUnreadable(f"notebook missing: {path.name}")
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotebookUnreadable(f"not a notebook (invalid JSON): {path.name}: {error}") from None
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises several kinds of errors on malformed files
        raise NotebookUnreadable(f"not a notebook: {path.name}: {first_line(error)}") from None
    if not isinstance(nb.get("cells"), list):
        raise NotebookUnreadable(f"not a notebook (no cells): {path.name}")
    return nb


def cell_course_metadata(cell) -> dict:
    """The ``course`` entry of a cell's metadata ({} when absent)."""
    value = cell.get("metadata", {}).get("course", {})
    return value if isinstance(value, dict) else {}


def check_cell_exercise(cell) -> str | None:
    """The exercise id a check cell checks ("03.2"), read from its ``# Check exercise 03.2`` line."""
    if cell.get("cell_type") != "code":
        return None
    match = CHECK_COMMENT.search(cell.get("source", ""))
    return match.group(1) if match else None


def solution_cell_exercise(cell) -> str | None:
    """The exercise id of a solution cell (a code cell with ``### BEGIN SOLUTION``)."""
    if cell.get("cell_type") != "code" or BEGIN_SOLUTION not in cell.get("source", ""):
        return None
    exercise = cell_course_metadata(cell).get("exercise")
    if not isinstance(exercise, str) or not EXERCISE_ID.match(exercise):
        raise ValueError(
            f'a solution cell needs metadata {{"course": {{"exercise": "NN.M"}}}}, got {cell.get("metadata")!r}'
        )
    return exercise


def exercise_of_cell(cell) -> str | None:
    """The exercise id in a code cell's metadata (solution cells and their stubs), else None."""
    if cell.get("cell_type") != "code":
        return None
    exercise = cell_course_metadata(cell).get("exercise")
    return exercise if isinstance(exercise, str) else None


def text_of_outputs(outputs) -> str:
    """The text nbval compares: streams and ``text/plain`` results, in order; errors as their name."""
    parts = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(output.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
        elif kind == "error":
            parts.append(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}")
    return "".join(parts)


def expected_check_outputs(solution_nb) -> dict[str, str]:
    """Exercise id -> the text its check cell printed in the solved run, in notebook order."""
    expected = {}
    for cell in solution_nb.cells:
        exercise = check_cell_exercise(cell)
        if exercise:
            expected[exercise] = text_of_outputs(cell.get("outputs", []))
    return expected


def exercise_titles(solution_nb) -> dict[str, str]:
    """Exercise id -> title (from the solution cells' metadata)."""
    titles = {}
    for cell in solution_nb.cells:
        exercise = solution_cell_exercise(cell)
        if exercise:
            titles.setdefault(exercise, cell_course_metadata(cell).get("title", exercise))
    return titles


# ----------------------------------------------------------------------------------------------
# Building exercise notebooks from solutions
# ----------------------------------------------------------------------------------------------


def stub_source(source: str, exercise: str) -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region by a stub that raises.

    The stub keeps the indentation of the ``BEGIN`` line, so a region inside a function or
    method body becomes that body. Lines outside the regions (signatures, class skeletons)
    stay for the learner to see.
    """
    lines = source.split("\n")
    result = []
    inside = False
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == BEGIN_SOLUTION:
            if inside:
                raise ValueError(f"exercise {exercise}: nested {BEGIN_SOLUTION} on line {number}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            result.append(f"{indent}# Your code here: replace the line below.")
            result.append(
                f'{indent}raise NotImplementedError("Exercise {exercise}: not implemented yet (write your code here)")'
            )
        elif stripped == END_SOLUTION:
            if not inside:
                raise ValueError(f"exercise {exercise}: {END_SOLUTION} without {BEGIN_SOLUTION} on line {number}")
            inside = False
        elif not inside:
            result.append(line)
    if inside:
        raise ValueError(f"exercise {exercise}: {BEGIN_SOLUTION} without {END_SOLUTION}")
    return "\n".join(result)


def build_exercise_notebook(solution_nb) -> nbformat.NotebookNode:
    """The exercise notebook for one solution notebook (a new object; the input is unchanged).

    Solution cells get stubs and lose their outputs; every other cell (check cells with their
    outputs included) is copied. Cell ids are numbered, timing metadata is dropped, so the
    result depends only on the solution notebook.
    """
    exercises_seen = set()
    cells = []
    for index, cell in enumerate(solution_nb.cells):
        metadata = {key: copy.deepcopy(value) for key, value in cell.get("metadata", {}).items() if key != "execution"}
        source = cell.get("source", "")
        exercise = solution_cell_exercise(cell)
        if cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(source, metadata=metadata)
        elif cell.cell_type == "raw":
            new = nbformat.v4.new_raw_cell(source, metadata=metadata)
        elif exercise:
            exercises_seen.add(exercise)
            new = nbformat.v4.new_code_cell(stub_source(source, exercise), metadata=metadata)
        else:
            new = nbformat.v4.new_code_cell(source, metadata=metadata)
            new.execution_count = cell.get("execution_count")
            new.outputs = copy.deepcopy(cell.get("outputs", []))
        new["id"] = f"cell-{index:02d}"
        cells.append(new)
    checked = set(expected_check_outputs(solution_nb))
    if exercises_seen != checked:
        raise ValueError(
            f"solution cells {sorted(exercises_seen)} and check cells {sorted(checked)} do not match: "
            "every exercise needs one solution cell and one check cell"
        )
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.nbformat_minor = NBFORMAT_MINOR
    nb.metadata = {key: solution_nb.metadata[key] for key in NOTEBOOK_METADATA_KEPT if key in solution_nb.metadata}
    return nb


def notebook_text(nb) -> str:
    """Stable JSON for a notebook (sorted keys, one-space indent, newline at the end)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def build_exercises(solutions_dir: Path, exercises_dir: Path, check_only: bool = False) -> list[Path]:
    """Write ``exercises_dir/NN_*.ipynb`` for every solution notebook.

    Returns the exercise notebooks that were (with ``check_only``: would be) created or changed.
    """
    solutions = lesson_notebooks(solutions_dir)
    if not solutions:
        raise FileNotFoundError(f"no solution notebooks NN_*.ipynb in {solutions_dir}")
    changed = []
    for path in solutions.values():
        try:
            text = notebook_text(build_exercise_notebook(read_notebook(path)))
        except ValueError as error:
            raise ValueError(f"{path.name}: {error}") from None
        target = Path(exercises_dir) / path.name
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current != text:
            changed.append(target)
            if not check_only:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8", newline="\n")
    return changed


# ----------------------------------------------------------------------------------------------
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


def first_line(text: str, limit: int = 160) -> str:
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


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
