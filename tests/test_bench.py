"""The benchmarks still run: each mode of ``bench/jobs.py`` on a few jobs, against a real Redis.

They measure nothing here (speed is read from ``bench/``'s own runs, never asserted); this
checks that they work with the lessons and the course package as they are now, and that
every job they create ends.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from checker.lessons import ROOT, script_env
from tests.support import REDIS_BIN

BENCH_TIMEOUT_SECONDS = 120


def run_bench(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "bench/jobs.py", "--get-requests", "2000", *args],
        cwd=ROOT,
        env=script_env(redis_url, REDIS_BIN_DIR=str(REDIS_BIN)),
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_SECONDS,
    )


@pytest.mark.parametrize(
    "args, first_line",
    [
        (["--jobs", "22"], "22 jobs on push_notification_code_2, 2 workers"),
        (
            ["--stock-rq", "--jobs", "20"],
            "20 jobs that do nothing (time.time), 2 plain rq workers (SimpleWorker)",
        ),
        (["--profile-worker", "--jobs", "11"], "one worker, 11 jobs enqueued first"),
    ],
)
def test_each_mode_of_the_jobs_benchmark_runs(redis_url, args, first_line):
    result = run_bench(redis_url, *args)

    assert (result.returncode, result.stderr) == (0, "")
    assert first_line in result.stdout.splitlines()
    assert "round trips per job" in result.stdout


def test_the_processor_against_plain_rq_prints_each_round_and_their_median_ratio(redis_url):
    result = run_bench(redis_url, "--versus-stock-rq", "--jobs", "22", "--rounds", "2")

    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "round 1",
        "round 2",
        "task 7's processor / plain RQ, median of 2 rounds",
    ]
    assert re.fullmatch(r"task 7's processor / plain RQ, median of 2 rounds: \d+\.\d\dx", lines[-1])
