"""``course grade`` on a class of honest and hostile students (``tests/fixtures/class/``).

The class is graded once (lesson 04, two jobs) and every student's verdicts are checked: the
tricks seen in a workshop (a faked check, monkeypatched checkers, copying a classmate's or the
instructor's answers, overwriting a classmate's notebook, an IPython start-up file, a detached
process rewriting grades.csv) get no marks, and honest work (debug prints, warnings, a renamed
notebook, a -Copy1) always does. The other tests are quick unit tests of the pieces.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import subprocess
import time
import tomllib
from pathlib import Path

import nbformat
import pytest

from course_lib import exercise_system as ex
from course_lib.exercise_system import integrity, reports, submissions
from course_lib.exercise_system.cli import main
from course_lib.exercise_system.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "class"
LESSON = "04_masking.ipynb"


# ----------------------------------------------------------------------------------------------
# Building the class from the fixture
# ----------------------------------------------------------------------------------------------


def students() -> dict[str, dict]:
    return {path.stem: tomllib.loads(path.read_text(encoding="utf-8")) for path in sorted(FIXTURE.glob("*.toml"))}


def student_notebook(spec: dict) -> nbformat.NotebookNode:
    """The course's lesson 04 notebook (solved or stubs), with the spec's cells replaced."""
    solved = ex.read_notebook(SOLUTIONS / LESSON)
    nb = solved if spec.get("start", "solutions") == "solutions" else ex.build_exercise_notebook(solved)
    for cell in nb.cells:
        exercise = ex.exercise_of_cell(cell)
        if exercise in spec.get("answers", {}):
            cell.source = spec["answers"][exercise].strip("\n")
        checked = ex.check_cell_exercise(cell)
        if checked in spec.get("checks", {}):
            cell.source = spec["checks"][checked].strip("\n")
    if "preamble" in spec:
        first_code = next(index for index, cell in enumerate(nb.cells) if cell.cell_type == "code")
        nb.cells.insert(first_code + 1, nbformat.v4.new_code_cell(spec["preamble"].strip("\n")))
    return nb


def build_class(class_dir: Path) -> dict[str, dict]:
    """Write one folder per student (plus junk that is not a student); return name -> spec."""
    specs = {}
    for name, spec in students().items():
        folder = class_dir / spec.get("folder", name)
        folder.mkdir(parents=True)
        for notebook in spec.get("notebooks", [spec]):
            text = nbformat.writes(student_notebook(notebook))
            (folder / notebook.get("file", LESSON)).write_text(text, encoding="utf-8")
        specs[folder.name] = spec
    junk = class_dir / "__MACOSX" / "zoe_honest"
    junk.mkdir(parents=True)
    (junk / f"._{LESSON}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    hidden = class_dir / ".instructor"
    hidden.mkdir()
    (hidden / LESSON).write_text(nbformat.writes(student_notebook({})), encoding="utf-8")
    return specs


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade the fixture class once; wait for any detached process to have had its chance."""
    root = tmp_path_factory.mktemp("class")
    class_dir, real_ipython, prefix = root / "class", root / "real_ipython", root / "out" / "grades"
    specs = build_class(class_dir)
    before = {path: sha256(path) for path in class_dir.rglob("*.ipynb")}
    env = {
        "FIXTURE_CLASS_DIR": str(class_dir),
        "FIXTURE_OUT_PREFIX": str(prefix),
        "FIXTURE_REAL_IPYTHONDIR": str(real_ipython),
        "IPYTHONDIR": str(real_ipython),
    }
    output = io.StringIO()
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(output):
        for key, value in env.items():
            patch.setenv(key, value)
        code = main(
            ["--solutions", str(SOLUTIONS), "grade", str(class_dir), "--out", str(prefix), "--lessons", "04"]
            + ["--timeout", "5", "--jobs", "2"]
        )
    seconds = time.monotonic() - started
    time.sleep(4)  # lee_detached's processes would write after 3 s
    rows = {row["student"]: row for row in csv.DictReader(io.StringIO(Path(f"{prefix}.csv").read_text()))}
    details = list(csv.DictReader(io.StringIO(Path(f"{prefix}_details.csv").read_text())))
    return {
        "code": code,
        "out": output.getvalue(),
        "specs": specs,
        "rows": rows,
        "details": details,
        "markdown": Path(f"{prefix}.md").read_text(encoding="utf-8"),
        "prefix": prefix,
        "class_dir": class_dir,
        "before": before,
        "real_ipython": real_ipython,
        "seconds": seconds,
    }


# ----------------------------------------------------------------------------------------------
# The class
# ----------------------------------------------------------------------------------------------


