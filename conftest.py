"""Before pytest collects anything: a Python without the project's dependencies is told, in one line,
how to get them.

``pytest 8_job.test.py`` run by a Python outside the project's virtual environment would import
the course's package while collecting the file; the package's own check then ends the process in
the middle of collection, which pytest reports as forty lines of INTERNALERROR. This check looks
the modules up without importing any of them.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys

import pytest

# What the course's tests import: the project's dependencies and its test extra's (pyproject.toml).
TEST_MODULES = ("redis", "rq", "flask", "granian", "fakeredis", "pytest_redis", "hypothesis")


def missing_modules() -> list[str]:
    return [name for name in TEST_MODULES if importlib.util.find_spec(name) is None]


def install_hint(missing: list[str], args: list[str]) -> str:
    command = shlex.join([".venv/bin/pytest", *args])
    return (
        f"{', '.join(missing)} not installed for {sys.executable}: "
        f"run `make install` in the project, then `{command}`"
    )


def pytest_configure(config: pytest.Config) -> None:
    missing = missing_modules()
    if missing:
        pytest.exit(install_hint(missing, list(config.invocation_params.args)), pytest.ExitCode.USAGE_ERROR)
