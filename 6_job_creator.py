"""Task 6: create one job and hear, in this terminal, when a processor has run it.

Kue's ``queue.create('push_notification_code', data).save()`` is RQ's ``queue.enqueue``:
the job names the processor's job function by its import path (the creator never imports
the processor) and carries the course's data. Kue's ``job.on('complete' | 'failed', ...)``
is a subscription to the job's events, made before the job exists, so that no event is
missed however quick the processor; the processor publishes them from the job's success
and failure callbacks. The creator exits once the job completed or failed. With
``--verbose``, messages on the events channel that it ignores are shown on stderr.
"""

from course.connection import client_from_env, run
from course.events import COMPLETE, FAILED, JobEvent, publish_completed, publish_failed
from course.jobs import JOB_TTLS, course_queue, next_job_ids, subscribe_to_job_events
from course.settings import verbose_from_args

from rq import Callback

QUEUE_NAME = "push_notification_code"
JOB_FUNCTION = "6_job_processor.send_notification_job"
JOB_DATA = {"phoneNumber": "4153518780", "message": "This is the code to verify your account"}


def print_outcome(event: JobEvent) -> None:
    """Task 6 reports only how the job ended."""
    if event.kind == COMPLETE:
        print("Notification job completed", flush=True)
    elif event.kind == FAILED:
        print("Notification job failed", flush=True)


def main() -> None:
    verbose_from_args(__doc__)
    # course_queue: RQ's Queue with JSON jobs (RQ's default, pickle, would run what a job hash says).
    queue = course_queue(QUEUE_NAME, client_from_env(decode_responses=False))
    # next_job_ids: a Kue-style id (1, 2, 3... from one INCRBY) instead of RQ's UUID.
    [job_id] = next_job_ids(queue.connection)
    with subscribe_to_job_events(queue, [job_id], on_event=print_outcome) as job_events:
        job = queue.enqueue(
            JOB_FUNCTION,
            JOB_DATA,
            job_id=job_id,
            on_success=Callback(publish_completed),
            on_failure=Callback(publish_failed),
            **JOB_TTLS,
        )
        print(f"Notification job created: {job.id}", flush=True)
        job_events.wait()


if __name__ == "__main__":
    run(main)
