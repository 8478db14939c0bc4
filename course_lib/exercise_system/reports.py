"""What grading produces: verdicts, the journal written as students finish, and the report files.

``course grade DIR --out PREFIX`` writes

* ``PREFIX.jsonl``: the journal, one line per student, appended (and flushed to disk) as each
  student is finished; ``--resume`` continues from it, and the other files are made from it;
* ``PREFIX.csv``: student x exercise (``pass``, ``fail``, ``flagged`` or ``depends on 04.1``) and
  the total;
* ``PREFIX.md``: the same table, why each exercise failed, what was flagged, which files were graded;
* ``PREFIX_details.csv``: one row per student and exercise, with the file graded and the reason;
* ``PREFIX_feedback/<student>.md``: one page per student naming each mistake and its hint.

Text from students (folder names, exception messages) is escaped: a cell that a spreadsheet would
read as a formula (``=HYPERLINK(...)``) gets a leading ``'``, and markdown and HTML characters are
escaped in ``PREFIX.md``. ``digest_lines`` gives the SHA-256 of each file, printed by the command so
that a later change to the files shows.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")


@dataclass
class ExerciseResult:
    """The verdict on one exercise: passed or not, and why (the checker's whole message, without its hint).

    ``status`` refines the verdict for the class grader: ``flagged`` (no marks: the code tampers
    with the grading) or ``depends on 04.1`` (right, but only with the course's version of an
    earlier exercise the learner got wrong; it counts as a pass). Empty: plain pass or fail.
    """

    exercise: str
    passed: bool
    message: str = ""
    hint: str = ""  # the checker's "Hint: ..." line, when it gave one
    status: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return self.status or ("pass" if self.passed else "fail")


@dataclass
class NotebookReport:
    """All verdicts for one notebook, plus a problem that concerns the whole notebook."""

    lesson: str
    results: dict[str, ExerciseResult] = field(default_factory=dict)
    problem: str = ""


@dataclass
class GradedFile:
    """Which file was graded for a lesson, its SHA-256, and how it was found."""

    file: str  # relative to the student's folder; "" when none was found
    sha256: str = ""
    note: str = ""


@dataclass
class StudentRecord:
    """Everything graded for one student: one line of the journal."""

    student: str
    files: dict[str, GradedFile] = field(default_factory=dict)  # lesson -> file
    results: dict[str, ExerciseResult] = field(default_factory=dict)  # exercise -> verdict

    def to_json(self) -> str:
        return json.dumps(
            {
                "student": self.student,
                "files": {lesson: asdict(graded) for lesson, graded in self.files.items()},
                "results": {exercise: asdict(result) for exercise, result in self.results.items()},
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> StudentRecord:
        data = json.loads(text)
        return cls(
            data["student"],
            {lesson: GradedFile(**graded) for lesson, graded in data["files"].items()},
            {exercise: ExerciseResult(**result) for exercise, result in data["results"].items()},
        )


# ----------------------------------------------------------------------------------------------
# The journal
# ----------------------------------------------------------------------------------------------


class Journal:
    """``PREFIX.jsonl``: one line per finished student, appended and flushed at once."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def records(self) -> dict[str, StudentRecord]:
        """The students already graded (the last line wins); a torn last line is ignored."""
        found = {}
        if not self.path.is_file():
            return found
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = StudentRecord.from_json(line)
            except (ValueError, KeyError, TypeError):
                continue
            found[record.student] = record
        return found

    def start_afresh(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("", encoding="utf-8")

    def append(self, record: StudentRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as journal:
            journal.write(record.to_json() + "\n")
            journal.flush()
            os.fsync(journal.fileno())


# ----------------------------------------------------------------------------------------------
# Escaping what students wrote
# ----------------------------------------------------------------------------------------------


def csv_safe(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: a leading ``'`` before ``=``, ``+``, ``-``, ``@``."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_START) else text


def markdown_safe(text: str) -> str:
    """Text for one line of markdown: HTML and markdown characters escaped, line breaks as spaces."""
    text = " ".join(str(text).split())
    return MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def file_name_for(student: str) -> str:
    """A safe file name for a student's feedback page."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", student).strip("._") or "student"
    return name[:80]


# ----------------------------------------------------------------------------------------------
# The tables
# ----------------------------------------------------------------------------------------------


@dataclass
class GradeTable:
    """Student x exercise verdicts, with the files graded and the notes that explain the verdicts."""

    exercises: list[str]
    rows: dict[str, dict[str, ExerciseResult]]
    files: dict[str, dict[str, GradedFile]] = field(default_factory=dict)

    @classmethod
    def from_records(cls, exercises: list[str], records: list[StudentRecord]) -> GradeTable:
        rows, files = {}, {}
        for record in sorted(records, key=lambda r: r.student):
            rows[record.student] = {
                exercise: record.results.get(exercise) or ExerciseResult(exercise, False, "not graded")
                for exercise in exercises
            }
            files[record.student] = record.files
        return cls(exercises, rows, files)

    def total(self, student: str) -> int:
        return sum(result.passed for result in self.rows[student].values())

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["student", *self.exercises, "total"])
        for student, results in self.rows.items():
            cells = [results[exercise].verdict for exercise in self.exercises]
            writer.writerow([csv_safe(student), *cells, self.total(student)])
        return buffer.getvalue()

    def details_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["student", "exercise", "result", "file", "reason", "hint"])
        for student, results in self.rows.items():
            for exercise in self.exercises:
                result = results[exercise]
                graded = self.files.get(student, {}).get(exercise.split(".")[0])
                reason = " ".join([result.message, *result.notes]).strip()
                row = [student, exercise, result.verdict, graded.file if graded else "", reason, result.hint]
                writer.writerow([csv_safe(cell) for cell in row])
        return buffer.getvalue()

    def to_markdown(self) -> str:
        n = len(self.exercises)
        lines = [
            "| student | " + " | ".join(self.exercises) + " | total |",
            "|---|" + "---|" * n + "---|",
        ]
        for student, results in self.rows.items():
            marks = [markdown_safe(results[exercise].verdict) for exercise in self.exercises]
            lines.append(f"| {markdown_safe(student)} | " + " | ".join(marks) + f" | {self.total(student)}/{n} |")
        flagged = self._notes(lambda result: result.status == "flagged")
        failed = self._notes(lambda result: not result.passed and result.status != "flagged")
        depends = self._notes(lambda result: result.status.startswith("depends on"))
        if flagged:
            lines += ["", "Flagged (no marks; read the code before deciding):", "", *flagged]
        if failed:
            lines += ["", "Why exercises failed:", "", *failed]
        if depends:
            lines += ["", "Right only with the course's version of an earlier exercise (counted as a pass):", ""]
            lines += depends
        graded = [
            f"- {markdown_safe(student)}, lesson {lesson}: {markdown_safe(item.note)}"
            for student, per_lesson in self.files.items()
            for lesson, item in sorted(per_lesson.items())
            if item.note
        ]
        if graded:
            lines += ["", "Files graded:", "", *graded]
        return "\n".join(lines) + "\n"

    def _notes(self, keep) -> list[str]:
        return [
            f"- {markdown_safe(student)}, {exercise}: {markdown_safe(results[exercise].message)}"
            for student, results in self.rows.items()
            for exercise in self.exercises
            if keep(results[exercise])
        ]

    def feedback(self, student: str) -> str:
        """A page for one student: each exercise, what went wrong and the hint, and the files graded."""
        results = self.rows[student]
        lines = [f"# Feedback: {markdown_safe(student)}", ""]
        lines.append(f"{self.total(student)} of {len(self.exercises)} exercises pass.")
        files = self.files.get(student, {})
        if files:
            lines += ["", "Files graded:", ""]
            for lesson, item in sorted(files.items()):
                what = f"`{item.file}`" if item.file else "none found"
                extra = f" ({markdown_safe(item.note)})" if item.note else ""
                lines.append(f"- lesson {lesson}: {what}{extra}")
        lines += ["", "| exercise | result | what to look at |", "|---|---|---|"]
        for exercise in self.exercises:
            result = results[exercise]
            detail = " ".join(filter(None, [result.message, result.hint, *result.notes]))
            lines.append(f"| {exercise} | {markdown_safe(result.verdict)} | {markdown_safe(detail)} |")
        failing = [exercise for exercise in self.exercises if not results[exercise].passed]
        if failing:
            lines += ["", f"Stuck? `course hint {failing[0]}` gives a hint, one stronger each time."]
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Writing the files
# ----------------------------------------------------------------------------------------------


def report_paths(prefix: Path) -> dict[str, Path]:
    prefix = Path(prefix)
    return {
        "journal": Path(f"{prefix}.jsonl"),
        "csv": Path(f"{prefix}.csv"),
        "markdown": Path(f"{prefix}.md"),
        "details": Path(f"{prefix}_details.csv"),
        "feedback": Path(f"{prefix}_feedback"),
    }


def write_reports(prefix: Path, table: GradeTable) -> list[Path]:
    """Write the CSV, markdown, details and feedback files; return the files written."""
    paths = report_paths(prefix)
    paths["csv"].parent.mkdir(parents=True, exist_ok=True)
    written = []
    for key, text in (("csv", table.to_csv()), ("markdown", table.to_markdown()), ("details", table.details_csv())):
        paths[key].write_text(text, encoding="utf-8", newline="")
        written.append(paths[key])
    paths["feedback"].mkdir(exist_ok=True)
    used = set()
    for student in table.rows:
        name = file_name_for(student)
        while name in used:
            name += "_"
        used.add(name)
        page = paths["feedback"] / f"{name}.md"
        page.write_text(table.feedback(student), encoding="utf-8")
        written.append(page)
    return written


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digest_lines(paths: list[Path]) -> list[str]:
    """``sha256sum``-style lines (``<digest>  <path>``), so ``sha256sum -c`` can check them later."""
    return [f"{sha256_of(path)}  {path}" for path in paths]
