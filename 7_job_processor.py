"""Task 7: a processor that works on two jobs at a time, reports progress, and fails some jobs.

Kue's ``queue.process(name, 2, handler)`` becomes RQ's ``WorkerPool`` of two workers on
``push_notification_code_2``, which run ``send_notification_job`` and no other function,
whatever a job names. One of them runs RQ's scheduler, so jobs enqueued for later
(``enqueue_in``) or retried after a pause (``Retry(max, interval)``) run when due. A job
reports its progress to its creator (Kue's ``job.progress``) and fails by raising an
exception whose message is the failure's message (Kue's ``done(new Error(...))``). Ctrl-C
or SIGTERM stops both workers once their jobs in hand are done.
"""

from course.connection import run, say  # say: a line in one write (several processes share it)
from course.events import report_progress
from course.retry import processor_connection
from course.settings import logging_level_from_args
from course.worker import CourseWorker

from rq.job import Job, get_current_job
from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerPool

QUEUE_NAME = "push_notification_code_2"
BLACKLISTED_NUMBERS = ("4153518780", "4153518781")
CONCURRENCY = 2


class NotificationWorker(CourseWorker):
    """RQ's SimpleWorker (no fork per job): JSON jobs, and only this function, as its creator names it."""

    job_functions = {"7_job_processor.send_notification_job"}


class BlacklistedNumberError(Exception):
    """A notification the processor refuses to send."""


def send_notification(phone_number: str, message: str, job: Job) -> None:
    # report_progress: RQ's job.meta, saved, and Kue's 'progress' event published to the creator.
    report_progress(0, job)
    if phone_number in BLACKLISTED_NUMBERS:
        raise BlacklistedNumberError(f"Phone number {phone_number} is blacklisted")
    report_progress(50, job)
    say(f"Sending notification to {phone_number}, with message: {message}")


def send_notification_job(data: dict) -> None:
    """What a worker runs for each job: the course's handler, given the job's data and the job."""
    send_notification(data["phoneNumber"], data["message"], get_current_job())


def main() -> None:
    # --help and --verbose; RQ's own log lines stay off without --verbose.
    logging_level = logging_level_from_args(__doc__)
    # processor_connection: rides out a Redis restart, with the course's lines when Redis goes and comes back.
    pool = WorkerPool(
        [QUEUE_NAME],
        connection=processor_connection(),
        num_workers=CONCURRENCY,
        worker_class=NotificationWorker,
        serializer=JSONSerializer,
    )
    pool.start(logging_level=logging_level)


if __name__ == "__main__":
    run(main)
