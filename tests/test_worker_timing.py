"""The processors' timing constants: the relations their comments state, checked on the worker itself.

course/worker.py tunes two of RQ's settings so that a job a stopped worker took and never
started goes back to its queue within about half a minute (RQ's defaults: its maintenance
every ten minutes), and its processors' Redis client rides out a Redis restart. Each promise
rests on a relation between constants; a change that breaks one fails here, not in a slow
fault test.
"""

import socket

from course import connection, worker
from course import retry as processor_retry

import fakeredis
import pytest
import redis
from redis.backoff import ExponentialBackoff

RETRY_BUDGET_SECONDS = 11.5  # "0.1, 0.2, 0.4, 0.8 s, then every second: about 11.5 s"
# course/connection.py: "three tries against an unroutable host still end well within 10 s".
CONNECT_GIVES_UP_WITHIN_SECONDS = 10


@pytest.fixture
def course_worker() -> worker.CourseWorker:
    return worker.CourseWorker(["push_notification_code"], connection=fakeredis.FakeRedis())


def retry_budget_seconds() -> float:
    """How long a processor's command is tried again before it fails: the sum of its backoff's waits."""
    backoff = ExponentialBackoff(
        cap=processor_retry.RETRY_CAP_SECONDS, base=processor_retry.RETRY_BASE_SECONDS
    )
    return sum(backoff.compute(failures) for failures in range(1, processor_retry.RETRIES + 1))


def test_a_processor_retries_its_commands_for_about_eleven_and_a_half_seconds():
    assert retry_budget_seconds() == pytest.approx(RETRY_BUDGET_SECONDS) == processor_retry.RETRY_SECONDS


def test_the_processor_connection_retries_on_redis_away_and_on_refused_writes():
    retry = processor_retry.processor_connection().get_retry()

    assert isinstance(retry, processor_retry.ReportingRetry)
    assert retry.get_retries() == processor_retry.RETRIES
    assert set(processor_retry.RETRIED_ERRORS) == {
        redis.ConnectionError,
        redis.TimeoutError,
        socket.timeout,
        redis.exceptions.OutOfMemoryError,
        redis.exceptions.ReadOnlyError,
        # A transaction discarded whole at EXEC; retried only when Redis refused it as full or read-only.
        redis.exceptions.ExecAbortError,
    }
    backoff = ExponentialBackoff(
        cap=processor_retry.RETRY_CAP_SECONDS, base=processor_retry.RETRY_BASE_SECONDS
    )
    assert retry == processor_retry.ReportingRetry(
        backoff, processor_retry.RETRIES, processor_retry.RETRIED_ERRORS
    )


def test_the_grace_before_a_put_back_outlasts_the_retries():
    """A worker that rode out a Redis restart between taking a job and starting it keeps that job."""
    assert retry_budget_seconds() < worker.ABANDONED_GRACE_SECONDS


def test_the_grace_ends_before_rq_would_fail_the_job():
    """RQ fails a job left in its intermediate list a minute after its maintenance first saw it."""
    assert worker.ABANDONED_GRACE_SECONDS + worker.MAINTENANCE_INTERVAL_SECONDS < 60


def test_maintenance_runs_at_every_dequeue(course_worker):
    """Each wait for a job blocks for RQ's dequeue timeout (worker TTL - 15 s), then maintenance is due."""
    assert course_worker.worker_ttl == worker.WORKER_TTL_SECONDS
    assert course_worker.maintenance_interval == worker.MAINTENANCE_INTERVAL_SECONDS
    assert course_worker.dequeue_timeout == worker.WORKER_TTL_SECONDS - 15
    assert course_worker.maintenance_interval < course_worker.dequeue_timeout


def test_connect_gives_up_within_ten_seconds_on_an_unroutable_host():
    tries = connection.CONNECT_ATTEMPTS
    worst_case = (
        tries * connection.SOCKET_CONNECT_TIMEOUT_SECONDS + (tries - 1) * connection.RETRY_DELAY_SECONDS
    )

    assert worst_case < CONNECT_GIVES_UP_WITHIN_SECONDS
