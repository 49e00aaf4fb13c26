"""Task 6: a job processor. One RQ worker runs every job of ``push_notification_code``.

Kue's ``queue.process(name, handler)`` becomes an RQ worker listening on that queue; the
handler is the job function the creator named, ``send_notification_job``, which RQ calls
with the job's data; the worker runs that function and no other, whatever a job names. It
runs RQ's scheduler too, so jobs enqueued for later (``enqueue_in``) or retried after a
pause (``Retry(max, interval)``) run when due, as Kue's delayed jobs did. It runs until
Ctrl-C or SIGTERM, finishing the job in hand first.
"""

from course.connection import run, say  # say: a line in one write (several processes share it)
from course.retry import processor_connection
from course.settings import logging_level_from_args
from course.worker import CourseWorker

from rq import Queue
from rq.serializers import JSONSerializer

QUEUE_NAME = "push_notification_code"


class NotificationWorker(CourseWorker):
    """RQ's SimpleWorker (no fork per job): JSON jobs, and only this function, as its creator names it."""

    job_functions = {"6_job_processor.send_notification_job"}


def send_notification(phone_number: str, message: str) -> None:
    say(f"Sending notification to {phone_number}, with message: {message}")


def send_notification_job(data: dict) -> None:
    """What a worker runs for each job: the course's handler, given the job's data."""
    send_notification(data["phoneNumber"], data["message"])


def main() -> None:
    # --help and --verbose; RQ's own log lines stay off without --verbose.
    logging_level = logging_level_from_args(__doc__)
    # processor_connection: rides out a Redis restart, with the course's lines when Redis goes and comes back.
    queue = Queue(QUEUE_NAME, connection=processor_connection(), serializer=JSONSerializer)
    worker = NotificationWorker([queue])
    worker.work(with_scheduler=True, logging_level=logging_level)


if __name__ == "__main__":
    run(main)
