"""``make check DIR="a b c"``: the course run against one solution folder, or a whole class of them.

Each folder is found where its author put it (one level down, or with the JS course's
names), copied safely, and checked inside a sandbox of its own (checker/sandbox.py): its
Redis on 127.0.0.1:6379 and its APIs on port 1245, as the course says, with no network and
nothing surviving the check. Several folders are checked side by side, up to the machine's
cores, and end with a table (one row per folder, one column per task); ``--report FILE``
writes the same as JSON. The exit status is 0 only if every task present in every folder
matches; 2 without bubblewrap.

    python -m checker.check DIR [DIR ...] [--timeout SECONDS] [--report FILE] [--verbose]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from course.text import printable

from checker import sandbox
from checker.apis import COURSE_PORT
from checker.course_run import COURSE_FILES, course_files, run_course, summary
from checker.folders import SafeCopy, find_course_folder
from checker.lessons import SCRIPT_TIMEOUT_SECONDS, RedisBuildError, redis_bin_dir
from checker.redis_setup_task import COURSE_REDIS_PORT
from checker.report import ERROR, MISSING, FolderResult, table, write_report
from checker.run import Lessons, RunRedis, nothing

RESULT_FILE = "result.json"
# A bound on one folder's whole check (11 tasks, each bounded by --timeout): a stuck sandbox is ended.
FOLDER_SECONDS = 1800
# The sandboxes running now (bwrap processes).
RUNNING: set[subprocess.Popen[str]] = set()
# Set by Ctrl-C, under the lock that starting a sandbox takes: a sandbox started as the check
# stops would be missed by the sweep, and its thread would keep the check waiting for it.
STOPPING = threading.Event()
RUNNING_LOCK = threading.Lock()


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
        prog="python -m checker.check",
        description="Run the course's tasks on solution folders, each in a sandbox, and compare them with"
        f" the course. The course's files: {course_files()}.",
    )
    parser.add_argument("dirs", metavar="DIR", type=Path, nargs="*", help="a folder holding a solution")
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=SCRIPT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"how long a program may run before it counts as hung (default {SCRIPT_TIMEOUT_SECONDS})",
    )
    parser.add_argument("--report", type=Path, metavar="FILE", help="write the verdicts as JSON to FILE")
    parser.add_argument(
        "--verbose", action="store_true", help="with several folders, print each folder's whole check too"
    )
    # The orchestration's side, inside the sandbox: not for people.
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--uid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.inside:
        if not args.dirs:
            parser.error("give at least one DIR, a folder holding a solution")
        for folder in args.dirs:
            if not folder.is_dir():
                parser.error(f"{folder} is not a folder")
    return args


# Inside the sandbox --------------------------------------------------------------------------


def hand_over(path: Path, uid: int) -> None:
    """Make ``path`` and all below it the solution's (its copy, its home)."""
    for directory, folders, files in os.walk(path):
        for name in [directory, *(os.path.join(directory, entry) for entry in folders + files)]:
            os.lchown(name, uid, uid)


def inside(timeout: float, uid: int | None) -> int:
    """The orchestration, in the sandbox: the solution's copy, task 0, the run's Redis, tasks 1 to 10."""
    # Started with Ctrl-C ignored (a background job, nohup), its programs would ignore it too, and
    # the check's way of stopping a processor or a server would not reach them.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    workspace = Path(sandbox.WORKSPACE)
    home = Path(sandbox.HOME)
    shutil.copytree(sandbox.SUBMITTED, workspace)
    home.mkdir()
    tools = Path(sandbox.TOOLS)
    tools.mkdir(mode=0o755)
    for tool in ("redis-server", "redis-cli"):
        shutil.copyfile(Path(os.environ["REDIS_BIN_DIR"], tool), tools / tool)
        (tools / tool).chmod(0o755)
    if uid is not None:
        hand_over(workspace, uid)
        hand_over(home, uid)
    lessons = Lessons(
        folder=workspace,
        env={"HOME": str(home), "HOST": "127.0.0.1", "PATH": f"{tools}:{os.environ['PATH']}"},
        timeout=timeout,
        launcher=sandbox.limits_launcher(uid),
        api_port=COURSE_PORT,
        clean_up=(lambda: sandbox.kill_everything_of(uid)) if uid is not None else nothing,
    )
    print(
        f"The check runs in a sandbox: its own Redis on 127.0.0.1:{COURSE_REDIS_PORT}, the APIs on port"
        f" {COURSE_PORT}, no network. Your Redis is not touched.",
        flush=True,
    )
    redis_server = RunRedis(
        Path(sandbox.REDIS_DATA),
        COURSE_REDIS_PORT,
        Path(os.environ["REDIS_BIN_DIR"]),
        launcher=sandbox.NO_CAPABILITIES if uid is not None else (),
    )
    results = run_course(lessons, redis_server, require_all=False)
    result = FolderResult("", results)
    Path(sandbox.RESULT, RESULT_FILE).write_text(json.dumps(result.to_json()))
    summary("the folder", results)
    return 0


# Outside: one folder, in a sandbox ------------------------------------------------------------


@dataclass
class FolderCheck:
    """One folder's check: its verdicts, what it printed, and the notes about the folder itself."""

    name: str  # as the instructor gave it
    folder: Path
    slot: int
    transcript: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    result: FolderResult | None = None

    def say(self, line: str, echo: bool) -> None:
        # A file name that is not UTF-8 (os.fsdecode's surrogates) is shown as escapes, not a crash.
        line = line.encode("utf-8", "backslashreplace").decode()
        self.transcript.append(line)
        if echo:
            print(line, flush=True)


