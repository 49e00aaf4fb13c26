"""A course worker's bookkeeping: RQ still calls each method it overrides; a job costs few round trips.

``CourseWorker`` overrides RQ 2.12 worker methods (``execute_job``, ``check_for_suspension``,
``set_state``, ``heartbeat``, ``handle_execution_ended``, the dequeue) to send fewer round trips per job.
A newer RQ that stopped calling one of them would quietly lose the saving, or the
behaviour the override keeps: the first test fails then. The others check what the
overrides promise on a real Redis: RQ's registries and job hashes as RQ leaves them, the
heartbeat kept, and the round trips counted by the server itself.
"""

from __future__ import annotations

from course import events as course_events
from course import expected, settings, worker
from course.events import SERIALIZER

import fakeredis
import pytest
from rq.job import JobStatus
from rq.suspension import suspend
from rq.utils import utcformat
from rq.worker import WorkerStatus

TASK7_QUEUE = "push_notification_code_2"
TASK7_FUNCTION = "7_job_processor.send_notification_job"
OVERRIDES = (
    "dequeue_job_and_maintain_ttl",
    "execute_job",
    "set_state",
    "heartbeat",
    "handle_execution_ended",
)
# What one task 7 job costs a burst worker, counted by Redis (INFO stats total_reads_processed):
# 13 with these overrides; RQ's own bookkeeping took 20.
MAX_ROUND_TRIPS_PER_JOB = 14
# RQ's rule: a worker's key lasts its worker TTL plus 60 s after a heartbeat with no TTL given.
USUAL_WORKER_KEY_TTL = worker.WORKER_TTL_SECONDS + 60


def enqueue_task7_jobs(connection, count: int) -> list[str]:
    queue = course_events.course_queue(TASK7_QUEUE, connection)
    datas = [expected.TASK7_JOBS[index % len(expected.TASK7_JOBS)] for index in range(count)]
    job_ids = course_events.next_job_ids(connection, count)
    course_events.enqueue_jobs(queue, TASK7_FUNCTION, datas, job_ids)
    return job_ids


def task7_worker(connection, worker_class=worker.CourseWorker) -> worker.CourseWorker:
    return worker_class([TASK7_QUEUE], connection=connection, job_functions={TASK7_FUNCTION})


def run_burst(course_worker: worker.CourseWorker) -> None:
    course_worker.work(burst=True, logging_level=settings.rq_logging_level(False))


def test_rq_calls_every_method_the_course_worker_overrides(rq_redis):
    called: set[str] = set()

    def recording(name: str):
        def method(self, *args, **kwargs):
            called.add(name)
            return getattr(worker.CourseWorker, name)(self, *args, **kwargs)

        return method

    spy_class = type("SpyWorker", (worker.CourseWorker,), {name: recording(name) for name in OVERRIDES})
    enqueue_task7_jobs(rq_redis, 2)

    run_burst(task7_worker(rq_redis, spy_class))

    assert called == set(OVERRIDES)


def round_trips_of_a_burst(connection, count: int) -> tuple[int, list[str]]:
    """Round trips (the server's count) a new burst worker sends to run ``count`` task 7 jobs; their ids."""
    job_ids = enqueue_task7_jobs(connection, count)
    course_worker = task7_worker(connection)
    reads_before = connection.info("stats")["total_reads_processed"]
    run_burst(course_worker)
    # Less the INFO command that reads the count.
    return connection.info("stats")["total_reads_processed"] - reads_before - 1, job_ids


def test_a_job_costs_few_round_trips_and_ends_as_rq_ends_it(rq_redis):
    few, _ = round_trips_of_a_burst(rq_redis, len(expected.TASK7_JOBS))
    count = 2 * len(expected.TASK7_JOBS)
    more, job_ids = round_trips_of_a_burst(rq_redis, count)

    # The difference leaves out what a worker sends once (its birth, maintenance, death).
    assert (more - few) / (count - len(expected.TASK7_JOBS)) <= MAX_ROUND_TRIPS_PER_JOB
    queue = course_events.course_queue(TASK7_QUEUE, rq_redis)
    datas = expected.TASK7_JOBS * 2
    failed = {
        job_id
        for job_id, data in zip(job_ids, datas, strict=True)
        if data["phoneNumber"] in expected.BLACKLISTED
    }
    assert failed <= set(queue.failed_job_registry.get_job_ids())
    assert set(job_ids) - failed <= set(queue.finished_job_registry.get_job_ids())
    assert queue.started_job_registry.get_job_ids() == []
    assert rq_redis.llen(queue.intermediate_queue_key) == 0
    for job in queue.job_class.fetch_many(job_ids, connection=rq_redis, serializer=SERIALIZER):
        assert job.get_status() == (JobStatus.FAILED if job.id in failed else JobStatus.FINISHED)
        # The worker leaves the write of the job's last heartbeat to RQ's save of the ended job.
        assert utcformat(job.last_heartbeat) == utcformat(job.ended_at)


def test_rq_suspend_still_stops_a_worker_between_two_jobs(rq_redis):
    class SuspendingWorker(worker.CourseWorker):
        def perform_job(self, job, queue):
            performed = super().perform_job(job, queue)
            suspend(self.connection)
            return performed

    job_ids = enqueue_task7_jobs(rq_redis, 3)

    run_burst(task7_worker(rq_redis, SuspendingWorker))

    queue = course_events.course_queue(TASK7_QUEUE, rq_redis)
    assert queue.get_job_ids() == job_ids[1:]


@pytest.fixture
def fake_worker() -> worker.CourseWorker:
    course_worker = task7_worker(fakeredis.FakeRedis())
    course_worker.register_birth()
    return course_worker


def test_a_heartbeat_right_after_another_is_left_out(fake_worker):
    connection = fake_worker.connection
    fake_worker.heartbeat()
    assert connection.ttl(fake_worker.key) == USUAL_WORKER_KEY_TTL
    connection.expire(fake_worker.key, 10)

    fake_worker.heartbeat()

    assert connection.ttl(fake_worker.key) == 10


def test_a_heartbeat_is_sent_once_the_interval_passed(fake_worker, monkeypatch):
    fake_worker.heartbeat()
    fake_worker.connection.expire(fake_worker.key, 10)
    monkeypatch.setattr(worker, "HEARTBEAT_MIN_INTERVAL_SECONDS", 0.0)

    fake_worker.heartbeat()

    assert fake_worker.connection.ttl(fake_worker.key) == USUAL_WORKER_KEY_TTL


def test_a_heartbeat_with_a_ttl_of_rqs_choosing_is_always_sent_and_the_next_usual_one_too(fake_worker):
    connection = fake_worker.connection
    fake_worker.heartbeat()

    fake_worker.heartbeat(25)
    assert connection.ttl(fake_worker.key) == 25
    fake_worker.heartbeat()

    assert connection.ttl(fake_worker.key) == USUAL_WORKER_KEY_TTL


def test_the_state_is_written_when_it_changes(fake_worker):
    connection = fake_worker.connection
    fake_worker.set_state(WorkerStatus.BUSY)
    connection.hset(fake_worker.key, "state", "written by someone else")

    fake_worker.set_state(WorkerStatus.BUSY)
    assert connection.hget(fake_worker.key, "state") == b"written by someone else"
    fake_worker.set_state(WorkerStatus.IDLE)

    assert connection.hget(fake_worker.key, "state") == WorkerStatus.IDLE.value.encode()
