"""The exercises as an nbgrader course, for graded courses at scale.

``course nbgrader DIR`` writes ``DIR/source/<assignment>/<notebook>.ipynb`` for each lesson with
exercises (the assignment is the notebook's name without ``.ipynb``, e.g. ``04_masking``), and a
``DIR/nbgrader_config.py`` if there is none. In each notebook

* a solution cell becomes an nbgrader *solution cell*: its ``### BEGIN SOLUTION`` /
  ``### END SOLUTION`` region is kept, and ``nbgrader generate_assignment`` replaces it with
  ``raise NotImplementedError()`` in the students' version;
* a check cell becomes a read-only *autograded test cell* worth ``points``: it calls the same
  ``course_lib.checks`` checker, which raises when the answer is wrong;
* the course's other code cells (set-up, demos) become read-only cells;
* outputs are cleared (nbgrader would clear them anyway).

nbgrader keeps the release version in its database: at ``autograde`` time it puts back the
read-only and test cells as released, so a student cannot change a check. And the answers stay
with the instructor: nbgrader releases only the students' version.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from course_lib.exercise_system.notebooks import (
    NBFORMAT_MINOR,
    NOTEBOOK_METADATA_KEPT,
    check_cell_exercise,
    lesson_notebooks,
    read_notebook,
    solution_cell_exercise,
)

SCHEMA_VERSION = 3
CONFIG = '''"""nbgrader configuration for the course (written by `course nbgrader`)."""

c = get_config()  # noqa: F821 - nbgrader provides it
c.CourseDirectory.course_id = "transformer-course"
# Students graded for the first time are added to the gradebook.
c.Autograde.create_student = True
'''


def grade_id(kind: str, exercise: str) -> str:
    """``check-04-1``: nbgrader ids are letters, digits, ``-`` and ``_``."""
    return f"{kind}-{exercise.replace('.', '-')}"


def nbgrader_metadata(solution: bool, grade: bool, locked: bool, cell_id: str, points: int | None = None) -> dict:
    metadata = {
        "solution": solution,
        "grade": grade,
        "locked": locked,
        "grade_id": cell_id,
        "schema_version": SCHEMA_VERSION,
    }
    if points is not None:
        metadata["points"] = points
    return metadata


def nbgrader_notebook(solution_nb, points: int = 1) -> nbformat.NotebookNode:
    """The nbgrader source version of one solution notebook (a new object)."""
    cells = []
    for index, cell in enumerate(solution_nb.cells):
        metadata = {key: value for key, value in cell.get("metadata", {}).items() if key != "execution"}
        if cell.cell_type != "code":
            new = nbformat.v4.new_markdown_cell(cell.source, metadata=metadata)
            if cell.cell_type == "raw":
                new = nbformat.v4.new_raw_cell(cell.source, metadata=metadata)
            cells.append(new)
            continue
        exercise = solution_cell_exercise(cell)
        checked = check_cell_exercise(cell)
        if exercise:
            metadata["nbgrader"] = nbgrader_metadata(True, False, False, grade_id("answer", exercise))
        elif checked:
            metadata["nbgrader"] = nbgrader_metadata(False, True, True, grade_id("check", checked), points)
        else:
            metadata["nbgrader"] = nbgrader_metadata(False, False, True, f"course-cell-{index:02d}")
        cells.append(nbformat.v4.new_code_cell(cell.source, metadata=metadata))
    for index, cell in enumerate(cells):
        cell["id"] = f"cell-{index:02d}"
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.nbformat_minor = NBFORMAT_MINOR
    nb.metadata = {key: solution_nb.metadata[key] for key in NOTEBOOK_METADATA_KEPT if key in solution_nb.metadata}
    return nb


def export_course(
    solutions_dir: Path, course_dir: Path, lessons: list[str] | None = None, points: int = 1
) -> list[Path]:
    """Write the nbgrader course; return the notebooks written (one per assignment)."""
    if points < 1:
        raise ValueError(f"--points must be 1 or more, got {points}")
    solutions = lesson_notebooks(solutions_dir)
    if lessons:
        unknown = sorted(set(lessons) - set(solutions))
        if unknown:
            raise ValueError(
                f"unknown lesson(s) {', '.join(unknown)}; the solutions have {', '.join(sorted(solutions))}"
            )
        solutions = {lesson: solutions[lesson] for lesson in lessons}
    course_dir = Path(course_dir)
    written = []
    for path in solutions.values():
        solution_nb = read_notebook(path)
        if not any(solution_cell_exercise(cell) for cell in solution_nb.cells):
            continue
        target = course_dir / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(nbformat.writes(nbgrader_notebook(solution_nb, points)) + "\n", encoding="utf-8")
        written.append(target)
    if not written:
        raise ValueError("no exercises in the lessons asked for")
    config = course_dir / "nbgrader_config.py"
    if not config.exists():
        config.write_text(CONFIG, encoding="utf-8")
    return written