def test_every_student_gets_the_expected_verdicts(graded):
    assert graded["code"] == 0, graded["out"]
    wrong = []
    for folder, spec in graded["specs"].items():
        row = graded["rows"][reports.csv_safe(folder)]
        for exercise, expected in spec["expect"].items():
            if row[exercise] != expected:
                wrong.append(f"{folder} {exercise}: {row[exercise]!r}, expected {expected!r}")
    reasons = {(row["student"], row["exercise"]): row["reason"] for row in graded["details"]}
    for folder, spec in graded["specs"].items():
        for exercise, part in spec.get("reason", {}).items():
            reason = reasons[(reports.csv_safe(folder), exercise)]
            if part not in reason:
                wrong.append(f"{folder} {exercise}: reason {reason!r} lacks {part!r}")
    assert not wrong, "\n".join(wrong) + "\n\n" + graded["markdown"]
    print(f"graded {len(graded['rows'])} students in {graded['seconds']:.1f} s")


def test_totals_count_passes_and_dependent_passes(graded):
    rows = graded["rows"]
    assert rows["zoe_honest"]["total"] == "3"
    assert rows["ned_dependent"]["total"] == "2"  # 04.2, and 04.3 (right with the course's 04.1)
    assert rows["fay_monkeypatch"]["total"] == "0"


def test_junk_and_hidden_folders_are_not_students(graded):
    assert set(graded["rows"]) == {reports.csv_safe(folder) for folder in graded["specs"]}


def test_nothing_outside_a_run_was_changed(graded):
    after = {path: sha256(path) for path in graded["class_dir"].rglob("*.ipynb")}
    assert after == graded["before"], "a student's code changed the class folder"
    assert not graded["real_ipython"].exists(), "a start-up file reached the real IPython folder"
    csv_path = Path(f"{graded['prefix']}.csv")
    assert "hacked" not in csv_path.read_text()
    printed = {line.split()[1]: line.split()[0] for line in graded["out"].splitlines() if line.startswith("  ")}
    assert printed[str(csv_path)] == sha256(csv_path), "grades.csv changed after the grader printed its digest"
    leftovers = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "echo hacked" not in leftovers


def test_the_report_names_the_files_graded(graded):
    markdown = graded["markdown"]
    assert "cat\\_renamed, lesson 04: graded my work (final).ipynb (found by its content" in markdown
    assert "dan\\_copy1, lesson 04: graded 04\\_masking-Copy1.ipynb" in markdown
    assert "not graded: 04\\_masking.ipynb" in markdown
    files = {(row["student"], row["file"]) for row in graded["details"]}
    assert ("dan_copy1", "04_masking-Copy1.ipynb") in files


def test_student_text_is_escaped(graded):
    formula = '=HYPERLINK("evil.example","click me")'
    assert "'" + formula in graded["rows"]
    raw = Path(f"{graded['prefix']}.csv").read_text()
    assert "\n=HYPERLINK" not in raw and "\"'=HYPERLINK" in raw
    markdown = graded["markdown"]
    assert "<img" not in markdown and "&lt;img src=x onerror=alert(1)&gt; \\| \\`code\\` \\*bold\\*" in markdown


def test_feedback_pages_name_the_mistake_and_the_hint(graded):
    page = (Path(f"{graded['prefix']}_feedback") / "ned_dependent.md").read_text()
    assert "| 04.1 | fail | 04.1 causal\\_mask" in page and "Hint:" in page
    assert "| 04.3 | depends on 04.1 | right with the course's version of 04.1" in page
    assert "`course hint 04.1`" in page
    names = {path.name for path in Path(f"{graded['prefix']}_feedback").iterdir()}
    assert "HYPERLINK_evil.example_click_me.md" in names


def test_the_journal_has_one_line_per_student(graded):
    lines = Path(f"{graded['prefix']}.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["student"] for line in lines) == sorted(graded["specs"])


# ----------------------------------------------------------------------------------------------
# The pieces
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("import course_lib.checks as c\nc.check_causal_mask = print", "changes course_lib.checks.check_causal_mask"),
        ("from course_lib import checks\nsetattr(checks, 'check_x', print)", "changes course_lib.checks.check_x"),
        ("import course_lib\ncourse_lib.checks._machinery._close = max", "changes course_lib.checks._machinery._close"),
        ("from course_lib.checks import check_pad_batch\ncheck_pad_batch.__code__ = None", "changes course_lib"),
        ("import sys\nsys.modules['course_lib.checks'] = None", "replaces a module in sys.modules"),
        ("import builtins\nbuiltins.print = len", "changes builtins.print"),
        ("__import__('course_lib.checks').checks.check_x = 1", "changes course_lib.checks"),
        ("from unittest import mock\nmock.patch('course_lib.checks.check_x').start()", "patches course_lib"),
        ("exec('import course_lib.checks as c; c.check_x = 1')", "changes course_lib.checks.check_x"),
        ("open('../solutions/04_masking.ipynb')", "reads the course's solutions"),
        ("from course_lib.exercise_system import default_solutions_dir", "solutions"),
    ],
)
def test_the_scan_finds_tampering(source, reason):
    assert any(reason in found for found in integrity.suspicious(source)), integrity.suspicious(source)


