"""Task 7: a processor that works on two jobs at a time, reports progress, and fails some jobs.

Kue's ``queue.process(name, 2, handler)`` becomes RQ's own ``WorkerPool`` of two workers
on ``push_notification_code_2`` (``CoursePool``), which run ``send_notification_job`` and
no other function, whatever a job names. A job reports its progress to its creator (Kue's
``job.progress``) and fails by raising an exception whose message is the failure's
message (Kue's ``done(new Error(...))``). Ctrl-C or SIGTERM stops both workers once their
jobs in hand are done.
"""

# First, before anything slow is imported: a stop during start-up ends the processor quietly.
import course.quiet_start  # noqa: F401

# isort: split
import sys

from course.connection import client_from_env, run
from course.events import report_progress
from course.settings import logging_level_from_args
from course.worker import CoursePool, wait_for_redis

from rq.job import Job, get_current_job

QUEUE_NAME = "push_notification_code_2"
# The only function this processor runs, by the name its creator gives it.
JOB_FUNCTIONS = {"7_job_processor.send_notification_job"}
BLACKLISTED_NUMBERS = ("4153518780", "4153518781")
CONCURRENCY = 2


class BlacklistedNumberError(Exception):
    """A notification the processor refuses to send."""


def send_notification(phone_number: str, message: str, job: Job) -> None:
    # report_progress: RQ's job.meta and save_meta(), and Kue's 'progress' event published to the creator.
    report_progress(0, job)
    if phone_number in BLACKLISTED_NUMBERS:
        raise BlacklistedNumberError(f"Phone number {phone_number} is blacklisted")
    report_progress(50, job)
    # One write per line: the two workers share the terminal, and print() writes the line and
    # its newline separately, so two lines could interleave.
    sys.stdout.write(f"Sending notification to {phone_number}, with message: {message}\n")
    sys.stdout.flush()


def send_notification_job(data: dict) -> None:
    """What a worker runs for each job: the course's handler, given the job's data and the job."""
    send_notification(data["phoneNumber"], data["message"], get_current_job())


def main() -> None:
    # logging_level_from_args: --help and --verbose; RQ's own log lines stay off without --verbose.
    logging_level = logging_level_from_args(__doc__)
    connection = client_from_env(decode_responses=False)
    # wait_for_redis: the course's failed-connection line while Redis is away, once, not in each worker.
    wait_for_redis(connection)
    # CoursePool: RQ's WorkerPool of CourseWorkers (JOB_FUNCTIONS only, JSON jobs), stoppable at once.
    pool = CoursePool([QUEUE_NAME], connection, num_workers=CONCURRENCY, job_functions=JOB_FUNCTIONS)
    pool.start(logging_level=logging_level)


if __name__ == "__main__":
    run(main)