def sandbox_env(redis_bin: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": sandbox.HOME,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "REDIS_BIN_DIR": str(redis_bin),
        "REDIS_URL": f"redis://127.0.0.1:{COURSE_REDIS_PORT}/0",
        "PORT": str(COURSE_PORT),
        "HOST": "127.0.0.1",
    }


def check_folder(check: FolderCheck, redis_bin: Path, timeout: float, echo: bool) -> FolderResult:
    """Find the course's files, copy them safely, and run the check in a sandbox; its verdicts."""
    name = check.name
    found = find_course_folder(check.folder, COURSE_FILES)
    if found is None:
        check.say(
            f"No course file in {name}: nothing to check (the course's files are {course_files()})", echo
        )
        return FolderResult.every_task(name, MISSING, "no course file in the folder")
    with tempfile.TemporaryDirectory(prefix="checker-") as scratch:
        copy = SafeCopy(found.folder, Path(scratch, "staged"))
        copy.run(found.renamed)
        check.notes = [*found.notes, *copy.skipped]
        for note in check.notes:
            check.say(f"{name}: {printable(note)}", echo)
        results = Path(scratch, "result")
        results.mkdir()
        uid = sandbox.solution_uid(check.slot) if sandbox.as_root() else None
        inner = [sys.executable, "-m", "checker.check", "--inside", "--timeout", str(timeout)]
        if uid is not None:
            inner += ["--uid", str(uid)]
        command = sandbox.bwrap_command(copy.target, results, redis_bin, inner, sandbox_env(redis_bin))
        status = run_sandbox(command, check, echo)
        try:
            data = json.loads(Path(results, RESULT_FILE).read_text())
            return FolderResult.from_json(name, data)
        except (OSError, ValueError, KeyError, TypeError):
            tail = " / ".join(check.transcript[-3:])
            return FolderResult.every_task(name, ERROR, f"the check did not finish (status {status}): {tail}")


def run_sandbox(command: list[str], check: FolderCheck, echo: bool) -> int:
    """Run the sandbox, its output read line by line (escaped: it carries what a solution printed)."""
    with RUNNING_LOCK:
        if STOPPING.is_set():
            return -signal.SIGINT
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace",
        )  # fmt: skip
        RUNNING.add(process)
    timer = threading.Timer(FOLDER_SECONDS, end_sandbox, [process])
    timer.start()
    try:
        for line in process.stdout:
            check.say(printable(line.rstrip("\n")), echo)
        return process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:  # Ctrl-C: the sandbox ends with it, and everything in it
            process.kill()
            process.wait()
        RUNNING.discard(process)


def end_sandbox(process: subprocess.Popen[str]) -> None:
    """Kill a sandbox's bwrap, then whatever still holds its output open: the folder's thread reads
    that output to its end, and the check waits for the thread."""
    process.kill()
    process.wait()
    # bwrap ties the sandbox to its own life (--die-with-parent) only once the sandbox is set up.
    # Killed during that setup, it leaves the sandbox running the whole check on its own (CI: no
    # answer within 30 s of Ctrl-C). The sandbox's first process holds the output: killed, its pid
    # namespace ends, and everything in it.
    for pid in sandbox.holders_of(process.stdout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def end_every_sandbox() -> None:
    """Ctrl-C: the sandboxes run in sessions of their own, which the terminal's Ctrl-C does not reach."""
    with RUNNING_LOCK:
        STOPPING.set()
        for process in list(RUNNING):
            end_sandbox(process)


# A class ------------------------------------------------------------------------------------


def check_class(folders: list[Path], timeout: float, verbose: bool) -> list[FolderCheck]:
    redis_bin = redis_bin_dir()
    checks = [FolderCheck(str(folder), folder.resolve(), slot) for slot, folder in enumerate(folders)]
    alone = len(checks) == 1

    def one(check: FolderCheck) -> FolderCheck:
        check.result = check_folder(check, redis_bin, timeout, echo=alone)
        if not alone:
            print(f"{printable(check.name)}: {check.result.matched}/11 tasks match the course", flush=True)
        return check

    with ThreadPoolExecutor(max_workers=min(len(checks), os.cpu_count() or 1)) as pool:
        try:
            done = list(pool.map(one, checks))
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            end_every_sandbox()
            raise
    if verbose and not alone:
        for check in done:
            print(f"\n==== {printable(check.name)}")
            print("\n".join(check.transcript))
    return done


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.inside:
        return inside(args.timeout, args.uid)
    if sandbox.bwrap_path() is None:
        print(sandbox.INSTALL_HINT, file=sys.stderr)
        return 2
    try:
        checks = check_class(args.dirs, args.timeout, args.verbose)
    except RedisBuildError as error:
        print(error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nCheck interrupted")
        return 130
    results = [check.result for check in checks]
    if len(checks) > 1:
        print()
        print(table(results))
    if args.report:
        write_report(args.report, results, [check.notes for check in checks])
    nothing_found = any(all(task.verdict == MISSING for task in result.tasks) for result in results)
    return 0 if all(result.all_present_match for result in results) and not nothing_found else 1


if __name__ == "__main__":
    sys.exit(main())
