"""``course nbgrader``: the exercises as an nbgrader course, graded by nbgrader itself.

One assignment (lesson 04) is released with ``nbgrader generate_assignment`` and three
submissions (right, wrong with a tampered check cell, blank) are graded with ``nbgrader
autograde``; the scores come from nbgrader's gradebook.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_lib import exercise_system as ex
from course_lib.exercise_system.cli import main
from course_lib.exercise_system.nbgrader_export import nbgrader_notebook

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
ASSIGNMENT = "04_masking"
POINTS = 2


def test_every_lesson_exports_solution_and_test_cells():
    for path in ex.lesson_notebooks(SOLUTIONS).values():
        solved = ex.read_notebook(path)
        exported = nbgrader_notebook(solved, points=POINTS)
        ids = [cell.metadata["nbgrader"]["grade_id"] for cell in exported.cells if "nbgrader" in cell.metadata]
        assert len(ids) == len(set(ids)), f"{path.name}: grade ids repeat"
        for before, after in zip(solved.cells, exported.cells, strict=True):
            assert after.source == before.source
            meta = after.metadata.get("nbgrader")
            if ex.solution_cell_exercise(before):
                assert meta == {
                    "solution": True,
                    "grade": False,
                    "locked": False,
                    "grade_id": meta["grade_id"],
                    "schema_version": 3,
                }
                assert ex.BEGIN_SOLUTION in after.source and ex.END_SOLUTION in after.source
            elif ex.check_cell_exercise(before):
                assert meta["grade"] and meta["locked"] and not meta["solution"] and meta["points"] == POINTS
                assert "from course_lib.checks import check_" in after.source  # the same checkers
            if after.cell_type == "code":
                assert not after.outputs


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the nbgrader command of this Python (it calls `alembic` from the same folder)."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]))
    command = [str(bin_dir / "nbgrader"), *args, "--force"]
    done = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def answer_without_markers(source: str) -> str:
    """A solution cell as a student would write it: the BEGIN/END lines gone."""
    return "\n".join(line for line in source.splitlines() if line.strip() not in (ex.BEGIN_SOLUTION, ex.END_SOLUTION))


def submission(release: Path, answers: dict[str, str], checks: dict[str, str] | None = None):
    nb = ex.read_notebook(release)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        match = re.fullmatch(r"(answer|check)-(\d\d)-(\d+)", grade_id)
        if not match:
            continue
        exercise = f"{match.group(2)}.{match.group(3)}"
        if match.group(1) == "answer" and exercise in answers:
            cell.source = answers[exercise]
        if match.group(1) == "check" and checks and exercise in checks:
            cell.source = checks[exercise]
    return nb


def test_nbgrader_generates_and_autogrades_right_wrong_and_blank(tmp_path):
    pytest.importorskip("nbgrader", reason='nbgrader is not installed (pip install -e ".[dev]")')
    course = tmp_path / "course"
    code = main(["--solutions", str(SOLUTIONS), "nbgrader", str(course), "--lessons", "4", "--points", str(POINTS)])
    assert code == 0
    nbgrader(course, "generate_assignment", ASSIGNMENT)
    release = course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    text = release.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "return torch.ones(T, T, dtype=torch.bool).tril()" not in text

    solved = ex.read_notebook(SOLUTIONS / f"{ASSIGNMENT}.ipynb")
    right = {ex.solution_cell_exercise(c): answer_without_markers(c.source) for c in solved.cells}
    right.pop(None, None)
    inverted = "def causal_mask(T):\n    return ~torch.ones(T, T, dtype=torch.bool).tril()"
    faked = {"04.1": "print('✓ 04.1 causal_mask: correct')"}  # nbgrader puts the locked check cell back
    submissions = {
        "right": submission(release, right),
        "wrong": submission(release, {**right, "04.1": inverted}, checks=faked),
        "blank": submission(release, {}),
    }
    for student, nb in submissions.items():
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / f"{ASSIGNMENT}.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
    nbgrader(course, "autograde", ASSIGNMENT)

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {student: gradebook.find_submission(ASSIGNMENT, student).score for student in submissions}
        max_score = gradebook.find_assignment(ASSIGNMENT).max_score
    assert max_score == 3 * POINTS
    # "wrong": 04.1 fails, and so does 04.3, which calls the wrong causal_mask; only 04.2 scores.
    assert scores == {"right": 3 * POINTS, "wrong": POINTS, "blank": 0}, scores
