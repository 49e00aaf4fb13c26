"""Task 8's tests, in Kue's test mode: the jobs are queued on fakeredis and never processed."""

import importlib
import time

import fakeredis
import job_events
import pytest
from rq import Queue

create_push_notifications_jobs = importlib.import_module("8_job").create_push_notifications_jobs

JOBS = [
    {"phoneNumber": "4153518780", "message": "This is the code 1234 to verify your account"},
    {"phoneNumber": "4153518781", "message": "This is the code 4562 to verify your account"},
]


@pytest.fixture
def queue():
    """A queue on a fresh fakeredis, left empty afterwards."""
    queue = Queue("push_notification_code_3", connection=fakeredis.FakeRedis())
    yield queue
    queue.empty()
    assert queue.count == 0


def printed_lines(capsys: pytest.CaptureFixture, expected: list[str]) -> list[str]:
    """The lines printed so far, waiting up to 5 s for the expected ones (events are printed
    by a background thread)."""
    lines: list[str] = []
    deadline = time.monotonic() + 5
    while len(lines) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.01)
        lines += capsys.readouterr().out.splitlines()
    return lines


@pytest.mark.parametrize("jobs", ["4153518780", {"phoneNumber": "4153518780"}, 42, None])
def test_jobs_that_are_not_a_list_are_refused(queue, jobs):
    with pytest.raises(Exception, match="^Jobs is not an array$"):
        create_push_notifications_jobs(jobs, queue)
    assert queue.count == 0


def test_each_job_is_queued_with_its_data(queue, capsys):
    created = create_push_notifications_jobs(JOBS, queue)

    assert queue.name == "push_notification_code_3"
    assert queue.job_ids == [job.id for job in created]
    assert [job.args for job in queue.get_jobs()] == [(job_data,) for job_data in JOBS]
    assert capsys.readouterr().out.splitlines() == [f"Notification job created: {job.id}" for job in created]


def test_jobs_on_another_queue_still_go_to_push_notification_code_3():
    connection = fakeredis.FakeRedis()
    created = create_push_notifications_jobs(JOBS[:1], Queue("another", connection=connection))

    notifications = Queue("push_notification_code_3", connection=connection)
    assert notifications.job_ids == [created[0].id]
    assert Queue("another", connection=connection).count == 0
    notifications.empty()


def test_progress_completion_and_failure_are_printed_as_they_happen(queue, capsys):
    first, second = create_push_notifications_jobs(JOBS, queue)
    error = "Phone number 4153518781 is blacklisted"

    job_events.set_progress(first, 25)
    job_events.on_completed(first, queue.connection, None)
    job_events.set_progress(second, 0)
    job_events.on_failed(second, queue.connection, ValueError, ValueError(error), None)

    expected = [
        f"Notification job created: {first.id}",
        f"Notification job created: {second.id}",
        f"Notification job {first.id} 25% complete",
        f"Notification job {first.id} completed",
        f"Notification job {second.id} 0% complete",
        f"Notification job {second.id} failed: {error}",
    ]
    assert printed_lines(capsys, expected) == expected


def test_events_of_other_jobs_are_not_printed(queue, capsys):
    (job,) = create_push_notifications_jobs(JOBS[:1], queue)
    (other,) = Queue("push_notification_code_3", connection=queue.connection).enqueue_many(
        [Queue.prepare_data("7_job_processor.notification_job", (JOBS[1],))]
    )

    job_events.on_completed(other, queue.connection, None)
    job_events.on_completed(job, queue.connection, None)

    expected = [f"Notification job created: {job.id}", f"Notification job {job.id} completed"]
    assert printed_lines(capsys, expected) == expected
