"""Task 6: a job processor. One RQ worker runs every job of ``push_notification_code``.

Kue's ``queue.process(name, handler)`` becomes an RQ worker listening on that queue; the
handler is the job function the creator named, ``send_notification_job``, which RQ calls
with the job's data. It runs until Ctrl-C or SIGTERM, finishing the job in hand first.
"""

from course.connection import client_from_env, run
from course.jobs import CourseWorker, logging_level_from_args, wait_for_redis

QUEUE_NAME = "push_notification_code"


def send_notification(phone_number: str, message: str) -> None:
    print(f"Sending notification to {phone_number}, with message: {message}", flush=True)


def send_notification_job(data: dict) -> None:
    """What a worker runs for each job: the course's handler, given the job's data."""
    send_notification(data["phoneNumber"], data["message"])


def main() -> None:
    logging_level = logging_level_from_args(__doc__)
    connection = client_from_env(decode_responses=False)
    # Wait for Redis, with the course's line for each failed try, before RQ's start-up needs it.
    wait_for_redis(connection)
    worker = CourseWorker([QUEUE_NAME], connection=connection)
    worker.work(logging_level=logging_level)


if __name__ == "__main__":
    run(main)
