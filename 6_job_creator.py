"""Task 6: create one job and hear, in this terminal, when a processor has run it.

Kue's ``queue.create('push_notification_code', data).save()`` is RQ's ``queue.enqueue``: the
job names the processor's function by its import path (the creator never imports the
processor) and carries the course's data. Kue's ``job.on('complete' | 'failed', ...)`` is a
``JobWatch``: subscribed to the queue's job events before the job exists, so that no event
is missed however quick the processor, which publishes them from the job's RQ callbacks.
The creator exits once the job completed or failed. With ``--verbose``, messages on the
events channel that it ignores are shown on stderr.
"""

from course.connection import client_from_env, run
from course.events import publish_completed, publish_failed
from course.events.watch import JobWatch
from course.settings import verbose_from_args

from rq import Callback, Queue
from rq.serializers import JSONSerializer

QUEUE_NAME = "push_notification_code"
JOB_FUNCTION = "6_job_processor.send_notification_job"
JOB_DATA = {"phoneNumber": "4153518780", "message": "This is the code to verify your account"}


def print_outcome(event) -> None:
    """Task 6 reports only how the job ended (Kue's event names: progress, complete, failed)."""
    if event.kind == "complete":
        print("Notification job completed", flush=True)
    elif event.kind == "failed":
        print("Notification job failed", flush=True)


def main() -> None:
    verbose_from_args(__doc__)
    # RQ needs bytes from Redis; JSON jobs, where RQ's default (pickle) runs what a job's data says.
    queue = Queue(QUEUE_NAME, connection=client_from_env(decode_responses=False), serializer=JSONSerializer)
    with JobWatch(queue, on_event=print_outcome) as job_events:
        # A Kue-style id (1, 2, 3... from one INCRBY) instead of RQ's UUID, watched from now on.
        [job_id] = job_events.new_job_ids(1)
        job = queue.enqueue(
            JOB_FUNCTION,
            JOB_DATA,
            job_id=job_id,
            on_success=Callback(publish_completed),
            on_failure=Callback(publish_failed),
        )
        print(f"Notification job created: {job.id}", flush=True)
        job_events.wait()


if __name__ == "__main__":
    run(main)
