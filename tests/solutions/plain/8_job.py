"""Task 8: create_push_notifications_jobs, a job-creating function with its own tests."""

import threading

import job_events
from rq import Queue
from rq.job import Job

QUEUE_NAME = "push_notification_code_3"
# Task 7's notification job: a task 7 processor started on this queue would send them.
JOB_FUNCTION = "7_job_processor.notification_job"


def create_push_notifications_jobs(jobs: list[dict], queue: Queue) -> list[Job]:
    """Queues each job on push_notification_code_3 (on queue's Redis) and prints its events
    from a background thread as they happen, as Kue's job event handlers did."""
    if not isinstance(jobs, list):
        raise TypeError("Jobs is not an array")
    connection = queue.connection
    pubsub = job_events.listen(connection, QUEUE_NAME)
    notifications = Queue(QUEUE_NAME, connection=connection)
    created = []
    for job_data in jobs:
        job = notifications.enqueue(JOB_FUNCTION, job_data, **job_events.CALLBACKS)
        print(f"Notification job created: {job.id}", flush=True)
        created.append(job)
    threading.Thread(
        target=job_events.print_notification_events,
        args=(pubsub, [job.id for job in created]),
        name="notification job events",
        daemon=True,
    ).start()
    return created
