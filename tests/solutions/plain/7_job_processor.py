"""Task 7: an RQ worker pool (two jobs at a time) that sends notifications, except to the
blacklisted numbers, and reports its progress."""

from job_events import set_progress
from redis_connection import connect
from rq.job import Job, get_current_job
from rq.worker_pool import WorkerPool

QUEUE_NAME = "push_notification_code_2"
BLACKLISTED_NUMBERS = {"4153518780", "4153518781"}


class BlacklistedNumberError(Exception):
    """The job's failure: its message is what the creator prints."""


def send_notification(phone_number: str, message: str, job: Job) -> None:
    set_progress(job, 0)
    if phone_number in BLACKLISTED_NUMBERS:
        raise BlacklistedNumberError(f"Phone number {phone_number} is blacklisted")
    set_progress(job, 50)
    # flush: RQ's worker runs each job in a forked process that ends without flushing stdout.
    print(f"Sending notification to {phone_number}, with message: {message}", flush=True)


def notification_job(job_data: dict) -> None:
    """The job the creators enqueue (by its import path): Kue's job.data is its argument."""
    send_notification(job_data["phoneNumber"], job_data["message"], get_current_job())


def main() -> None:
    connection = connect(decode_responses=False)
    WorkerPool([QUEUE_NAME], connection=connection, num_workers=2).start()


if __name__ == "__main__":
    main()
