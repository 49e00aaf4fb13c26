"""Run the lessons the way a learner does: ``python NAME`` from the project root, REDIS_URL set.

``make tour`` and the tests both drive the numbered scripts through these functions.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_TIMEOUT_SECONDS = 60


def script_env(url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "REDIS_URL": url, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("PYTHONWARNINGS", None)
    return env


def run_script(
    name: str, url: str, *args: str, timeout: float = SCRIPT_TIMEOUT_SECONDS, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python NAME`` from the project root, as a learner does, and capture its output."""
    return subprocess.run(
        [sys.executable, name, *args],
        cwd=ROOT,
        env=script_env(url, **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_script(name: str, url: str, *args: str, **extra_env: str) -> subprocess.Popen[str]:
    """Start a long-running lesson (a subscriber, a processor, a server) in the background."""
    return subprocess.Popen(
        [sys.executable, name, *args],
        cwd=ROOT,
        env=script_env(url, **extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_script(
    process: subprocess.Popen[str], sig: int = signal.SIGINT, timeout: float = 20
) -> tuple[str, str]:
    """Stop a background lesson as Ctrl-C would and return its (stdout, stderr)."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


def lines(text: str) -> list[str]:
    return text.splitlines()


def wait_for_line(
    process: subprocess.Popen[str], wanted: str | re.Pattern[str], timeout: float = 20
) -> list[str]:
    """Read a background lesson's output up to and including the line ``wanted`` (text or pattern).

    Returns the lines read; if ``wanted`` never came (timeout, or the program ended),
    the list simply does not end with it.
    """
    seen: list[str] = []

    def read_until_wanted() -> None:
        for line in process.stdout:
            seen.append(line.rstrip("\n"))
            if seen[-1] == wanted if isinstance(wanted, str) else wanted.fullmatch(seen[-1]):
                return

    reader = threading.Thread(target=read_until_wanted, daemon=True)
    reader.start()
    reader.join(timeout)
    return list(seen)
