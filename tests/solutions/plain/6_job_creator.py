"""Task 6: queue one notification job and report what becomes of it."""

import sys

import job_events
from redis_connection import connect
from rq import Queue

QUEUE_NAME = "push_notification_code"
JOB_DATA = {"phoneNumber": "4153518780", "message": "This is the code to verify your account"}


def main() -> None:
    connection = connect(decode_responses=False)
    pubsub = job_events.listen(connection, QUEUE_NAME)
    queue = Queue(QUEUE_NAME, connection=connection)
    job = queue.enqueue("6_job_processor.notification_job", JOB_DATA, **job_events.CALLBACKS)
    print(f"Notification job created: {job.id}", flush=True)
    for event in job_events.follow(pubsub, [job.id]):
        if event["event"] == "completed":
            print("Notification job completed", flush=True)
        elif event["event"] == "failed":
            print("Notification job failed", flush=True)
    pubsub.close()
    connection.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C while waiting: a quiet stop, no traceback
