"""``make tour`` itself: on a Redis of its own, every task matches and nothing is left running."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

from course.lessons import ROOT

pytestmark = pytest.mark.timeout(900)


def processes_using(redis_url: str) -> list[int]:
    """Pids of the processes whose environment points them at ``redis_url``."""
    marker = f"REDIS_URL={redis_url}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return pids


@pytest.fixture
def tour_port() -> Iterator[int]:
    """A free port for the tour's own Redis; its data directory is removed afterwards."""
    port = free_port()
    yield port
    shutil.rmtree(ROOT / ".redis" / str(port), ignore_errors=True)


def test_the_tour_matches_every_task_and_stops_what_it_started(tour_port):
    env = {**os.environ, "REDIS_PORT": str(tour_port)}

    result = subprocess.run(
        [sys.executable, "-m", "course.tour"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=840
    )

    assert result.stdout.splitlines()[-1] == "11/11 tasks match the course", result.stdout[-3000:]
    assert result.returncode == 0
    assert "Traceback" not in result.stdout + result.stderr
    # The Redis it started for the tour is stopped again, and no lesson is left behind.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", tour_port), timeout=1).close()
    assert processes_using(f"redis://127.0.0.1:{tour_port}/0") == []
