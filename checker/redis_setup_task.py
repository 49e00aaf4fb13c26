"""Task 0 of the course run: the folder's ``redis_setup.sh`` starts a Redis, stores Holberton, keeps dump.rdb.

Outside the sandbox (the tour) it runs on a free port in REDIS_PORT; in the sandbox, on the
course's own 6379, before the run's Redis starts there. Whatever it leaves running is stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from contextlib import suppress
from pathlib import Path

import redis

from checker.report import Outcome
from checker.run import NO_NETWORK_HINT, PROJECT, Lessons, Ran
from checker.tasks import free_port, show_run

# A first run of the project's redis_setup.sh downloads and compiles Redis.
SETUP_TIMEOUT_SECONDS = 900
COURSE_REDIS_PORT = 6379


def shut_down_redis_on(port: int) -> None:
    """Shut down whatever Redis a script started on a port the run chose for it."""
    try:
        with redis.Redis("127.0.0.1", port, socket_timeout=5) as client:
            client.shutdown(nosave=True)
    except redis.RedisError:  # none there, or it went down while answering SHUTDOWN
        pass


def run_redis_setup(lessons: Lessons, port: int) -> tuple[Ran, int]:
    """Run ``./redis_setup.sh`` from the lessons' folder on ``port``, in a session of its own.

    Its output goes to files, not pipes: a server it leaves running in the background would
    hold a pipe open, and reading it would never end. Returns what it printed and its group.
    """
    with (
        tempfile.TemporaryFile("w+", errors="replace") as stdout,
        tempfile.TemporaryFile("w+", errors="replace") as stderr,
    ):
        process = subprocess.Popen(
            [*lessons.launcher, "./redis_setup.sh"],
            cwd=lessons.folder,
            env={**os.environ, **lessons.env, "REDIS_PORT": str(port)},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        hung_after = None
        try:
            returncode = process.wait(timeout=max(lessons.timeout, SETUP_TIMEOUT_SECONDS))
        except BaseException as stopped:  # out of time, or Ctrl-C: it goes too
            os.killpg(process.pid, signal.SIGKILL)
            returncode = process.wait()
            if not isinstance(stopped, subprocess.TimeoutExpired):
                raise
            hung_after = max(lessons.timeout, SETUP_TIMEOUT_SECONDS)
        stdout.seek(0)
        stderr.seek(0)
        printed = stdout.read(1 << 20).splitlines(), stderr.read(1 << 20).splitlines()
        return Ran("redis_setup.sh", *printed, returncode, hung_after=hung_after), process.pid


def task_redis_server(url: str, lessons: Lessons = PROJECT) -> Outcome:
    """Task 0 runs on a server of its own: it starts one, like the course.

    Outside the sandbox (the tour) on a free port in REDIS_PORT, and only if the script reads
    it (on the default port it would start or change the learner's own Redis); in the
    sandbox, on the course's 6379, before the run's own Redis starts there.
    """
    outcome = Outcome()
    script = lessons.folder / "redis_setup.sh"
    in_sandbox = lessons.api_port is not None
    if not in_sandbox and "REDIS_PORT" not in script.read_text(errors="replace"):
        outcome.problems.append(
            "redis_setup.sh does not read REDIS_PORT (the course's starts Redis on REDIS_PORT): it was not"
            " run, since on the default port it would start or change your own Redis"
        )
        return outcome
    if not os.access(script, os.X_OK):
        outcome.problems.append("redis_setup.sh is not executable (chmod +x redis_setup.sh)")
        return outcome
    port = COURSE_REDIS_PORT if in_sandbox else free_port()
    group = None
    try:
        ran, group = run_redis_setup(lessons, port)
        show_run(outcome, ran)
        if ran.errors and in_sandbox:
            outcome.warnings.append(NO_NETWORK_HINT)
        outcome.problems.extend(redis_setup_problems(port, lessons.folder))
    finally:
        shut_down_redis_on(port)
        if group is not None:
            with suppress(ProcessLookupError):  # whatever else it left running (a server started with &)
                os.killpg(group, signal.SIGKILL)
        lessons.clean_up()
    return outcome


def redis_setup_problems(port: int, folder: Path) -> list[str]:
    """What the course's task 0 leaves that is not there: dump.rdb with Holberton, and the server's value.

    The course's script stops its server at the end; one still running must hold Holberton = School.
    """
    problems = []
    try:
        with redis.Redis("127.0.0.1", port, decode_responses=True, socket_timeout=5) as client:
            if client.get("Holberton") != "School":
                problems.append(
                    f"the Redis still running on port {port} does not answer School to GET Holberton"
                )
    except redis.ConnectionError:
        pass  # stopped, as the course's script does
    except redis.RedisError as error:
        problems.append(f"the Redis still running on port {port} answers: {error}")
    dump = folder / "dump.rdb"
    try:
        holds = dump.is_file() and b"Holberton" in dump.read_bytes()
    except OSError:
        holds = False
    if not holds:
        problems.append("dump.rdb with Holberton = School is missing beside redis_setup.sh")
    return problems
