"""course/events/ on its own: Kue-style ids, events published and heard, RQ's state as the fallback.

Most tests run on fakeredis with an in-process SimpleWorker; the ones about key expiry
need a real server.
"""

from __future__ import annotations

import time

from course import expected
from course.events import (
    COMPLETE,
    FAILED,
    PROGRESS,
    PROGRESS_META_KEY,
    JobEvent,
    events_channel,
    failure_message,
    publish_completed,
    publish_failed,
    report_progress,
)
from course.events import watch as course_events
from course.events.watch import parse_event
from course.ids import next_job_ids
from course.jobs import ERROR_META_KEY, course_queue
from course.outcomes import OutcomePoll
from course.worker import CourseWorker

import fakeredis
import pytest
import redis
from rq import Callback, Queue
from rq.exceptions import AbandonedJobError
from rq.job import JobStatus

pytestmark = pytest.mark.timeout(60)

JOB_FUNCTION = "7_job_processor.send_notification_job"
# Bounds a broken test; events on fakeredis take milliseconds.
EVENTS_TIMEOUT_SECONDS = 10


@pytest.fixture
def queue() -> Queue:
    return course_queue("push_notification_code_2", fakeredis.FakeRedis())


def lines_of(events: list[JobEvent], job_id: str) -> list[str]:
    return [event.line("Notification job") for event in events if event.job_id == job_id]


def test_ids_count_up_from_1_across_queues_and_blocks(queue):
    other = course_queue("push_notification_code", queue.connection)

    assert next_job_ids(queue.connection) == ["1"]
    assert next_job_ids(other.connection, 3) == ["2", "3", "4"]
    assert next_job_ids(queue.connection) == ["5"]


def test_an_event_survives_its_trip_as_json():
    for event in [
        JobEvent("7", PROGRESS, percent=50),
        JobEvent("7", COMPLETE),
        JobEvent("7", FAILED, error="Phone number 4153518780 is blacklisted"),
    ]:
        assert parse_event(event.to_json().encode()) == event


def test_watched_jobs_are_ordinary_rq_jobs_with_the_event_callbacks(queue):
    with course_events.JobWatch(queue, on_event=print) as watch:
        [job_id] = watch.enqueue_many(JOB_FUNCTION, [expected.TASK7_JOBS[0]], timeout=30)

    job = queue.fetch_job(job_id)
    assert queue.job_ids == [job_id] == ["1"]
    assert (job.func_name, job.args, job.kwargs) == (JOB_FUNCTION, [expected.TASK7_JOBS[0]], {})
    assert job.timeout == 30
    assert job.success_callback is publish_completed
    assert job.failure_callback is publish_failed


def test_a_job_naming_other_callbacks_has_none_to_run(queue):
    """A CourseJob imports no callback but the course's two, whatever its hash names."""
    names = {
        "on_success": Callback("os.getcwd"),
        "on_failure": Callback("os.system"),
        "on_stopped": Callback("os.abort"),
    }
    job = queue.enqueue(JOB_FUNCTION, {}, **names)
    job = queue.fetch_job(job.id)

    assert (job.success_callback, job.failure_callback, job.stopped_callback) == (None, None, None)
    assert job.callback_names() == ["os.getcwd", "os.system", "os.abort"]


def test_progress_is_kept_on_the_job_and_published(queue):
    job = queue.enqueue(JOB_FUNCTION, expected.TASK7_JOBS[2], job_id="1")
    with queue.connection.pubsub() as pubsub:
        pubsub.subscribe(events_channel(queue.name))
        pubsub.get_message(timeout=1)

        report_progress(50, job)

        message = pubsub.get_message(timeout=1)
    assert parse_event(message["data"]) == JobEvent("1", PROGRESS, percent=50)
    assert queue.fetch_job("1").meta[PROGRESS_META_KEY] == 50


def test_a_failure_without_a_message_is_named_by_its_error():
    assert failure_message(AbandonedJobError()) == "Job abandoned: its processor stopped while running it"
    assert failure_message(KeyError()) == "KeyError"
    assert failure_message(ValueError("no seat")) == "no seat"


def test_task7_jobs_run_by_a_worker_reach_their_creator_in_order(queue, run_worker_here):
    events: list[JobEvent] = []

    with course_events.JobWatch(queue, on_event=events.append) as watch:
        job_ids = watch.enqueue_many(JOB_FUNCTION, expected.TASK7_JOBS)
        run_worker_here(queue)
        assert watch.wait(timeout=EVENTS_TIMEOUT_SECONDS)

    for data, job_id in zip(expected.TASK7_JOBS, job_ids, strict=True):
        assert lines_of(events, job_id) == expected.task7_events(data, int(job_id))
    assert not watch.pending


def test_without_events_a_job_is_reported_from_rqs_state_one_poll_late(queue, run_worker_here, monkeypatch):
    """RQ saves the final status after the callback has published: a second of grace for the event."""
    events: list[JobEvent] = []
    monkeypatch.setattr("course.events.publish_event", lambda *args: None)

    with course_events.JobWatch(queue, on_event=events.append) as watch:
        [job_id] = watch.enqueue_many(JOB_FUNCTION, [expected.TASK7_JOBS[2]])
        run_worker_here(queue)
        assert queue.fetch_job(job_id).get_status() == JobStatus.FINISHED

        watch.check_rq_state()
        assert events == []
        watch.check_rq_state()

    assert events == [JobEvent(job_id, COMPLETE)]


