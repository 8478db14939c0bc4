"""The ``course`` command: check, hint, reset, grade and build the exercise notebooks.

Run ``course --help`` (or ``python -m course_lib.exercise_system.cli --help``) for the list of commands.
Works the same on Windows, macOS and Linux: it only needs Python.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from course_lib import exercise_system as ex

DESCRIPTION = """\
Tools for the exercise notebooks of the course.

  course check [NN ...]        run your exercise notebooks and show which exercises pass
  course hint NN.M             show the next hint for an exercise (--level K for a given one)
  course reset NN              restore a fresh exercise notebook (yours is backed up first)
  course grade DIR             grade a class (formative): one folder per student -> CSV, markdown, feedback
  course nbgrader DIR          export the exercises as an nbgrader course (for marks)
  course build-exercises       regenerate exercises/ from solutions/ (course authors)
"""

HINT_STATE_FILE = ".course_hints.json"
BACKUP_FOLDER = ".backup"


def lesson_arg(text: str) -> str:
    """Accept "3", "03" or "03_self_attention" and return "03"."""
    head = text.split("_")[0]
    if not head.isdigit() or not 0 <= int(head) <= 99:
        raise argparse.ArgumentTypeError(f"expected a lesson number like 03, got {text!r}")
    return f"{int(head):02d}"


def lessons_arg(text: str) -> list[str]:
    """Accept "03,04" (or one lesson) and return ["03", "04"]."""
    return [lesson_arg(part) for part in text.split(",") if part.strip()]


class LessonsAction(argparse.Action):
    """``--lessons 03 04``, ``--lessons 03,04`` or both: one flat, sorted list without repeats."""

    def __call__(self, parser, namespace, values, option_string=None):
        lessons = set(getattr(namespace, self.dest, None) or [])
        lessons.update(lesson for group in values for lesson in group)
        setattr(namespace, self.dest, sorted(lessons))


def default_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def exercise_arg(text: str) -> str:
    """Accept "3.2" or "03.2" and return "03.2"."""
    parts = text.split(".")
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"expected an exercise id like 03.2, got {text!r}")
    return f"{int(parts[0]):02d}.{int(parts[1])}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--solutions",
        type=Path,
        default=None,
        help="folder of the solution notebooks (default: ./solutions, else the course folder's)",
    )
    # --solutions is accepted before or after the command name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--solutions", type=Path, default=argparse.SUPPRESS, help="folder of the solution notebooks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    check = commands.add_parser(
        "check",
        parents=[common],
        help="run your exercise notebooks and show which exercises pass",
        description="Run exercise notebooks in a fresh kernel each and print one line per exercise: "
        "passed, or FAILED with the checker's whole message (the failing case included) and its hint. "
        "The checker decides: a check cell fails when it raises (CheckFailed, NotImplementedError or "
        "another error) and passes otherwise, even if your code also prints or warns; the same verdict as "
        "`pytest --nbval exercises/NN_*.ipynb`. Exit status 0 when every exercise passes.",
    )
    check.add_argument("lessons", nargs="*", type=lesson_arg, metavar="NN", help="lesson numbers (default: all)")
    check.add_argument("--dir", type=Path, default=Path("exercises"), help="your exercises folder (default: exercises)")
    check.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per notebook (default: 120)")

    hint = commands.add_parser(
        "hint",
        parents=[common],
        help="show hints for an exercise, one more each time",
        description="Each exercise has 2-3 hints, from a gentle nudge to the key line. Every call shows "
        "the hints up to the next level and remembers the level reached in <dir>/.course_hints.json "
        "(delete that file to start again). --level K shows the hints up to level K and remembers K.",
    )
    hint.add_argument("exercise", type=exercise_arg, metavar="NN.M", help="exercise id, e.g. 03.2")
    hint.add_argument("--level", type=int, default=None, help="show the hints up to this level (1 = gentlest)")
    hint.add_argument("--dir", type=Path, default=Path("exercises"), help="your exercises folder (default: exercises)")

    reset = commands.add_parser(
        "reset",
        parents=[common],
        help="restore a fresh exercise notebook",
        description="Rebuild exercise notebook NN from the solutions. Your current notebook is first copied "
        "to <dir>/.backup/NN_name-YYYYmmdd-HHMMSS.ipynb, so nothing is lost.",
    )
    reset.add_argument("lesson", type=lesson_arg, metavar="NN", help="lesson number, e.g. 03")
    reset.add_argument("--dir", type=Path, default=Path("exercises"), help="your exercises folder (default: exercises)")

    grade = commands.add_parser(
        "grade",
        parents=[common],
        help="grade a folder of students' exercise notebooks (formative)",
        description="DIR holds one folder per student (hidden folders and __MACOSX are skipped) with their "
        "exercise notebooks, found by content, so a renamed or -Copy1 notebook is graded too. Only the "
        "students' answer cells are taken: the course's own check cells and checkers judge them, each "
        "exercise in a throw-away process with a private folder, HOME and IPYTHONDIR. A timeout or crash "
        "fails only its exercise; an exercise that needs an earlier one is also tried with the course's "
        "version of it (reported as 'depends on NN.M'); code that rebinds the checkers, reads the "
        "solutions, starts processes or writes outside its folder is 'flagged' (no marks). Writes "
        "PREFIX.jsonl (appended as each student is done), PREFIX.csv, PREFIX.md, PREFIX_details.csv and "
        "PREFIX_feedback/<student>.md, and prints their SHA-256. Ctrl-C keeps the students done; --resume "
        "continues. The solutions ship with the course, so this is for feedback: use `course nbgrader` "
        "for marks. Students' code runs on this machine: see INSTRUCTORS.md for what the guard can and "
        "cannot prevent. Linux or macOS.",
    )
    grade.add_argument("class_dir", type=Path, metavar="DIR", help="folder with one subfolder per student")
    grade.add_argument("--out", default="grades", metavar="PREFIX", help="output file prefix (default: grades)")
    grade.add_argument(
        "--timeout",
        type=float,
        default=ex.DEFAULT_GRADE_TIMEOUT,
        help=f"seconds allowed per exercise (default: {ex.DEFAULT_GRADE_TIMEOUT:g})",
    )
    grade.add_argument(
        "--lessons",
        nargs="+",
        type=lessons_arg,
        action=LessonsAction,
        metavar="NN",
        help="grade only these lessons: --lessons 03 04 or --lessons 03,04 (default: all)",
    )
    grade.add_argument(
        "--jobs",
        type=int,
        default=default_jobs(),
        metavar="N",
        help=f"students graded at once (default: the number of CPUs, here {default_jobs()})",
    )
    grade.add_argument(
        "--resume", action="store_true", help="keep the students already in PREFIX.jsonl (after Ctrl-C) and go on"
    )

    nbgrader = commands.add_parser(
        "nbgrader",
        parents=[common],
        help="export the exercises as an nbgrader course (for marks)",
        description="Write DIR/source/<assignment>/<notebook>.ipynb for each lesson: the answer regions become "
        "nbgrader solution cells (### BEGIN SOLUTION / ### END SOLUTION kept), the check cells read-only "
        "autograded test cells worth --points each, calling the same course_lib checkers. Then, in DIR: "
        "`nbgrader generate_assignment NN_name` and, after collecting, `nbgrader autograde NN_name`.",
    )
    nbgrader.add_argument("course_dir", type=Path, metavar="DIR", help="the nbgrader course folder to write")
    nbgrader.add_argument(
        "--lessons", nargs="+", type=lessons_arg, action=LessonsAction, metavar="NN", help="only these lessons"
    )
    nbgrader.add_argument("--points", type=int, default=1, help="points per exercise (default: 1)")

    build = commands.add_parser(
        "build-exercises",
        parents=[common],
        help="regenerate exercises/ from solutions/",
        description="Write exercises/NN_*.ipynb from solutions/NN_*.ipynb: each ### BEGIN SOLUTION / "
        "### END SOLUTION region becomes a stub raising NotImplementedError; check cells are written "
        "without outputs or execution counts (nbval then judges them only by whether they raise). "
        "The output is byte-for-byte reproducible.",
    )
    build.add_argument("--out", type=Path, default=None, help="exercises folder (default: next to the solutions)")
    build.add_argument("--check", action="store_true", help="change nothing; exit 1 if the exercises are out of date")
    return parser


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------


def solution_notebooks(solutions_dir: Path) -> dict[str, Path]:
    notebooks = ex.lesson_notebooks(solutions_dir)
    if not notebooks:
        raise UserError(f"no solution notebooks NN_*.ipynb in {solutions_dir}; pass --solutions DIR")
    return notebooks


class UserError(Exception):
    """A mistake in how the command was called: printed without a traceback, exit status 2."""


def command_check(args, solutions_dir: Path) -> int:
    folder = args.dir
    if not folder.is_dir():
        raise UserError(f"no folder {folder}: run `course` in the course folder, or pass --dir")
    mine = ex.lesson_notebooks(folder)
    solutions = ex.lesson_notebooks(solutions_dir)
    lessons = args.lessons or sorted(mine)
    if not lessons:
        raise UserError(f"no exercise notebooks NN_*.ipynb in {folder}")
    unknown = [lesson for lesson in lessons if lesson not in mine and lesson not in solutions]
    if unknown:
        raise UserError(
            f"lesson {', '.join(unknown)} has no exercises; the lessons with exercises are {', '.join(sorted(solutions))}"
        )
    rows = []
    for lesson in lessons:
        if lesson not in mine:
            name = solutions[lesson].name if lesson in solutions else f"{lesson}_*.ipynb"
            expected = _expected_for(solutions, lesson)
            message = f"notebook missing: {folder / name} (restore it with `course reset {lesson}`)"
            rows += [(exercise, False, message) for exercise in expected] or [(lesson, False, message)]
            continue
        print(f"running {mine[lesson].name} ...", flush=True)
        report = ex.run_notebook(mine[lesson], _expected_for(solutions, lesson), timeout=args.timeout)
        rows += [
            (r.exercise, r.passed, r.message + (f"\n{'':18}{r.hint}" if r.hint else ""))
            for r in report.results.values()
        ]
        if not report.results:
            rows.append((lesson, False, report.problem or "no check cells found"))
    print()
    print(f"{'exercise':<9} {'result':<7} hint")
    for exercise, passed, message in rows:
        print(f"{exercise:<9} {'passed' if passed else 'FAILED':<7} {message}")
    n_passed = sum(passed for _, passed, _ in rows)
    print(f"\n{n_passed}/{len(rows)} exercises pass.", end="")
    failing = [exercise for exercise, passed, _ in rows if not passed and "." in exercise]
    print(f" Stuck? `course hint {failing[0]}` gives a hint." if failing else " Well done!" if n_passed else "")
    return 0 if n_passed == len(rows) else 1


def _expected_for(solutions: dict[str, Path], lesson: str) -> dict[str, str] | None:
    """The lesson's exercises (keys) from the solutions, or None (use the notebook's own check cells)."""
    if lesson not in solutions:
        return None
    return ex.expected_check_outputs(ex.read_notebook(solutions[lesson]))


def load_hints(solutions_dir: Path) -> dict[str, list[str]]:
    path = solutions_dir / "hints.json"
    if not path.is_file():
        raise UserError(f"no hints file {path}; pass --solutions DIR")
    return json.loads(path.read_text(encoding="utf-8"))


def command_hint(args, solutions_dir: Path) -> int:
    hints = load_hints(solutions_dir).get(args.exercise)
    if not hints:
        raise UserError(f"no hints for exercise {args.exercise}")
    state_path = args.dir / HINT_STATE_FILE
    state = {}
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            state = {}
    if args.level is not None:
        if not 1 <= args.level <= len(hints):
            raise UserError(f"exercise {args.exercise} has hints 1 to {len(hints)}, got --level {args.level}")
        level = args.level
    else:
        level = min(int(state.get(args.exercise, 0)) + 1, len(hints))
    titles = {}
    solutions = ex.lesson_notebooks(solutions_dir)
    lesson = ex.lesson_of(args.exercise)
    if lesson in solutions:
        titles = ex.exercise_titles(ex.read_notebook(solutions[lesson]))
    print(f"Exercise {args.exercise}: {titles.get(args.exercise, '')}".rstrip(": "))
    for number, text in enumerate(hints[:level], start=1):
        print(f"\nHint {number}/{len(hints)}: {text}")
    if level < len(hints):
        print(f"\nRun `course hint {args.exercise}` again for a stronger hint.")
    if args.dir.is_dir():
        state[args.exercise] = level
        state_path.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


def command_reset(args, solutions_dir: Path) -> int:
    solutions = solution_notebooks(solutions_dir)
    if args.lesson not in solutions:
        raise UserError(f"no lesson {args.lesson}; the exercises are {', '.join(sorted(solutions))}")
    source = solutions[args.lesson]
    target = args.dir / source.name
    if target.exists():
        backup = ex.back_up_notebook(target, args.dir / BACKUP_FOLDER)
        print(f"your notebook is saved as {backup}")
    args.dir.mkdir(parents=True, exist_ok=True)
    text = ex.notebook_text(ex.build_exercise_notebook(ex.read_notebook(source)))
    target.write_text(text, encoding="utf-8", newline="\n")
    print(f"restored a fresh {target}")
    return 0


def command_grade(args, solutions_dir: Path) -> int:
    from course_lib.exercise_system import reports
    from course_lib.exercise_system.sandbox import SandboxError
    from course_lib.exercise_system.submissions import lesson_plans

    solution_notebooks(solutions_dir)
    if not args.class_dir.is_dir():
        raise UserError(f"no such folder: {args.class_dir}")
    if args.jobs < 1:
        raise UserError(f"--jobs must be 1 or more, got {args.jobs}")
    paths = reports.report_paths(Path(args.out))
    journal = reports.Journal(paths["journal"])
    if args.resume and not journal.path.is_file():
        print(f"nothing to resume in {journal.path}: grading everyone")
    try:
        plans = lesson_plans(solutions_dir, args.lessons)
    except ValueError as error:
        raise UserError(str(error)) from None
    exercises = sorted((e for plan in plans.values() for e in plan.exercises), key=ex.exercise_sort_key)
    started = time.monotonic()
    interrupted = False
    try:
        table = ex.grade_class(
            args.class_dir,
            solutions_dir,
            journal,
            lessons=args.lessons,
            timeout=args.timeout,
            jobs=args.jobs,
            resume=args.resume,
            outputs=list(paths.values()),
            progress=lambda text: print(text, flush=True),
        )
    except KeyboardInterrupt:
        interrupted = True
        table = reports.GradeTable.from_records(exercises, list(journal.records().values()))
    except (ValueError, SandboxError) as error:
        raise UserError(str(error)) from None
    written = reports.write_reports(Path(args.out), table)
    print()
    print(table.to_markdown(), end="")
    print(f"\ngraded {len(table.rows)} student(s) in {time.monotonic() - started:.0f} s; wrote {paths['csv']}, "
          f"{paths['markdown']}, {paths['details']}, {paths['journal']} and {paths['feedback']}/")  # fmt: skip
    print("SHA-256 of the results (keep these lines: `sha256sum -c` shows any later change):")
    for line in reports.digest_lines([paths["journal"], *written[:3]]):
        print(f"  {line}")
    if interrupted:
        print(f"\ninterrupted: {len(table.rows)} student(s) done; run the same command with --resume to go on")
        return 130
    return 0


def command_nbgrader(args, solutions_dir: Path) -> int:
    from course_lib.exercise_system.nbgrader_export import export_course

    solution_notebooks(solutions_dir)
    try:
        written = export_course(solutions_dir, args.course_dir, lessons=args.lessons, points=args.points)
    except ValueError as error:
        raise UserError(str(error)) from None
    print(f"wrote {len(written)} assignment(s) to {args.course_dir / 'source'}:")
    for path in written:
        print(f"  {path.relative_to(args.course_dir)}")
    print(f"next: cd {args.course_dir} && nbgrader generate_assignment {written[0].parent.name} (see INSTRUCTORS.md)")
    return 0


def command_build(args, solutions_dir: Path) -> int:
    solution_notebooks(solutions_dir)
    out = args.out if args.out is not None else solutions_dir.parent / "exercises"
    try:
        changed = ex.build_exercises(solutions_dir, out, check_only=args.check)
    except ValueError as error:
        raise UserError(str(error)) from None
    if args.check:
        if changed:
            print("out of date: " + ", ".join(path.name for path in changed))
            print("run `course build-exercises` to regenerate them")
            return 1
        print(f"{out} is up to date")
        return 0
    print(f"wrote {len(changed)} changed notebook(s) to {out}" + "".join(f"\n  {path.name}" for path in changed))
    return 0


COMMANDS = {
    "check": command_check,
    "hint": command_hint,
    "reset": command_reset,
    "grade": command_grade,
    "nbgrader": command_nbgrader,
    "build-exercises": command_build,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``course`` command; returns the exit status."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")  # a Windows console may lack some characters
    args = build_parser().parse_args(argv)
    solutions_dir = args.solutions if args.solutions is not None else ex.default_solutions_dir()
    try:
        return COMMANDS[args.command](args, solutions_dir)
    except (UserError, ex.NotebookUnreadable, FileNotFoundError) as error:
        print(f"course {args.command}: {error}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, NotADirectoryError) as error:
        where = f" {error.filename}" if error.filename else ""
        print(f"course {args.command}: cannot use{where}: {error.strerror or error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
