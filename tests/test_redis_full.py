"""Redis refusing writes (out of memory, with ``maxmemory`` and ``noeviction``) is a resource fault
like Redis being away: task 7's processor started while Redis is full says so in one line and
waits, with no traceback, no crash loop and no stale worker entry; once memory is freed it
processes the course's jobs, and every job's recorded outcome is what happened.

The test's own redis-server, filled to its ``maxmemory`` and freed.
"""

from __future__ import annotations

import time

from course import expected
from course.events import course_queue

import pytest
import redis
from rq import Worker
from rq.job import JobStatus

from checker.lessons import lines, run_script, wait_for_line
from tests.support import stopped_output

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

MAXMEMORY = "4mb"
FILLER = b"x" * 20_000
REFUSAL = "Redis refuses writes: command not allowed when used memory > 'maxmemory'."
# Long enough for the processor to retry its start-up more than once.
FULL_FOR_SECONDS = 15
EVENTS_TIMEOUT_SECONDS = 60


@pytest.fixture
def redis_url(own_redis) -> str:
    """The test's own Redis, for conftest's ``launch``."""
    return own_redis.url


def fill(client: redis.Redis) -> int:
    """Write until Redis refuses: the number of filler keys it took."""
    client.config_set("maxmemory", MAXMEMORY)
    client.config_set("maxmemory-policy", "noeviction")
    count = 0
    while True:
        try:
            client.set(f"filler:{count}", FILLER)
        except redis.exceptions.OutOfMemoryError:
            return count
        count += 1


def test_a_processor_started_on_a_full_redis_says_so_once_waits_then_works(own_redis, launch):
    client = redis.Redis.from_url(own_redis.url)
    assert fill(client) > 0

    processor = launch("7_job_processor.py")
    assert wait_for_line(processor, REFUSAL) == [REFUSAL]
    time.sleep(FULL_FOR_SECONDS)
    assert processor.poll() is None
    # Every registered worker is a live one of this processor (a start refused writes nothing).
    assert len(Worker.all(connection=client)) <= 2

    client.delete(*client.keys("filler:*"))
    creator = run_script("7_job_creator.py", own_redis.url, timeout=EVENTS_TIMEOUT_SECONDS)
    workers = Worker.all(connection=client)
    output, errors = stopped_output(processor)

    assert expected.check_task7_creator(lines(creator.stdout)) == []
    assert (creator.stderr, creator.returncode) == ("", 0)
    assert len(workers) == 2
    assert Worker.all(connection=client) == []
    assert [line for line in output if line.startswith("Redis")] == []
    assert expected.check_task7_processor(output) == []
    assert (errors, processor.returncode) == ("", 0)
    # Each job's recorded outcome is what happened: sent, or refused as blacklisted.
    queue = course_queue("push_notification_code_2", client)
    job_ids = [str(job_id) for job_id in expected.created_ids(lines(creator.stdout))]
    for job_id, data in zip(job_ids, expected.TASK7_JOBS, strict=True):
        blacklisted = data["phoneNumber"] in expected.BLACKLISTED
        wanted = JobStatus.FAILED if blacklisted else JobStatus.FINISHED
        assert queue.fetch_job(job_id).get_status() == wanted, job_id
