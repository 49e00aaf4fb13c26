"""Run the lessons the way a learner does: ``python NAME`` from the project root, REDIS_URL set.

``make tour``, ``make check`` and the tests drive the numbered scripts through these functions. A
lesson started with ``own_session=True`` runs in a session (a process group) of its own,
as a terminal runs a job: stopping it reaches every process it started, and whatever of
the group is left once it has exited (a worker it forked, say) is killed, so nothing
outlives it. ``cwd`` runs the lessons of another folder, and ``launcher`` puts a command
before ``python NAME`` (``make check``: the sandbox's bounds and the solution's own uid). Output
that is not UTF-8 reads as U+FFFD, and what is kept of a program's output is bounded: the
programs ``make check`` runs were written by someone else.
"""

from __future__ import annotations

import codecs
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_TIMEOUT_SECONDS = 60
# How long a lesson that ran out of time gets to stop on Ctrl-C before it is killed.
SCRIPT_STOP_SECONDS = 10
# After SIGKILL, how long to wait for the last output of processes outside the lesson's group.
KILLED_OUTPUT_SECONDS = 5
# What is kept of each of a program's streams, and of one line waited for; the rest is read and dropped.
OUTPUT_BYTES = 1 << 20
LINE_BYTES = 1 << 16

# The lessons started in a session of their own, which stop_script stops group and all, and
# those of them not stopped yet (stop_every_lesson stops them).
_IN_OWN_SESSION: weakref.WeakSet[subprocess.Popen[str]] = weakref.WeakSet()
_RUNNING_IN_OWN_SESSION: set[subprocess.Popen[str]] = set()


class RedisBuildError(Exception):
    """``./redis_setup.sh build`` failed; the message holds what it printed."""


