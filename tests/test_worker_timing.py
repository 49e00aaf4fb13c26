"""The processors' timing constants: the relations their comments state, checked on the worker itself.

course/worker.py and course/events.py tune RQ's worker so that a processor killed in the
middle of a job has that job failed about 25 to 35 s after it started (RQ's defaults: ten
minutes and more), while a worker that rides out a Redis restart, retrying its commands,
is never taken for dead. Each of those promises rests on a relation between constants
(job timeout, abandoned-job grace, worker TTL, maintenance interval, retry budget); a
change to one of them that breaks a relation fails here, not in a slow fault test.
"""

from course import connection, worker
from course import events as course_events
from course.events import JOB_TIMEOUT_SECONDS

import fakeredis
import pytest
from redis.backoff import ExponentialBackoff
from rq.job import Job

# What course/worker.py's comments promise.
ABANDONED_JOB_FAILED_AFTER = (25, 35)  # seconds after the job started, at the earliest and latest
RETRY_BUDGET_SECONDS = 11.5  # "0.1, 0.2, 0.4, 0.8 s, then every second: about 11.5 s in all"
# course/connection.py: "three tries against an unroutable host still end well within 10 s".
CONNECT_GIVES_UP_WITHIN_SECONDS = 10


@pytest.fixture
def course_worker() -> worker.CourseWorker:
    return worker.CourseWorker(["push_notification_code"], connection=fakeredis.FakeRedis())


def retry_budget_seconds() -> float:
    """How long a worker's command is tried again before it fails: the sum of its backoff's waits.

    redis-py's Retry waits ``backoff.compute(n)`` after the n-th failure, for n = 1 .. retries.
    """
    backoff = ExponentialBackoff(cap=worker.WORKER_RETRY_CAP_SECONDS, base=worker.WORKER_RETRY_BASE_SECONDS)
    return sum(backoff.compute(failures) for failures in range(1, worker.WORKER_RETRIES + 1))


def course_job() -> Job:
    """A job as the creators make it: the queue's timeout, the course's job timeout."""
    queue = course_events.course_queue("push_notification_code", fakeredis.FakeRedis())
    return queue.enqueue("6_job_processor.send_notification_job", {}, job_id="1")


def test_a_worker_retries_its_commands_for_about_eleven_and_a_half_seconds():
    assert retry_budget_seconds() == pytest.approx(RETRY_BUDGET_SECONDS)


def test_the_worker_uses_those_retries(course_worker):
    retry = course_worker.connection.get_retry()

    assert isinstance(retry, worker.ReportingRetry)
    assert retry.get_retries() == worker.WORKER_RETRIES


def test_the_abandoned_job_grace_outlasts_the_retries():
    """A worker that rode out a Redis restart mid-job is never taken for dead, nor its job for stranded."""
    assert retry_budget_seconds() < worker.ABANDONED_GRACE_SECONDS


def test_creators_jobs_have_the_course_job_timeout():
    assert course_job().timeout == JOB_TIMEOUT_SECONDS


def test_a_running_job_stays_started_for_its_timeout_and_the_grace(course_worker):
    assert (
        course_worker.get_heartbeat_ttl(course_job()) == JOB_TIMEOUT_SECONDS + worker.ABANDONED_GRACE_SECONDS
    )


def test_maintenance_runs_at_every_dequeue(course_worker):
    """Each wait for a job blocks for RQ's dequeue timeout (worker TTL - 15 s), then maintenance is due."""
    assert course_worker.worker_ttl == worker.WORKER_TTL_SECONDS
    assert course_worker.maintenance_interval == worker.MAINTENANCE_INTERVAL_SECONDS
    assert course_worker.dequeue_timeout == worker.WORKER_TTL_SECONDS - 15
    assert course_worker.maintenance_interval < course_worker.dequeue_timeout


def test_a_killed_processors_job_is_failed_25_to_35_seconds_after_it_started(course_worker):
    """Its started entry expires after the job's timeout and the grace; the next maintenance fails it.

    A restarted processor runs maintenance at least once per dequeue wait, so the job is failed
    between the entry's expiry and one dequeue timeout later.
    """
    earliest = course_worker.get_heartbeat_ttl(course_job())
    latest = earliest + max(course_worker.dequeue_timeout, course_worker.maintenance_interval)

    assert (earliest, latest) == ABANDONED_JOB_FAILED_AFTER


def test_connect_gives_up_within_ten_seconds_on_an_unroutable_host():
    tries = connection.CONNECT_ATTEMPTS
    worst_case = (
        tries * connection.SOCKET_CONNECT_TIMEOUT_SECONDS + (tries - 1) * connection.RETRY_DELAY_SECONDS
    )

    assert worst_case < CONNECT_GIVES_UP_WITHIN_SECONDS
