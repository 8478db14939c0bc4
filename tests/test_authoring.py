"""Each lesson has one source: the notebook, paired with a MyST Markdown twin by jupytext.

A pair drifts when someone edits one side and not the other (for example a typo fixed in the
Markdown twin without re-pairing). ``python tasks.py sync`` re-pairs them; this test fails until
the two agree cell by cell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAIRED_FOLDERS = ("notebooks", "solutions")
NOTEBOOKS = sorted(path for folder in PAIRED_FOLDERS for path in (ROOT / folder).glob("*.ipynb"))


def twin_of(notebook: Path) -> Path:
    return notebook.parent / "md" / f"{notebook.stem}.md"


def cells_of(path: Path) -> list[tuple[str, str]]:
    notebook = jupytext.read(path)
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_every_paired_folder_says_how_to_pair():
    for folder in PAIRED_FOLDERS:
        config = (ROOT / folder / "jupytext.toml").read_text()
        assert re.search(r'^formats = "ipynb,md//md:myst"$', config, re.M), folder


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_notebook_and_its_text_twin_agree(notebook):
    twin = twin_of(notebook)
    assert twin.exists(), f"{twin.relative_to(ROOT)} is missing: run  python tasks.py sync"
    ours, theirs = cells_of(notebook), cells_of(twin)
    for index, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        assert a == b, (
            f"{notebook.name} and {twin.relative_to(ROOT)} differ at cell {index}: run  python tasks.py sync  "
            f"(the newer file wins)\nnotebook: {a[1][:200]!r}\ntwin:     {b[1][:200]!r}"
        )
    assert len(ours) == len(theirs), f"{notebook.name}: {len(ours)} cells, its twin {len(theirs)}"


def test_every_twin_has_its_notebook():
    for folder in PAIRED_FOLDERS:
        for twin in (ROOT / folder / "md").glob("*.md"):
            assert (ROOT / folder / f"{twin.stem}.ipynb").exists(), f"{twin} has no notebook"


def test_drift_is_detected(tmp_path):
    """The comparison above is not vacuous: a one-word edit of the twin is caught."""
    notebook = NOTEBOOKS[0]
    edited = tmp_path / "twin.md"
    text = twin_of(notebook).read_text(encoding="utf-8")
    first_word = re.search(r"^# (\w+)", text, re.M).group(1)
    edited.write_text(text.replace(f"# {first_word}", f"# {first_word}x", 1), encoding="utf-8")
    assert cells_of(edited) != cells_of(notebook)


def test_lessons_open_with_the_version_check():
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        first_code = next(cell for cell in cells if cell["cell_type"] == "code")
        source = "".join(first_code["source"])
        assert re.fullmatch(r'import course_lib\n\ncourse_lib\.require\("[0-9.]+"\)[^\n]*', source), notebook.name


def test_the_package_layout_stays_readable():
    """No module of course_lib passes about 600 lines (the issue that split them asked for this)."""
    too_long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / "course_lib").rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 650
    }
    assert not too_long, f"modules over 650 lines: {too_long}"