def test_the_scan_leaves_honest_code_alone():
    honest = [
        "import sys\nsys.stdout.write('x')\nsys.path.append('.')",
        "import torch\ntorch.manual_seed(0)\nx = torch.ones(3)\nx[0] = 2",
        "from course_lib.checks import check_causal_mask\ncheck_causal_mask(causal_mask)",
        "%timeit sum(range(10))\n!echo hi",
    ]
    for source in honest:
        assert integrity.suspicious(source) == [], source
    for plan in submissions.lesson_plans(SOLUTIONS).values():
        for exercise, source in plan.references.items():
            assert integrity.suspicious(source) == [], exercise
            assert not integrity.uses_reference(source, plan.titles[exercise]), exercise


def test_answer_cells_are_matched_by_exercise_id_and_position():
    plan = submissions.lesson_plan(SOLUTIONS / LESSON)
    nb = ex.build_exercise_notebook(ex.read_notebook(SOLUTIONS / LESSON))
    nb.cells.insert(2, nbformat.v4.new_code_cell("HELPER = 1"))  # above the first exercise: the preamble
    nb.cells.append(nbformat.v4.new_code_cell("print(decoder_self_mask)"))  # after the last check: 04.3's
    check_41 = next(i for i, cell in enumerate(nb.cells) if ex.check_cell_exercise(cell) == "04.1")
    nb.cells.insert(check_41 + 1, nbformat.v4.new_code_cell("causal_mask(3)"))  # after 04.1's check: 04.1's
    preamble, answers = submissions.split_answers(nb, plan)
    assert [cell.source for cell in preamble] == ["HELPER = 1"]
    assert [cell.source for cell in answers["04.1"]][1:] == ["causal_mask(3)"]
    assert [cell.source for cell in answers["04.3"]][1:] == ["print(decoder_self_mask)"]
    assert all("Check exercise" not in cell.source for cells in answers.values() for cell in cells)
    stubs = submissions.LearnerWork(None, preamble=preamble, answers=answers)
    assert submissions.exercise_dependencies(plan, stubs) == {"04.1": [], "04.2": [], "04.3": []}  # stubs use nothing
    preamble, answers = submissions.split_answers(ex.read_notebook(SOLUTIONS / LESSON), plan)
    solved = submissions.LearnerWork(None, preamble=preamble, answers=answers)
    assert submissions.exercise_dependencies(plan, solved) == {"04.1": [], "04.2": [], "04.3": ["04.1", "04.2"]}


def test_escaping_for_spreadsheets_and_markdown():
    assert reports.csv_safe("=1+1") == "'=1+1" and reports.csv_safe("-2") == "'-2" and reports.csv_safe("ok") == "ok"
    assert reports.markdown_safe("a | b\n<script>") == "a \\| b &lt;script&gt;"


def test_the_sandbox_kills_processes_a_run_leaves_behind(tmp_path):
    """With the process guard off, a run starts a detached process: it must not survive the run."""
    folder = tmp_path / "runs" / "1"
    folder.mkdir(parents=True)
    marker = tmp_path / "survivor"
    code = (
        "import os, subprocess, time\n"
        f"subprocess.Popen(['sh', '-c', 'sleep 2; touch {marker}'], start_new_session=True)\n"
        "if os.fork() == 0:\n    os.setsid()\n    time.sleep(2)\n"
        f"    open({str(marker)!r}, 'w').close()\n    os._exit(0)\n"
    )
    request = {
        "exercise": "01.1",
        "cells": [{"label": "01.1", "source": code, "learner": True}],
        "check": "print('✓ 01.1 ok')",
        "timeout": 10,
        "threads": 1,
        "guard": {"folder": str(folder), "forbidden": [], "protected": [], "block": False},
    }
    with Sandbox(tmp_path / "host", []) as sandbox:
        outcome = sandbox.run(request)
    assert outcome["result"]["passed"], outcome
    time.sleep(3)
    assert not marker.exists(), "a process left behind by the run survived it"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_the_sandbox_host_is_single_threaded_enough_to_fork(tmp_path):
    with Sandbox(tmp_path / "host", ["torch"]) as sandbox:
        threads = len(os.listdir(f"/proc/{sandbox.process.pid}/task"))
    assert threads <= 2  # the main thread and, at most, one idle thread torch starts on import
