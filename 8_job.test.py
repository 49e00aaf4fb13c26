"""Task 8's tests, as the course wrote them for Kue's test mode: jobs are queued, never processed.

Everything runs on fakeredis, with no Redis server and no worker. The jobs' events are
published the way a processor publishes them (``report_progress`` and the success and
failure callbacks RQ would call), and the watch that ``create_push_notifications_jobs``
returns prints their lines.
"""

import importlib

from course.events import publish_completed, publish_failed, report_progress
from course.ids import JOB_IDS_KEY
from course.jobs import SERIALIZER

import fakeredis
import pytest
from rq import Queue

job_module = importlib.import_module("8_job")
create_push_notifications_jobs = job_module.create_push_notifications_jobs

JOBS = [
    {"phoneNumber": "4153518780", "message": "This is the code 1234 to verify your account"},
    {"phoneNumber": "4153518781", "message": "This is the code 4562 to verify your account"},
]
# Events come within milliseconds on fakeredis; this only bounds a broken test.
EVENT_TIMEOUT_SECONDS = 5


@pytest.fixture
def queue():
    """The course's queue, in test mode; emptied afterwards, as Kue's testMode.clear() did."""
    queue = Queue(job_module.QUEUE_NAME, connection=fakeredis.FakeRedis(), serializer=SERIALIZER)
    yield queue
    queue.empty()


def created_lines(queue: Queue) -> list[str]:
    return [f"Notification job created: {job_id}" for job_id in queue.job_ids]


@pytest.mark.parametrize(
    "jobs", [JOBS[0], "jobs", 42, None, tuple(JOBS)], ids=["dict", "str", "int", "None", "tuple"]
)
def test_jobs_that_are_not_a_list_are_refused(jobs, queue):
    with pytest.raises(Exception, match="^Jobs is not an array$"):
        create_push_notifications_jobs(jobs, queue)

    assert queue.count == 0
    assert queue.connection.get(JOB_IDS_KEY) is None


def test_an_empty_list_creates_no_job(queue, capsys):
    with create_push_notifications_jobs([], queue) as watch:
        assert not watch.is_pending()

    assert queue.count == 0
    assert capsys.readouterr().out == ""


def test_jobs_are_queued_with_exactly_their_data(queue, capsys):
    with create_push_notifications_jobs(JOBS, queue):
        pass

    assert queue.name == "push_notification_code_3"
    assert [job.args[0] for job in queue.jobs] == JOBS
    # The jobs are JSON: their arguments come back as a list.
    assert [(job.args, job.kwargs) for job in queue.jobs] == [([data], {}) for data in JOBS]
    assert capsys.readouterr().out.splitlines() == created_lines(queue)


def test_jobs_go_to_push_notification_code_3_whatever_queue_is_given(queue):
    other = Queue("another_queue", connection=queue.connection)

    with create_push_notifications_jobs(JOBS, other):
        pass

    assert other.count == 0
    assert queue.count == 2


def test_ids_follow_each_other_across_calls(queue):
    with create_push_notifications_jobs(JOBS[:1], queue), create_push_notifications_jobs(JOBS[1:], queue):
        pass

    assert [int(job_id) for job_id in queue.job_ids] == [1, 2]


def test_a_completed_job_prints_its_completed_line(queue, capsys):
    with create_push_notifications_jobs(JOBS[:1], queue) as watch:
        job = queue.jobs[0]
        publish_completed(job, queue.connection, None)

        assert watch.wait(timeout=EVENT_TIMEOUT_SECONDS)

    assert capsys.readouterr().out.splitlines() == [
        f"Notification job created: {job.id}",
        f"Notification job {job.id} completed",
    ]


def test_a_failed_job_prints_its_error(queue, capsys):
    with create_push_notifications_jobs(JOBS[:1], queue) as watch:
        job = queue.jobs[0]
        error = Exception("Phone number 4153518780 is blacklisted")
        publish_failed(job, queue.connection, type(error), error, None)

        assert watch.wait(timeout=EVENT_TIMEOUT_SECONDS)

    assert capsys.readouterr().out.splitlines() == [
        f"Notification job created: {job.id}",
        f"Notification job {job.id} failed: Phone number 4153518780 is blacklisted",
    ]


def test_progress_prints_percent_complete_lines_in_order(queue, capsys):
    with create_push_notifications_jobs(JOBS[:1], queue) as watch:
        job = queue.jobs[0]
        report_progress(0, job)
        report_progress(50, job)
        publish_completed(job, queue.connection, None)

        assert watch.wait(timeout=EVENT_TIMEOUT_SECONDS)

    assert capsys.readouterr().out.splitlines() == [
        f"Notification job created: {job.id}",
        f"Notification job {job.id} 0% complete",
        f"Notification job {job.id} 50% complete",
        f"Notification job {job.id} completed",
    ]


def test_each_job_gets_its_own_lines(queue, capsys):
    with create_push_notifications_jobs(JOBS, queue) as watch:
        first, second = queue.jobs
        report_progress(25, second)
        publish_completed(first, queue.connection, None)
        error = Exception("Phone number 4153518781 is blacklisted")
        publish_failed(second, queue.connection, type(error), error, None)

        assert watch.wait(timeout=EVENT_TIMEOUT_SECONDS)

    assert capsys.readouterr().out.splitlines()[2:] == [
        f"Notification job {second.id} 25% complete",
        f"Notification job {first.id} completed",
        f"Notification job {second.id} failed: Phone number 4153518781 is blacklisted",
    ]


def test_events_of_jobs_created_elsewhere_print_nothing(queue, capsys):
    stranger = queue.enqueue("7_job_processor.send_notification_job", JOBS[0])
    with create_push_notifications_jobs(JOBS[:1], queue) as watch:
        publish_completed(stranger, queue.connection, None)

        assert not watch.wait(timeout=0.2)

    assert capsys.readouterr().out.splitlines() == created_lines(queue)[1:]
