"""The course's ``pytest 8_job.test.py``, run by a Python that has pytest and none of the project's
dependencies (outside the virtual environment): one line saying how to install them, no traceback.

The throwaway virtual environment gets pytest alone: its files and its requirements', copied
from this one (no network needed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from importlib.metadata import Distribution, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
RUN_SECONDS = 60


def with_requirements(name: str) -> dict[str, Distribution]:
    """The distribution ``name`` and those it requires on this Python, by name."""
    found: dict[str, Distribution] = {}
    pending = [name]
    while pending:
        dist = distribution(pending.pop())
        if dist.metadata["Name"].lower() in found:
            continue
        found[dist.metadata["Name"].lower()] = dist
        for requirement in map(Requirement, dist.requires or []):
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return found


def copy_into(dist: Distribution, site_packages: Path) -> None:
    """A distribution's files inside its site-packages (not its scripts, which lie outside)."""
    for file in dist.files or []:
        if file.parts[0] == "..":
            continue
        target = site_packages / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(dist.locate_file(file), target)


@pytest.fixture(scope="module")
def python_with_pytest_alone(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("pytest-alone")
    venv.create(home, with_pip=False)
    python = home / "bin" / "python"
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for dist in with_requirements("pytest").values():
        copy_into(dist, Path(site_packages))
    return python


def test_the_course_test_file_outside_the_venv_is_one_line(python_with_pytest_alone):
    # Nothing of this environment's may reach that Python: no PYTHONPATH, no user site, no pytest options.
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PYTHON", "PYTEST"))}
    result = subprocess.run(
        [python_with_pytest_alone, "-m", "pytest", "8_job.test.py"],
        cwd=ROOT,
        env={**env, "PYTHONNOUSERSITE": "1"},
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
        check=False,
    )

    assert (result.returncode, result.stdout) == (pytest.ExitCode.USAGE_ERROR, ""), result.stderr
    assert result.stderr.splitlines() == [
        "Exit: redis, rq, flask, granian, fakeredis, pytest_redis, hypothesis not installed for "
        f"{python_with_pytest_alone}: run `make install` in the project, "
        "then `.venv/bin/pytest 8_job.test.py`"
    ]
