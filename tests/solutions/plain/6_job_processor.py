"""Task 6: an RQ worker that sends the notifications queued on push_notification_code."""

from redis_connection import connect
from rq import Queue, Worker

QUEUE_NAME = "push_notification_code"


def send_notification(phone_number: str, message: str) -> None:
    # flush: RQ's worker runs each job in a forked process that ends without flushing stdout.
    print(f"Sending notification to {phone_number}, with message: {message}", flush=True)


def notification_job(job_data: dict) -> None:
    """The job the creator enqueues (by its import path): Kue's job.data is its argument."""
    send_notification(job_data["phoneNumber"], job_data["message"])


def main() -> None:
    connection = connect(decode_responses=False)
    Worker([Queue(QUEUE_NAME, connection=connection)], connection=connection).work()


if __name__ == "__main__":
    main()
