"""Task 7: queue eleven notification jobs and report their progress, completion and failures."""

import sys

import job_events
from redis_connection import connect
from rq import Queue

QUEUE_NAME = "push_notification_code_2"
JOBS = [
    {"phoneNumber": "4153518780", "message": "This is the code 1234 to verify your account"},
    {"phoneNumber": "4153518781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4153518743", "message": "This is the code 4321 to verify your account"},
    {"phoneNumber": "4153538781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4153118782", "message": "This is the code 4321 to verify your account"},
    {"phoneNumber": "4153718781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4159518782", "message": "This is the code 4321 to verify your account"},
    {"phoneNumber": "4158718781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4153818782", "message": "This is the code 4321 to verify your account"},
    {"phoneNumber": "4154318781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4151218782", "message": "This is the code 4321 to verify your account"},
]


def main() -> None:
    connection = connect(decode_responses=False)
    pubsub = job_events.listen(connection, QUEUE_NAME)
    queue = Queue(QUEUE_NAME, connection=connection)
    job_ids = []
    for job_data in JOBS:
        job = queue.enqueue("7_job_processor.notification_job", job_data, **job_events.CALLBACKS)
        print(f"Notification job created: {job.id}", flush=True)
        job_ids.append(job.id)
    job_events.print_notification_events(pubsub, job_ids)
    connection.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C while waiting: a quiet stop, no traceback
