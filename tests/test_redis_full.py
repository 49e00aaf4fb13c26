"""Redis refusing writes (out of memory, with ``maxmemory`` and ``noeviction``) is a resource fault
like Redis being away: task 7's processor started while Redis is full says so in one line and
waits, with no traceback, no crash loop and no stale worker entry; once memory is freed it
processes the course's jobs, and every job's recorded outcome is what happened. The same holds
for a processor that runs while Redis is filled and freed in turns and jobs keep coming. A
creator started on a full Redis says so in one line, exits 1, and leaves nothing behind.

The test's own redis-server, filled to its ``maxmemory`` and freed.
"""

from __future__ import annotations

import signal
import time

from course import expected
from course.events import JobEvent
from course.jobs import course_queue

import pytest
import redis
from rq import Worker
from rq.job import JobStatus

from checker.lessons import Output, lines, run_script, wait_for_line
from tests.support import JobListener, Task7Feeder, defunct_below, stopped_output

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


@pytest.mark.parametrize("script", ["6_job_creator.py", "7_job_creator.py"])
def test_a_creator_on_a_full_redis_says_so_in_one_line_and_creates_nothing(own_redis, script):
    client = redis.Redis.from_url(own_redis.url)
    assert fill(client) > 0
    keys_before = set(client.keys())

    creator = run_script(script, own_redis.url, timeout=EVENTS_TIMEOUT_SECONDS)

    assert (creator.stdout, creator.returncode) == ("", 1)
    assert creator.stderr == "Redis error: command not allowed when used memory > 'maxmemory'.\n"
    assert set(client.keys()) == keys_before


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


# Filled and freed in turns while a processor runs and a creator keeps enqueueing ---------------

TURNS = 3
FULL_SECONDS = 3.0
FREE_SECONDS = 2.0
FEED_BATCH = 3


def test_a_processor_through_redis_filled_and_freed_in_turns_records_every_outcome_truly(
    own_redis, rq_redis, processors
):
    """Jobs enqueued while writes come and go: each one run once, its outcome true, nothing left."""
    processor = processors("7_job_processor.py")
    output = Output(processor)
    queue = course_queue("push_notification_code_2", rq_redis)
    heard: list[JobEvent] = []
    listener = JobListener(queue, heard.append).start()
    feeder = Task7Feeder(
        listener.watch,
        FEED_BATCH,
        refused=(redis.exceptions.OutOfMemoryError, redis.exceptions.ExecAbortError),
    )
    feeder.start()
    seen_defunct: list[int] = []
    try:
        for _ in range(TURNS):
            assert fill(rq_redis) > 0
            time.sleep(FULL_SECONDS)
            seen_defunct += defunct_below(processor.pid)
            rq_redis.delete(*rq_redis.keys("filler:*"))
            time.sleep(FREE_SECONDS)
        feeder.stop()
        deadline = time.monotonic() + EVENTS_TIMEOUT_SECONDS
        while any(job_id in listener.watch.pending for job_id in feeder.sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = Worker.all(connection=rq_redis)
        processor.send_signal(signal.SIGINT)
        processor.wait(timeout=EVENTS_TIMEOUT_SECONDS)
        printed, errors = output.text(EVENTS_TIMEOUT_SECONDS)
    finally:
        feeder.stop()
        listener.stop()

    assert len(feeder.sent) > TURNS * FEED_BATCH
    assert seen_defunct == []
    assert (errors, processor.returncode) == ("", 0)
    assert {line for line in lines(printed) if not line.startswith("Sending notification to ")} <= {REFUSAL}
    assert len(workers) == 2
    assert Worker.all(connection=rq_redis) == []
    for job_id, data in feeder.sent.items():
        assert [event.line("Notification job") for event in heard if event.job_id == job_id] == (
            expected.task7_events(data, int(job_id))
        ), job_id
        blacklisted = data["phoneNumber"] in expected.BLACKLISTED
        wanted = JobStatus.FAILED if blacklisted else JobStatus.FINISHED
        assert queue.fetch_job(job_id).get_status() == wanted, job_id
    assert queue.job_ids == [] and queue.intermediate_queue.get_job_ids() == []
