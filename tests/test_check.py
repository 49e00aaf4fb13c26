"""``make check DIR=...``: the course run against small solution folders built in a temporary directory.

A correct folder (copies of the project's scripts) matches 11/11 and leaves both the folder and
the learner's Redis as they were; a wrong line shows a diff; a hanging processor is stopped and
reported; an overselling stock API gets a warning; a partial folder lists what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from course import expected, tour
from course.lessons import ROOT
from course.tour import TASKS, Outcome, diff

import pytest

from tests.support import assert_nothing_left_running, free_port, learner_env, run_port, snapshot

pytestmark = [pytest.mark.long, pytest.mark.timeout(600)]

# A bound for a broken run, not an expectation of speed: a hung check fails the test.
CHECK_TIMEOUT_SECONDS = 540
COURSE_FILES = [file for task in TASKS for file in task.files]


def solution(directory: Path, files: list[str], **written: str) -> Path:
    """A solution folder: copies of the project's ``files``, and ``written`` files (name: source)."""
    directory.mkdir()
    for name in files:
        shutil.copy2(ROOT / name, directory / name)
    for name, source in written.items():
        (directory / name).write_text(source)
    return directory


def check(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "course.check", str(folder), *args],
        cwd=ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_SECONDS,
    )


def folder_state(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mode)
        for path in folder.rglob("*")
        if path.is_file()
    }


