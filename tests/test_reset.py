"""``make reset``: the course's fresh state back on the learner's Redis, and nothing else changed."""

from __future__ import annotations

import os
import subprocess
import sys

from course import expected
from course.ids import JOB_IDS_KEY
from course.jobs import course_queue
from course.keys import RESET_HINT

import pytest
import redis

from checker.lessons import ROOT, lines, run_script, start_script, wait_for_line
from tests.support import end_for_good, learner_env, running, snapshot


def reset(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "course.reset"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def course_keys() -> set[bytes]:
    keys = [expected.stock_key(product["itemId"]) for product in expected.PRODUCTS]
    keys += [expected.AVAILABLE_SEATS_KEY, expected.RESERVATION_ENABLED_KEY, expected.SCHOOLS_HASH_KEY]
    return {key.encode() for key in keys}


def without_course_keys(state: dict) -> dict:
    """A snapshot less the course's keys in database 0: what reset must leave alone."""
    keys = {
        (database, key): value
        for (database, key), value in state["keys"].items()
        if not (database == 0 and key in course_keys())
    }
    return {"keys": keys, "queues": state["queues"]}


def test_reset_puts_back_the_course_keys_and_touches_nothing_else(learner_redis):
    before = snapshot(learner_redis.url)

    result = reset(learner_env(learner_redis.url, learner_redis.port))

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert lines(result.stdout) == [
        f"Course state restored on 127.0.0.1:{learner_redis.port}/0: item.1=4, item.2=10, item.3=2, item.4=5,"
        " available_seats=50, reservation_enabled=true",
        "HolbertonSchools (task 4's hash) removed",
    ]
    with redis.Redis.from_url(learner_redis.url, decode_responses=True) as client:
        assert client.mget(expected.stock_key(n) for n in (1, 2, 3, 4)) == ["4", "10", "2", "5"]
        assert client.get(expected.AVAILABLE_SEATS_KEY) == "50"
        assert client.get(expected.RESERVATION_ENABLED_KEY) == "true"
        assert not client.exists(expected.SCHOOLS_HASH_KEY)
    after = snapshot(learner_redis.url)
    assert without_course_keys(after) == without_course_keys(before)
    assert len(without_course_keys(before)["keys"]) > 10  # the learner's strings, jobs, queues...


def test_after_a_reset_the_course_transcripts_hold_again(learner_redis):
    env = learner_env(learner_redis.url, learner_redis.port)
    assert reset(env).returncode == 0
    assert "HolbertonSchools (task 4's hash) was not there" in reset(env).stdout  # a second reset

    task4 = run_script("4_redis_advanced_op.py", learner_redis.url)
    with running(learner_redis.url) as server:
        answers = [server.request(path).body for path in ("/list_products/1", "/reserve_product/1")]

    assert lines(task4.stdout) == expected.REDIS_ADVANCED_OP
    assert answers == [expected.product_body(4), expected.RESERVATION_CONFIRMED]


def test_reset_without_redis_says_so_in_the_course_words(dead_redis_url):
    result = reset({**os.environ, "REDIS_URL": dead_redis_url})

    assert result.returncode == 1
    assert len(lines(result.stdout)) == 1
    assert result.stdout.startswith(expected.NOT_CONNECTED_PREFIX)
    assert "Traceback" not in result.stdout + result.stderr


# The job id counter (issue: a poisoned counter) -------------------------------------------------

POISONS = {"not-a-number": "abc", "at-its-end": str(2**63 - 1)}


@pytest.mark.parametrize("poison", POISONS.values(), ids=POISONS.keys())
def test_a_poisoned_job_id_counter_is_one_line_naming_it_and_make_reset_repairs_it(
    poison, redis_url, rq_redis
):
    queue = course_queue("push_notification_code", rq_redis)
    kept = queue.enqueue("6_job_processor.send_notification_job", {}, job_id="41")
    rq_redis.set(JOB_IDS_KEY, poison)

    creators = [run_script(script, redis_url) for script in ("6_job_creator.py", "7_job_creator.py")]
    repaired = reset({**os.environ, "REDIS_URL": redis_url})
    after = start_script("6_job_creator.py", redis_url)
    created = wait_for_line(after, expected.CREATED)
    end_for_good(after, own_session=False)

    for creator in creators:
        assert (creator.stdout, creator.returncode) == ("", 1)
        assert creator.stderr == (
            f"{JOB_IDS_KEY} in Redis does not hold a job id counter that can grow ({RESET_HINT})\n"
        )
    assert repaired.returncode == 0
    assert lines(repaired.stdout)[-1] == (
        f"{JOB_IDS_KEY} (the job id counter) could not grow: set to 41, the highest job id RQ keeps"
    )
    # The next id is past every job RQ keeps: none is overwritten.
    assert created == ["Notification job created: 42"]
    assert queue.fetch_job(kept.id).args == [{}]


def test_reset_removes_a_counter_of_another_type_when_no_job_is_left(redis_url, rq_redis):
    rq_redis.hset(JOB_IDS_KEY, "n", 1)

    result = reset({**os.environ, "REDIS_URL": redis_url})

    assert (
        lines(result.stdout)[-1]
        == f"{JOB_IDS_KEY} (the job id counter) could not grow: removed, no job is left"
    )
    assert not rq_redis.exists(JOB_IDS_KEY)


def test_reset_leaves_a_valid_counter_alone(redis_url, rq_redis):
    rq_redis.set(JOB_IDS_KEY, 7)

    result = reset({**os.environ, "REDIS_URL": redis_url})

    assert len(lines(result.stdout)) == 2
    assert rq_redis.get(JOB_IDS_KEY) == b"7"
