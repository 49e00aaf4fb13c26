"""How the check runs a folder's programs, and the Redis it runs them on.

A program runs as a learner runs it: ``python NAME`` from the folder, ``REDIS_URL`` set, in a
session of its own (stopping it reaches all it started). In the sandbox it runs through the
sandbox's launcher (bounds, the solution's uid). What it printed comes back as a ``Ran``: what
is shown (RQ's log lines left out, control characters escaped when shown), what is compared
(job ids numbered), and what went wrong (a crash, a hang, a bound reached).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from checker.compare import bound_reached, course_lines, crashed, without_rq_log
from checker.lessons import (
    ROOT,
    SCRIPT_TIMEOUT_SECONDS,
    lines,
    redis_bin_dir,
    run_script,
    start_script,
    stop_script,
)

# How long a background program gets to stop on Ctrl-C before it is killed.
STOP_SECONDS = 20
STDERR_TAIL_LINES = 10
REDIS_START_SECONDS = 30
NO_NETWORK_HINT = (
    "the check has no network: a program that downloads something cannot work here"
    " (redis-server and redis-cli are on its PATH)"
)


def nothing() -> None:
    """No clean-up between tasks: outside the sandbox, stopping each program's group is enough."""


@dataclass
class Ran:
    """A program's output and how it ended."""

    program: str
    stdout: list[str]
    stderr: list[str]
    returncode: int | None
    hung_after: float | None = None  # ran out of time after this many seconds, and was stopped
    stopped: bool = False  # a background program the check stopped (not one that ended by itself)
    killed_after: float | None = None  # did not stop on Ctrl-C within this many seconds

    @property
    def shown(self) -> list[str]:
        """Its stdout without RQ's own log lines."""
        return without_rq_log(self.stdout)

    @property
    def compared(self) -> list[str]:
        """What is compared with the course: the lines shown, job ids numbered."""
        return course_lines(self.stdout)

    @property
    def errors(self) -> list[str]:
        """What went wrong running it, each with the end of its stderr when that explains it."""
        errors = []
        if self.hung_after is not None:
            errors.append(
                f"{self.program} was still running after {self.hung_after:g} s: stopped (does it hang?)"
            )
        if self.killed_after is not None:
            errors.append(f"{self.program} did not stop on Ctrl-C within {self.killed_after:g} s: killed")
        bound = bound_reached("\n".join(self.stderr), self.returncode)
        if bound or crashed(self.stderr, self.returncode, self.stopped or self.hung_after is not None):
            if bound:
                why = bound
            elif self.returncode not in (0, None) and not self.stopped:
                why = f"exited with status {self.returncode}"
            else:
                why = "crashed (a traceback)"
            errors.append(f"{self.program} {why}{self.stderr_tail()}")
        return errors

    def stderr_tail(self) -> str:
        if not self.stderr:
            return ""
        return ", the end of its stderr:\n" + "\n".join(self.stderr[-STDERR_TAIL_LINES:])


@dataclass(frozen=True)
class Lessons:
    """Where the lessons are and how they run: folder, environment, time limit, launcher, API port.

    ``api_port`` None: each API gets a free port in ``PORT`` (the tour, beside other servers);
    in the sandbox, the course's own 1245. ``clean_up`` runs after each task.
    """

    folder: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = SCRIPT_TIMEOUT_SECONDS
    launcher: tuple[str, ...] = ()
    api_port: int | None = None
    clean_up: Callable[[], None] = nothing

    @property
    def stop_timeout(self) -> float:
        return min(self.timeout, STOP_SECONDS)

    def start(self, script: str, url: str, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        return start_script(
            script,
            url,
            *args,
            cwd=self.folder,
            own_session=True,
            launcher=self.launcher,
            **self.env,
            **extra_env,
        )

    def run(self, script: str, url: str, *args: str, program: str = "", **extra_env: str) -> Ran:
        """Run a program to its end (or stop it when time is up)."""
        name = program or script
        try:
            result = run_script(
                script,
                url,
                *args,
                timeout=self.timeout,
                cwd=self.folder,
                own_session=True,
                launcher=self.launcher,
                **self.env,
                **extra_env,
            )
        except subprocess.TimeoutExpired as hung:
            return Ran(
                name, lines(hung.stdout or ""), lines(hung.stderr or ""), None, hung_after=self.timeout
            )
        return Ran(name, lines(result.stdout), lines(result.stderr), result.returncode)

    def stop(self, program: str, process: subprocess.Popen[str], already_read: list[str] = ()) -> Ran:
        """Stop a background program as Ctrl-C does (unless it ended by itself): all it printed."""
        ended_by_itself = process.poll() is not None
        stdout, stderr = stop_script(process, timeout=self.stop_timeout)
        killed = process.returncode == -signal.SIGKILL and not ended_by_itself
        return Ran(
            program,
            [*already_read, *lines(stdout)],
            lines(stderr),
            process.returncode,
            stopped=not ended_by_itself,
            killed_after=self.stop_timeout if killed else None,
        )


# This project's own lessons, as the tour and the tests run them.
PROJECT = Lessons()


class RedisDidNotStart(Exception):
    """The run's own Redis could not be started: nothing can be checked."""


class RunRedis:
    """The run's own redis-server on 127.0.0.1:``port``, its data in ``home``, nothing saved.

    ``launcher`` goes before it (in the sandbox: every capability dropped).
    """

    def __init__(
        self, home: Path, port: int, bin_dir: Path | None = None, launcher: tuple[str, ...] = ()
    ) -> None:
        self.home = home
        self.port = port
        self.bin_dir = bin_dir
        self.launcher = launcher
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        server = (self.bin_dir or redis_bin_dir()) / "redis-server"
        log = self.home / "redis.log"
        self.process = subprocess.Popen(
            [*self.launcher, server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.home),
             "--save", "", "--appendonly", "no", "--logfile", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + REDIS_START_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with redis.Redis("127.0.0.1", self.port, socket_timeout=1) as client:
                    client.ping()
                return
            except redis.RedisError:
                time.sleep(0.02)
        self.stop()
        raise RedisDidNotStart(log.read_text(errors="replace") if log.exists() else f"{server} did not start")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
