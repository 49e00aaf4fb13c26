"""``make tour``: every course task of this project, in order, each beside the course's output.

The project's own code is trusted: the tour runs it outside the sandbox (``make check``
runs someone else's folder inside one; see checker/check.py), on a Redis of the run's own:

- the project is copied to a temporary directory and run from there, so nothing a script
  writes beside itself (``dump.rdb``, say) lands in the project;
- task 0 runs the copy's ``redis_setup.sh`` on a free port (REDIS_PORT) and shuts that server
  down; then a redis-server of the run's own starts on another free port, and every other task
  runs on it. The learner's Redis (``REDIS_URL``, ``REDIS_PORT``), its keys and its queued jobs
  are never touched; the run's Redis and directory are gone at the end, Ctrl-C included;
- each lesson runs as a learner runs it, ``python NAME`` from the copy; the APIs get a free
  port in ``PORT``; tasks 9 and 10 also send 100 simultaneous reservations.

It ends with ``N/11 tasks match the course`` and exits 1 unless all 11 match.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from checker.course_run import run_course, summary
from checker.folders import NOT_COPIED, TASK0_OUTPUTS
from checker.lessons import ROOT, SCRIPT_TIMEOUT_SECONDS, stop_every_lesson
from checker.report import MATCH
from checker.run import Lessons, RunRedis
from checker.tasks import free_port


def interrupt_once(signum: int, frame: object) -> None:
    """Ctrl-C or SIGTERM: stop the run; a second one must not cut short the clean-up that follows."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def copy_project(target: Path) -> None:
    """The project's files, less environments, caches and what task 0 is to be seen writing."""
    shutil.copytree(
        ROOT,
        target,
        ignore=lambda directory, names: {*NOT_COPIED, *TASK0_OUTPUTS} & set(names),
        ignore_dangling_symlinks=True,
    )


def tour(directory: Path, timeout: float) -> int:
    workspace = directory / "solution"
    copy_project(workspace)
    redis_server = RunRedis(directory / "redis", free_port())
    print(f"The tour runs on a Redis of its own, 127.0.0.1:{redis_server.port}: yours is not touched.")
    lessons = Lessons(folder=workspace, env={"HOST": "127.0.0.1"}, timeout=timeout)
    results = run_course(lessons, redis_server, require_all=True)
    summary(ROOT, results)
    return 0 if all(result.verdict == MATCH for result in results) else 1


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m checker.tour",
        description="Run every course task of this project, each compared with the course, on a Redis"
        " of its own; all 11 must match.",
    ).parse_args(argv)
    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)
    os.environ.pop("REDIS_PASSWORD", None)  # the run's own Redis has none
    directory = Path(tempfile.mkdtemp(prefix="course-run-"))
    try:
        return tour(directory, SCRIPT_TIMEOUT_SECONDS)
    except KeyboardInterrupt:
        print("\nTour interrupted", flush=True)
        return 130
    except BrokenPipeError:  # its output was cut short (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        stop_every_lesson()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