def redis_bin_dir() -> Path:
    """Where redis-server and its tools are: REDIS_BIN_DIR, else what ``./redis_setup.sh build`` prints last.

    The script builds Redis once (later calls find the build in its cache). Only it knows
    which build it made (its cache directory names the version and any Debian revision), so
    the path is never guessed here.
    """
    if os.environ.get("REDIS_BIN_DIR"):
        return Path(os.environ["REDIS_BIN_DIR"])
    built = subprocess.run(
        [str(ROOT / "redis_setup.sh"), "build"], capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        raise RedisBuildError(f"./redis_setup.sh build failed:\n{built.stdout}{built.stderr}")
    return Path(built.stdout.splitlines()[-1])


def script_env(url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "REDIS_URL": url, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("PYTHONWARNINGS", None)
    return env


def run_script(
    name: str,
    url: str,
    *args: str,
    timeout: float = SCRIPT_TIMEOUT_SECONDS,
    cwd: Path = ROOT,
    own_session: bool = False,
    launcher: tuple[str, ...] = (),
    **extra_env: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``python NAME`` from ``cwd`` (the project root), as a learner does, and capture its output.

    One still running after ``timeout`` is stopped as Ctrl-C would stop it; then
    ``subprocess.TimeoutExpired`` is raised, carrying what it printed.
    """
    process = start_script(name, url, *args, cwd=cwd, own_session=own_session, launcher=launcher, **extra_env)
    output = Output(process)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stdout, stderr = end_lesson(process, output, signal.SIGINT, SCRIPT_STOP_SECONDS)
        raise subprocess.TimeoutExpired(process.args, timeout, stdout, stderr) from None
    except BaseException:  # Ctrl-C: the lesson goes too
        end_lesson(process, output, signal.SIGINT, SCRIPT_STOP_SECONDS)
        raise
    stdout, stderr = end_lesson(process, output, signal.SIGINT, SCRIPT_STOP_SECONDS)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def start_script(
    name: str,
    url: str,
    *args: str,
    cwd: Path = ROOT,
    own_session: bool = False,
    launcher: tuple[str, ...] = (),
    **extra_env: str,
) -> subprocess.Popen[str]:
    """Start a long-running lesson (a subscriber, a processor, a server) in the background."""
    process = subprocess.Popen(
        [*launcher, sys.executable, name, *args],
        cwd=cwd,
        env=script_env(url, **extra_env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=own_session,
    )
    if own_session:
        _IN_OWN_SESSION.add(process)
        _RUNNING_IN_OWN_SESSION.add(process)
    return process


class Output:
    """A lesson's stdout and stderr, read to their end in the background (so it never blocks writing)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._parts: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._readers = [
            threading.Thread(target=self._read, args=(stream, self._parts[name]), daemon=True)
            for name, stream in (("stdout", process.stdout), ("stderr", process.stderr))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, parts: list[str]) -> None:
        """Read the pipe's bytes as they come: a text read waits for a whole chunk, which never
        comes while a process that escaped the lesson's group still holds the pipe open."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        kept = 0
        try:
            # A stream that a caller already read to its end with communicate() is closed: nothing left.
            while not stream.closed and (chunk := os.read(stream.fileno(), 4096)):
                if kept < OUTPUT_BYTES:
                    parts.append(decoder.decode(chunk[: OUTPUT_BYTES - kept]))
                    kept += len(chunk)
            parts.append(decoder.decode(b"", final=True))
        except (ValueError, OSError):  # closed by such a caller meanwhile
            pass

    def text(self, timeout: float) -> tuple[str, str]:
        """(stdout, stderr) once both are closed, or what came within ``timeout``."""
        deadline = time.monotonic() + timeout
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        return "".join(self._parts["stdout"]), "".join(self._parts["stderr"])


def signal_lesson(process: subprocess.Popen[str], sig: int) -> None:
    """Signal the lesson; one in a session of its own with every process of its group."""
    try:
        if process in _IN_OWN_SESSION:
            os.killpg(process.pid, sig)
        elif process.poll() is None:
            process.send_signal(sig)
    except ProcessLookupError:  # it has ended, and so has all of its group
        pass


def end_lesson(process: subprocess.Popen[str], output: Output, sig: int, timeout: float) -> tuple[str, str]:
    """Signal a lesson still running, kill it if it is still there ``timeout`` s later; its output.

    Once it has exited, what is left of its own group is killed: while any process of the
    group lives, no new group can take its id, so this reaches only the lesson's leftovers.
    """
    if process.poll() is None:
        signal_lesson(process, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        signal_lesson(process, signal.SIGKILL)
        process.kill()
        process.wait()
    if process in _IN_OWN_SESSION:
        signal_lesson(process, signal.SIGKILL)
        _RUNNING_IN_OWN_SESSION.discard(process)
    return output.text(KILLED_OUTPUT_SECONDS)


def stop_script(
    process: subprocess.Popen[str], sig: int = signal.SIGINT, timeout: float = 20
) -> tuple[str, str]:
    """Stop a background lesson as Ctrl-C would and return its (stdout, stderr).

    One that has not exited ``timeout`` seconds later is killed.
    """
    return end_lesson(process, Output(process), sig, timeout)


def stop_every_lesson() -> None:
    """Stop the lessons started in sessions of their own that nothing stopped yet (after Ctrl-C, say)."""
    for process in list(_RUNNING_IN_OWN_SESSION):
        stop_script(process)


def lines(text: str) -> list[str]:
    return text.splitlines()


def wait_for_line(
    process: subprocess.Popen[str], wanted: str | re.Pattern[str], timeout: float = 20
) -> list[str]:
    """Read a background lesson's output up to and including the line ``wanted`` (text or pattern).

    Returns the lines read; if ``wanted`` never came (timeout, or the program ended),
    the list simply does not end with it. It reads the pipe a byte at a time, and only until
    then: what follows stays in the pipe for the next reader (``communicate()`` reads the
    pipe itself, and never sees what a buffered read took ahead of it).
    """
    seen: list[str] = []
    line = bytearray()
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            break
        byte = os.read(fd, 1)
        if byte not in (b"\n", b""):
            if len(line) < LINE_BYTES:
                line += byte
            continue
        if line or byte:
            seen.append(line.decode(errors="replace"))
            line.clear()
        if not byte or (seen[-1] == wanted if isinstance(wanted, str) else wanted.fullmatch(seen[-1])):
            break
    return seen