def test_an_event_that_arrives_within_the_grace_keeps_the_jobs_order(queue, run_worker_here, monkeypatch):
    events: list[JobEvent] = []

    with course_events.JobWatch(queue, on_event=events.append) as watch:
        [job_id] = watch.enqueue_many(JOB_FUNCTION, [expected.TASK7_JOBS[2]])
        run_worker_here(queue)

        watch.check_rq_state()
        assert watch.wait(timeout=EVENTS_TIMEOUT_SECONDS)

    assert lines_of(events, job_id) == expected.task7_events(expected.TASK7_JOBS[2], int(job_id))


def test_a_deleted_job_counts_as_failed(queue):
    events: list[JobEvent] = []

    with course_events.JobWatch(queue, on_event=events.append) as watch:
        [job_id] = watch.enqueue_many(JOB_FUNCTION, [expected.TASK7_JOBS[2]])
        queue.fetch_job(job_id).delete()
        assert watch.wait(timeout=EVENTS_TIMEOUT_SECONDS)

    assert events == [JobEvent(job_id, FAILED, error="Job was deleted")]


def test_a_poll_between_the_ids_and_the_enqueue_takes_no_job_for_deleted(queue, monkeypatch):
    """A listener thread polled while another thread's enqueue was slow (CI): "Job was deleted"."""
    events: list[JobEvent] = []
    enqueue = queue.enqueue_many

    with course_events.JobWatch(queue, on_event=events.append) as watch:

        def slow_enqueue(jobs):
            watch.check_rq_state()
            watch.check_rq_state()
            return enqueue(jobs)

        monkeypatch.setattr(queue, "enqueue_many", slow_enqueue)
        [job_id] = watch.enqueue_many(JOB_FUNCTION, [expected.TASK7_JOBS[2]])
        watch.check_rq_state()
        watch.check_rq_state()

    assert (events, watch.is_pending()) == ([], True), job_id


def test_a_failure_whose_error_is_recorded_after_its_status_is_reported_with_the_error(queue):
    """A refused job: RQ saves it failed, then the worker records why (course/worker.py)."""
    [job_id] = next_job_ids(queue.connection)
    queue.enqueue(JOB_FUNCTION, expected.TASK7_JOBS[2], job_id=job_id)
    outcomes = OutcomePoll(queue.connection, batch=10)
    outcomes.add([job_id])
    job = queue.fetch_job(job_id)

    job.set_status(JobStatus.FAILED)
    assert outcomes.poll() == []
    job.meta[ERROR_META_KEY] = "Job function os.system is not one this processor runs"
    job.save_meta()

    assert outcomes.poll() == [(job_id, "Job function os.system is not one this processor runs")]
    assert outcomes.pending == {}


# The cost of a poll ----------------------------------------------------------------------------


def commands_of_one_poll(connection: redis.Redis, watch: course_events.JobWatch) -> int:
    """Commands the server ran for one poll of RQ's state (INFO commandstats, reset just before)."""
    connection.config_resetstat()
    watch.check_rq_state()
    stats = connection.info("commandstats")
    return sum(
        stat["calls"] for name, stat in stats.items() if name not in ("cmdstat_info", "cmdstat_config")
    )


def test_a_poll_costs_no_more_with_2000_pending_jobs_than_with_10(redis_url):
    """A seat server flooded with reservations once spent 13-15% CPU polling every pending job each second."""
    connection = redis.Redis.from_url(redis_url)
    few = course_queue("few", connection)
    many = course_queue("many", connection)
    with (
        course_events.JobWatch(few, on_event=print) as few_watch,
        course_events.JobWatch(many, on_event=print) as many_watch,
    ):
        few_watch.enqueue_many(JOB_FUNCTION, [expected.TASK7_JOBS[2]] * 10)
        many_watch.enqueue_many(JOB_FUNCTION, [expected.TASK7_JOBS[2]] * 2000)

        with_few = [commands_of_one_poll(connection, few_watch) for _ in range(3)]
        with_many = [commands_of_one_poll(connection, many_watch) for _ in range(3)]

    assert max(with_many) <= max(with_few) + course_events.POLL_BATCH, (with_few, with_many)


def test_with_2000_pending_a_job_that_ended_unheard_is_still_reported(redis_url):
    """The polls take the pending jobs in turn: any lost event is made up for, however many are pending."""
    connection = redis.Redis.from_url(redis_url)
    queue = course_queue("many", connection)
    heard: list[JobEvent] = []

    with course_events.JobWatch(queue, on_event=heard.append) as watch:
        job_ids = watch.enqueue_many(JOB_FUNCTION, [expected.TASK7_JOBS[2]] * 2000)
        # One job in the middle is deleted; nobody publishes anything about it.
        lost = job_ids[1234]
        queue.fetch_job(lost).delete()
        polls = 0
        while not heard and polls < len(job_ids) // course_events.POLL_BATCH + 3:
            watch.check_rq_state()
            polls += 1

    assert heard == [JobEvent(lost, FAILED, error="Job was deleted")]


# Maintenance ------------------------------------------------------------------------------------


def test_a_job_taken_and_never_started_goes_back_to_its_queue_not_to_failed(queue):
    """Its worker was killed between taking it and starting it: RQ would fail it as "stuck"; it never ran."""
    job = queue.enqueue(JOB_FUNCTION, expected.TASK7_JOBS[2], job_id="7")
    queue.connection.lmove(queue.key, queue.intermediate_queue_key)
    worker = CourseWorker([queue.name], connection=queue.connection, job_functions={JOB_FUNCTION})

    worker.clean_registries()
    # As if that first sighting had been two minutes ago (RQ fails such a job after one).
    seen_key = queue.intermediate_queue.get_first_seen_key(job.id)
    queue.connection.set(seen_key, time.time() - 120)
    worker.clean_registries()

    assert queue.job_ids == [job.id]
    assert queue.intermediate_queue.get_job_ids() == []
    assert job.get_status() == JobStatus.QUEUED
    assert queue.failed_job_registry.get_job_ids() == []
