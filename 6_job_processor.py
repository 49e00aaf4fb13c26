"""Task 6: a job processor. One RQ worker runs every job of ``push_notification_code``.

Kue's ``queue.process(name, handler)`` becomes an RQ worker listening on that queue; the
handler is the job function the creator named, ``send_notification_job``, which RQ calls
with the job's data; the worker runs that function and no other, whatever a job names. It
runs until Ctrl-C or SIGTERM, finishing the job in hand first.
"""

# First, before anything slow is imported: a stop during start-up ends the processor quietly.
import course.quiet_start  # noqa: F401

# isort: split
from course.connection import client_from_env, run
from course.settings import logging_level_from_args
from course.worker import CourseWorker, wait_for_redis

QUEUE_NAME = "push_notification_code"
# The only function this processor runs, by the name its creator gives it.
JOB_FUNCTIONS = {"6_job_processor.send_notification_job"}


def send_notification(phone_number: str, message: str) -> None:
    print(f"Sending notification to {phone_number}, with message: {message}", flush=True)


def send_notification_job(data: dict) -> None:
    """What a worker runs for each job: the course's handler, given the job's data."""
    send_notification(data["phoneNumber"], data["message"])


def main() -> None:
    # logging_level_from_args: --help and --verbose; RQ's own log lines stay off without --verbose.
    logging_level = logging_level_from_args(__doc__)
    connection = client_from_env(decode_responses=False)
    # wait_for_redis: the course's failed-connection line while Redis is away, before RQ's start-up needs it.
    wait_for_redis(connection)
    # CourseWorker: RQ's SimpleWorker, running JOB_FUNCTIONS only, JSON jobs, no job stranded by a stop.
    worker = CourseWorker([QUEUE_NAME], connection=connection, job_functions=JOB_FUNCTIONS)
    worker.work(logging_level=logging_level)


if __name__ == "__main__":
    run(main)
