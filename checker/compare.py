"""What the check compares, and what it leaves aside, so that any honest solution is judged fairly.

- Job ids: any id token the queue gives (this edition's integers, RQ's UUIDs). Ids are
  replaced by the job's number, in the order the program first shows them, so the same job
  must keep one id throughout and the course's checkers see ``1, 2, 3 ...``.
- RQ's own log lines: RQ's default logging writes records below ERROR to stdout and the rest
  to stderr, each starting with its time (``%H:%M:%S``), an error's traceback below it. They
  are not the course's lines: left out of what is compared.
- stderr (a library's warnings, RQ's errors) is shown; it fails a task only when the program
  crashed: a non-zero exit, or a traceback of its own (not one under an RQ log line).
- JSON bodies: compared as JSON (values and keys), not as text: no whitespace, key order or
  trailing newline (Flask's ``jsonify`` adds one) counts.
"""

from __future__ import annotations

import json
import re
import signal

from checker.sandbox import CPU_SECONDS, FILE_BYTES, MEMORY_BYTES, PROCESSES

RQ_LOG_LINE = re.compile(r"\d\d:\d\d:\d\d \S.*")
TRACEBACK = "Traceback (most recent call last):"
# The lines that continue a traceback: its frames, indented, and the joins of chained exceptions.
TRACEBACK_CONTINUES = re.compile(
    r"(\s.*|Traceback \(most recent call last\):|During handling of the above exception.*"
    r"|The above exception was the direct cause.*|)"
)
# How a program ends when stopped by Ctrl-C: Python's exception, or RQ's own for a worker told to stop.
STOPPED = ("KeyboardInterrupt", "SystemExit", "rq.exceptions.StopRequested", "StopRequested")
ID_TOKEN = r"[A-Za-z0-9][A-Za-z0-9_.:-]*"
# The course's lines that carry a job id, the id as group "id".
ID_LINES = [
    re.compile(rf"(Notification job created: )(?P<id>{ID_TOKEN})"),
    re.compile(rf"(Notification job )(?P<id>{ID_TOKEN})( (?:\d+% complete|completed|failed: .*))"),
    re.compile(rf"(Seat reservation job )(?P<id>{ID_TOKEN})( (?:completed|failed: .*))"),
]


def without_rq_log(lines: list[str]) -> list[str]:
    """The lines, less RQ's log records (a timestamped line, and the traceback that may follow it)."""
    kept = []
    in_record = False
    for line in lines:
        if RQ_LOG_LINE.fullmatch(line):
            in_record = True
        elif in_record and TRACEBACK_CONTINUES.fullmatch(line):
            pass
        elif in_record and kept_after_traceback(line):
            in_record = False  # the exception's own line ends the record
        else:
            in_record = False
            kept.append(line)
    return kept


def kept_after_traceback(line: str) -> bool:
    """The last line of a traceback: ``SomeError: message`` (a dotted name, then maybe a message)."""
    return bool(re.fullmatch(r"[A-Za-z_][\w.]*(: .*)?", line))


def numbered_ids(lines: list[str]) -> list[str]:
    """The lines with each job id replaced by the job's number (1, 2, ...) in order of first appearance."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        job = numbers.setdefault(match["id"], len(numbers) + 1)
        return f"{match[1]}{job}{match.group(3) if match.re.groups >= 3 else ''}"

    numbered = []
    for line in lines:
        for pattern in ID_LINES:
            if pattern.fullmatch(line):
                line = pattern.sub(number, line, count=1)
                break
        numbered.append(line)
    return numbered


def course_lines(lines: list[str]) -> list[str]:
    """What is compared with the course: RQ's log lines out, job ids numbered."""
    return numbered_ids(without_rq_log(lines))


def own_traceback(stderr_lines: list[str]) -> list[str]:
    """The program's own traceback (one not under an RQ log line): its lines, or [] if none."""
    remaining = without_rq_log(stderr_lines)
    if TRACEBACK not in remaining:
        return []
    return remaining[remaining.index(TRACEBACK) :]


def bound_reached(stderr: str, returncode: int | None) -> str | None:
    """Which of the sandbox's bounds a program hit, from how it ended and what it said."""
    if returncode == -signal.SIGXCPU:
        return f"killed: CPU time bound of {CPU_SECONDS} s reached"
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return f"memory bound of {MEMORY_BYTES >> 30} GiB reached"
    if "File too large" in stderr or returncode == -signal.SIGXFSZ:
        return f"file size bound of {FILE_BYTES >> 20} MiB reached"
    if "Resource temporarily unavailable" in stderr and ("fork" in stderr or "BlockingIOError" in stderr):
        return f"process bound of {PROCESSES} processes reached"
    return None


def crashed(stderr_lines: list[str], returncode: int | None, stopped: bool) -> bool:
    """Did the program itself crash? A non-zero exit it chose, or a traceback of its own.

    A program the check stopped (Ctrl-C, SIGTERM) may end with any status, and with a
    KeyboardInterrupt traceback (or RQ's StopRequested): that is the stop, not a crash.
    """
    traceback = own_traceback(stderr_lines)
    if stopped:
        return bool(traceback) and not traceback[-1].startswith(STOPPED)
    return returncode not in (0, None) or bool(traceback)


def parsed(body: str) -> object:
    """A body as JSON, or a marker that never equals JSON when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return NotJson(body)


class NotJson:
    def __init__(self, body: str) -> None:
        self.body = body

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


def same_json(body: str, wanted: str) -> bool:
    return parsed(body) == parsed(wanted)
