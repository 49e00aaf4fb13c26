"""``make check DIR=path/to/solution``: the course run against a learner's folder.

Each task whose files are in DIR runs as ``make tour`` runs this project's own (course/tour.py):
from a temporary copy of DIR, on a Redis of its own, never the learner's. Each prints
whether it matches the course, differs (with a diff), or is missing; the summary is
``N/11 tasks match the course``, and the exit status is 0 only if every task present matches.

    python -m course.check DIR [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course.lessons import SCRIPT_TIMEOUT_SECONDS
from course.tour import check_folder, course_files


def positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {value!r}")
    return seconds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m course.check",
        description=f"Run the course's tasks on your own solution and compare them with the course. "
        f"The course's files: {course_files()}.",
    )
    parser.add_argument("dir", metavar="DIR", type=Path, help="the folder holding your solution")
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=SCRIPT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"how long a program may run before it counts as hung (default {SCRIPT_TIMEOUT_SECONDS})",
    )
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"{args.dir} is not a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return check_folder(args.dir.resolve(), require_all=False, timeout=args.timeout, name="check")


if __name__ == "__main__":
    sys.exit(main())
