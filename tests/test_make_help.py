"""``make help`` (and ``make`` alone) lists every target with its one-line description.

The descriptions are the Makefile's ``## target: what it does`` lines; a target added without
one is missing from the list, and this test says which.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = ROOT / "Makefile"
HELP_LINE = re.compile(r"  (\S+) +(\S.*)")
MAKE_SETTINGS = frozenset({"MAKEFLAGS", "MAKELEVEL", "MFLAGS"})


def phony_targets() -> set[str]:
    (line,) = [line for line in MAKEFILE.read_text().splitlines() if line.startswith(".PHONY:")]
    return set(line.removeprefix(".PHONY:").split())


def make(*args: str) -> subprocess.CompletedProcess:
    # Without the MAKEFLAGS of a make that may run the tests: its -j or -n would change the answer.
    env = {
        name: value for name, value in os.environ.items() if name not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}
    }
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture(scope="module")
def make_available() -> None:
    if subprocess.run(["make", "--version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("make is not installed")


@pytest.mark.parametrize("args", [["help"], []], ids=["make help", "make"])
def test_make_help_lists_every_target_with_its_description(args, make_available):
    result = make(*args)

    assert (result.returncode, result.stderr) == (0, "")
    listed = dict(HELP_LINE.fullmatch(line).groups() for line in result.stdout.splitlines())
    assert set(listed) == phony_targets()
    assert (
        listed["tour"] == "every course task in order, each compared with the course, on a Redis of its own"
    )
    # Shell defaults as a reader would type them, not make's $$ escape.
    assert "${DASHBOARD_PORT:-9181}" in listed["dashboard"]


def test_make_help_runs_nothing(make_available):
    """Only the list: ``make -n`` shows the one command it runs, which sets nothing up."""
    (command,) = make("-n", "help").stdout.splitlines()

    assert command.startswith("sed ")
