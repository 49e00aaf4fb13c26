"""What a task showed and its verdict; a folder's verdicts; a class's table and JSON report.

A task's verdict is one of ``match`` (it matches the course), ``differs`` (it ran, and printed
or answered something else), ``missing`` (its files are not in the folder) or ``error`` (a
program crashed, hung, or reached a bound of the sandbox; or the check itself could not run).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from course.text import printable

MAX_DIFF_LINES = 20
# What is shown of a program's stderr: its last lines, where a traceback ends.
STDERR_TAIL_LINES = 10
MATCH, DIFFERS, MISSING, ERROR = "match", "differs", "missing", "error"
TASK_COUNT = 11


def diff(wanted: list[str], got: list[str]) -> str:
    """A unified diff of the course's lines and the program's, cut to MAX_DIFF_LINES lines."""
    shown = list(difflib.unified_diff(wanted, got, "expected", "got", lineterm="", n=2))
    if len(shown) > MAX_DIFF_LINES:
        shown = [*shown[: MAX_DIFF_LINES - 1], f"... ({len(shown) - MAX_DIFF_LINES + 1} more lines)"]
    return "\n".join(shown)


@dataclass
class Outcome:
    """What one task showed (one block per program), what differs, what failed, and warnings."""

    blocks: list[tuple[str, list[str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def show(self, program: str, output: list[str]) -> None:
        self.blocks.append((program, [printable(line) for line in output]))

    def show_stderr(self, program: str, stderr: list[str]) -> None:
        """The last lines ``program`` wrote to stderr, if it wrote any."""
        if stderr:
            self.show(f"{program} (stderr, last lines)", stderr[-STDERR_TAIL_LINES:])

    def compare(
        self, program: str, output: list[str], wanted: list[str], shown: list[str] | None = None
    ) -> None:
        """Show ``shown`` (or ``output``); a diff if ``output`` is not the course's ``wanted`` lines."""
        self.show(program, output if shown is None else shown)
        if output != wanted:
            self.problems.append(f"{program} printed something else:\n{diff(wanted, output)}")

    def check(
        self,
        program: str,
        output: list[str],
        problems: list[str],
        wanted: list[str] | None = None,
        arranged: list[str] | None = None,
        shown: list[str] | None = None,
    ) -> None:
        """Show the output, with the problems a checker found in it.

        Given the lines the course wanted (and the output ``arranged`` to line up with
        them), the problems are shown as a diff of the two.
        """
        self.show(program, output if shown is None else shown)
        diffed = diff(wanted, output if arranged is None else arranged) if problems and wanted else ""
        if diffed:
            self.problems.append(f"{program} printed something else:\n{diffed}")
        else:
            self.problems.extend(f"{program}: {problem}" for problem in problems)

    def add(self, other: Outcome) -> None:
        self.blocks += other.blocks
        self.problems += other.problems
        self.errors += other.errors
        self.warnings += other.warnings

    @property
    def verdict(self) -> str:
        return ERROR if self.errors else DIFFERS if self.problems else MATCH

    @property
    def reason(self) -> str:
        """The first thing wrong, on one line."""
        first = (self.errors or self.problems or [""])[0]
        return printable(first.splitlines()[0] if first else "")


@dataclass
class TaskResult:
    task: int
    verdict: str
    reason: str = ""


@dataclass
class FolderResult:
    folder: str
    tasks: list[TaskResult]

    @property
    def matched(self) -> int:
        return sum(task.verdict == MATCH for task in self.tasks)

    @property
    def all_present_match(self) -> bool:
        return all(task.verdict in (MATCH, MISSING) for task in self.tasks)

    def to_json(self) -> dict[str, object]:
        return {
            "folder": self.folder,
            "matched": self.matched,
            "tasks": [asdict(task) for task in self.tasks],
        }

    @classmethod
    def from_json(cls, folder: str, data: dict[str, object]) -> FolderResult:
        tasks = [
            TaskResult(int(task["task"]), str(task["verdict"]), str(task["reason"])) for task in data["tasks"]
        ]
        return cls(folder, tasks)

    @classmethod
    def every_task(cls, folder: str, verdict: str, reason: str) -> FolderResult:
        return cls(folder, [TaskResult(number, verdict, reason) for number in range(TASK_COUNT)])


def print_outcome(number: int, outcome: Outcome) -> None:
    for program, output in outcome.blocks:
        print(f"  --- {program}")
        for line in output:
            print(f"  | {line}")
    for warning in outcome.warnings:
        print(f"  ! warning: {printable(warning)}")
    if outcome.verdict == MATCH:
        print(f"  ✓ Task {number}: matches the course")
        return
    heading = "could not run as the course says" if outcome.verdict == ERROR else "differs from the course"
    print(f"  ✗ Task {number}: {heading}")
    for problem in outcome.errors + outcome.problems:
        first, *rest = problem.splitlines() or [""]
        print(f"    - {printable(first)}")
        for line in rest:
            print(f"        {printable(line)}")


SHORT = {MATCH: "ok", DIFFERS: "diff", MISSING: "-", ERROR: "ERR"}


def table(results: list[FolderResult]) -> str:
    """One row per folder, one column per task, and the count matched."""
    width = max([len("folder"), *(len(result.folder) for result in results)])
    header = f"{'folder':<{width}} " + " ".join(f"{number:>4}" for number in range(TASK_COUNT)) + "  matched"
    rows = [
        f"{printable(result.folder):<{width}} "
        + " ".join(f"{SHORT.get(task.verdict, '?'):>4}" for task in result.tasks)
        + f"  {result.matched:>2}/{TASK_COUNT}"
        for result in results
    ]
    legend = "ok: matches the course, diff: differs, -: missing, ERR: error (crashed, hung or bounded)"
    return "\n".join([header, *rows, legend])


def write_report(path: Path, results: list[FolderResult], notes: list[list[str]]) -> None:
    """The JSON report: each folder's verdicts, and the notes about the folder (files found, skipped)."""
    solutions = [
        {**result.to_json(), "notes": folder_notes}
        for result, folder_notes in zip(results, notes, strict=True)
    ]
    path.write_text(json.dumps({"solutions": solutions}, indent=2) + "\n")
