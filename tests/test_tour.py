"""``make tour`` itself: on a Redis of its own, every task matches, the learner's Redis is left
exactly as it was, every task counts (a missing file fails), and nothing is left running."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from checker.lessons import ROOT
from tests.support import assert_nothing_left_running, learner_env, run_port, snapshot, start_program

pytestmark = [pytest.mark.long, pytest.mark.timeout(900)]

TOUR_TIMEOUT_SECONDS = 840
# What a copy of the project leaves out: the environment, history, data and caches.
NOT_COPIED = shutil.ignore_patterns(
    ".venv", ".git", ".redis", "dump.rdb", "*cache*", "__pycache__", ".hypothesis"
)


def run_tour(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "checker.tour"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TOUR_TIMEOUT_SECONDS,
    )


def redis_data_dirs(root: Path) -> set[str]:
    return {path.name for path in (root / ".redis").glob("*")}


def test_the_tour_matches_every_task_and_leaves_the_learners_redis_as_it_was(
    learner_redis, tmp_path, project_redis_files
):
    temporary = tmp_path / "tmp"  # where the tour keeps its copy and its Redis
    temporary.mkdir()
    env = {**learner_env(learner_redis.url, learner_redis.port), "TMPDIR": str(temporary)}
    before = snapshot(learner_redis.url)
    data_dirs = redis_data_dirs(ROOT)
    dump = (ROOT / "dump.rdb").read_bytes() if (ROOT / "dump.rdb").exists() else None

    result = run_tour(ROOT, env)

    assert result.stdout.splitlines()[-1] == "11/11 tasks match the course", result.stdout[-3000:]
    assert result.returncode == 0
    assert "Traceback" not in result.stdout + result.stderr
    assert "== Task 0: A Redis server (redis_setup.sh)\n  --- redis_setup.sh\n" in result.stdout
    # Every key (value and expiry) and every queued job of the learner's server is as it was.
    assert snapshot(learner_redis.url) == before
    port = run_port(result.stdout)
    assert port != learner_redis.port
    assert_nothing_left_running(port)
    assert redis_data_dirs(ROOT) == data_dirs
    assert list(temporary.iterdir()) == []  # its copy and its Redis's data directory are removed
    assert ((ROOT / "dump.rdb").read_bytes() if (ROOT / "dump.rdb").exists() else None) == dump


@pytest.fixture
def project_copy(tmp_path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=NOT_COPIED)
    return copy


def test_a_missing_task_file_is_a_failure_named_in_the_summary(project_copy):
    (project_copy / "9_stock.py").unlink()

    result = run_tour(project_copy, dict(os.environ))

    assert "Task 9: missing 9_stock.py" in result.stdout, result.stdout[-3000:]
    assert result.stdout.splitlines()[-1] == "10/11 tasks match the course", result.stdout[-6000:]
    assert result.returncode == 1
    assert_nothing_left_running(run_port(result.stdout))


def test_ctrl_c_during_the_tour_stops_everything_it_started(learner_redis, project_redis_files):
    env = learner_env(learner_redis.url, learner_redis.port)
    before = snapshot(learner_redis.url)
    # A terminal's foreground job: Ctrl-C reaches every process of its group.
    tour = start_program([sys.executable, "-m", "checker.tour"], env, own_session=True)
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(tour.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + TOUR_TIMEOUT_SECONDS
    # Task 7's processor runs in the background while its creator waits for the jobs.
    while not any(line.startswith("== Task 7") for line in printed) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert printed, "the tour printed nothing"
    time.sleep(0.5)

    os.killpg(tour.pid, signal.SIGINT)
    tour.wait(timeout=120)
    reader.join(timeout=30)

    assert tour.returncode == 130
    assert "Tour interrupted\n" in printed
    port = run_port("".join(printed))
    assert_nothing_left_running(port)
    assert str(port) not in redis_data_dirs(ROOT)
    assert snapshot(learner_redis.url) == before