def assert_finished_cleanly(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert_nothing_left_running(run_port(result.stdout))


def test_a_correct_solution_matches_every_task_and_nothing_of_the_learners_changes(tmp_path, learner_redis):
    folder = solution(tmp_path / "correct", COURSE_FILES)
    files_before = folder_state(folder)
    redis_before = snapshot(learner_redis.url)

    result = check(folder, env=learner_env(learner_redis.url, learner_redis.port))

    assert result.stdout.splitlines()[-1] == "11/11 tasks match the course", result.stdout[-3000:]
    assert result.returncode == 0
    assert "--- pytest 8_job.test.py (the course's tests)\n  | 14 passed" in result.stdout
    assert "100 requests for item 1, 4 in stock: " in result.stdout
    assert "warning" not in result.stdout  # neither API oversells
    assert folder_state(folder) == files_before  # no dump.rdb, no .redis, nothing rewritten
    assert snapshot(learner_redis.url) == redis_before
    assert_finished_cleanly(result)


WRONG_REPLY = (ROOT / "1_redis_op.py").read_text().replace("{'OK' if reply else reply}", "{reply}")
CRASHING_CLIENT = 'raise RuntimeError("no server for me")\n'
# Task 8 without its input check: the course's tests of it fail.
NO_INPUT_CHECK = (
    (ROOT / "8_job.py")
    .read_text()
    .replace('raise NotAnArrayError("Jobs is not an array")', "jobs = list(jobs)")
)


def test_a_wrong_line_is_shown_as_a_diff_and_a_crash_with_its_stderr(tmp_path):
    assert (ROOT / "1_redis_op.py").read_text() != WRONG_REPLY
    folder = solution(
        tmp_path / "wrong",
        ["8_job_main.py"],
        **{"1_redis_op.py": WRONG_REPLY, "0_redis_client.py": CRASHING_CLIENT, "8_job.py": NO_INPUT_CHECK},
    )

    result = check(folder)

    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "0/11 tasks match the course"
    task2 = result.stdout.split("== Task 2")[1].split("== Task 3")[0]
    assert "✗ Task 2: differs from the course" in task2
    assert "--- expected\n        +++ got\n" in task2
    assert "        -Reply: OK\n        +Reply: True\n" in task2
    task1 = result.stdout.split("== Task 1")[1].split("== Task 2")[0]
    assert "0_redis_client.py exited with status 1" in task1
    assert "RuntimeError: no server for me" in task1
    task8 = result.stdout.split("== Task 8")[1].split("== Task 9")[0]
    assert "the course's 8_job.test.py does not pass" in task8
    assert "✗ Task 8: differs from the course" in task8
    assert_finished_cleanly(result)


HANGING_PROCESSOR = """\
import signal
import time

# A processor that never takes a job and ignores Ctrl-C.
signal.signal(signal.SIGINT, signal.SIG_IGN)
time.sleep(3600)
"""


def test_a_hanging_processor_is_stopped_and_reported(tmp_path):
    folder = solution(tmp_path / "hanging", ["6_job_creator.py"], **{"6_job_processor.py": HANGING_PROCESSOR})

    result = check(folder, "--timeout", "5")

    assert result.returncode == 1
    task6 = result.stdout.split("== Task 6")[1].split("== Task 7")[0]
    assert "6_job_creator.py was still running after 5 s: stopped (does it hang?)" in task6
    assert "6_job_processor.py did not stop on Ctrl-C within 5 s: killed" in task6
    assert "✗ Task 6: differs from the course" in task6
    assert_finished_cleanly(result)


# The course's JavaScript, in Flask: read the stock, wait a moment, write it back less one.
OVERSELLING_STOCK = f"""\
import json
import os
import time

import redis
from flask import Flask, Response

PRODUCTS = {json.dumps(expected.PRODUCTS)}
app = Flask(__name__)
db = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


def answer(value):
    return Response(json.dumps(value, separators=(",", ":")), mimetype="application/json")


def product(item_id):
    return next((item for item in PRODUCTS if item["itemId"] == item_id), None)


def stock(item):
    left = db.get(f"item.{{item['itemId']}}")
    return item["initialAvailableQuantity"] if left is None else int(left)


@app.get("/list_products")
def list_products():
    return answer(PRODUCTS)


@app.get("/list_products/<int:item_id>")
def one_product(item_id):
    item = product(item_id)
    if item is None:
        return answer({{"status": "Product not found"}})
    return answer({{**item, "currentQuantity": stock(item)}})


@app.get("/reserve_product/<int:item_id>")
def reserve(item_id):
    item = product(item_id)
    if item is None:
        return answer({{"status": "Product not found"}})
    left = stock(item)
    if left < 1:
        return answer({{"status": "Not enough stock available", "itemId": item_id}})
    time.sleep(0.2)
    db.set(f"item.{{item_id}}", left - 1)
    return answer({{"status": "Reservation confirmed", "itemId": item_id}})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "1245")), threaded=True)
"""


def test_an_overselling_stock_api_matches_the_session_and_gets_a_warning(tmp_path):
    folder = solution(tmp_path / "overselling", [], **{"9_stock.py": OVERSELLING_STOCK})

    result = check(folder)

    task9 = result.stdout.split("== Task 9")[1].split("== Task 10")[0]
    assert "✓ Task 9: matches the course" in task9, task9
    assert "! warning: reservations oversell: " in task9
    assert "100 requests for item 1, 4 in stock: 4 confirmed" not in task9
    assert result.stdout.splitlines()[-1] == "1/11 tasks match the course"
    assert result.returncode == 0  # a warning, not a failure
    assert_finished_cleanly(result)


# Task 1 through a helper module of the learner's own, beside the script.
CLIENT_WITH_HELPER = "from my_helpers import say_connected\n\nsay_connected()\n"
MY_HELPERS = """\
from course.connection import announce_connection
from course.settings import redis_url
from redis import Redis


def say_connected():
    announce_connection(Redis.from_url(redis_url()))
"""


def test_a_partial_solution_lists_the_missing_tasks(tmp_path):
    folder = solution(
        tmp_path / "partial",
        ["redis_setup.sh", "1_redis_op.py", "2_redis_op_async.py"],
        **{"0_redis_client.py": CLIENT_WITH_HELPER, "my_helpers.py": MY_HELPERS},
    )

    result = check(folder)

    assert result.returncode == 0, result.stdout[-3000:]
    assert result.stdout.splitlines()[-1] == "4/11 tasks match the course"
    assert "✓ Task 0: matches the course" in result.stdout
    for task in TASKS[4:]:
        assert f"  - Task {task.number}: missing {', '.join(task.files)}\n" in result.stdout
    assert f"Not in {folder}: tasks 4, 5, 6, 7, 8, 9, 10" in result.stdout
    assert_finished_cleanly(result)


def test_a_folder_without_the_course_files_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()

    nothing = check(empty)
    no_folder = check(tmp_path / "nowhere")

    assert nothing.returncode == 1
    assert nothing.stdout.startswith(f"No course file in {empty}: nothing to check")
    assert no_folder.returncode == 2
    assert "is not a folder" in no_folder.stderr
    assert "Traceback" not in nothing.stderr + no_folder.stderr


def test_a_long_diff_is_cut_to_twenty_lines():
    shown = diff([f"line {n}" for n in range(50)], [f"other {n}" for n in range(50)])

    assert len(shown.splitlines()) == 20
    assert shown.splitlines()[:2] == ["--- expected", "+++ got"]
    assert shown.splitlines()[-1].endswith("more lines)")


def task7_output(drop: str | None = None) -> list[str]:
    """Task 7's creator output with ids 1 to 11, two jobs' lines interleaved, maybe one line dropped."""
    ids = range(1, 12)
    jobs = zip(expected.TASK7_JOBS, ids, strict=True)
    events = [line for job, job_id in jobs for line in expected.task7_events(job, job_id)]
    events[3], events[4] = events[4], events[3]  # job 3 starts before job 2 has failed
    return [*map(expected.created_line, ids), *(line for line in events if line != drop)]


def test_task_7_lines_are_gathered_job_by_job_so_the_diff_shows_only_what_is_wrong():
    interleaved = task7_output()
    assert expected.check_task7_creator(interleaved) == []
    assert expected.task7_in_job_order(interleaved) == expected.task7_creator_wanted(interleaved)

    missing = task7_output(drop="Notification job 5 50% complete")
    outcome = Outcome()
    outcome.check(
        "7_job_creator.py",
        missing,
        expected.check_task7_creator(missing),
        expected.task7_creator_wanted(missing),
        expected.task7_in_job_order(missing),
    )

    changed = [
        line for line in outcome.problems[0].splitlines() if line[:1] in "+-" and line[:3] not in "---+++"
    ]
    assert changed == ["-Notification job 5 50% complete"]


def test_a_server_that_ignores_port_is_reached_on_its_fixed_port(tmp_path, redis_url, monkeypatch):
    # The course's 1245 stands for any fixed port here: tests never bind the default ports.
    fixed_port = free_port()
    monkeypatch.setattr(tour, "COURSE_PORT", fixed_port)
    ignoring_port = OVERSELLING_STOCK.replace('int(os.environ.get("PORT", "1245"))', str(fixed_port))
    assert ignoring_port != OVERSELLING_STOCK
    folder = solution(tmp_path / "fixed-port", [], **{"9_stock.py": ignoring_port})

    outcome = tour.task_stock(redis_url, tour.Lessons(folder=folder))

    assert outcome.problems == []
    assert ("9_stock.py ignores PORT", [f"it serves on {fixed_port}, the course's port"]) in outcome.blocks
    assert outcome.warnings[0].startswith("reservations oversell: ")
