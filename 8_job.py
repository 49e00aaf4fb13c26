"""Task 8: ``create_push_notifications_jobs``, a job creator written to be tested.

It checks its whole input before touching Redis: a list of notifications, each a dict with
a string ``phoneNumber`` and a string ``message``; one bad item, and nothing is enqueued.
It subscribes to the jobs' events (Kue's ``job.on(...)`` handlers, attached before the jobs
exist) with a ``JobWatch``, reserves their Kue-style ids, creates one RQ job per
notification on ``push_notification_code_3`` in one ``enqueue_many`` (as task 7 does),
prints each job's ``created`` line, and hands back the watch, which prints the jobs' event
lines when those events happen: the caller decides how long to listen (``wait()``) and
stops with ``close()``.
"""

from course.events import publish_completed, publish_failed
from course.events.watch import JobWatch
from course.settings import parse_command_line

from rq import Callback, Queue
from rq.serializers import JSONSerializer

QUEUE_NAME = "push_notification_code_3"
# No processor serves this queue in the course; `rq worker --serializer
# rq.serializers.JSONSerializer push_notification_code_3`, run from the project root, would
# process the jobs with task 7's handler.
JOB_FUNCTION = "7_job_processor.send_notification_job"
NOTIFICATION_KEYS = ("phoneNumber", "message")


class NotAnArrayError(TypeError):
    """Raised for ``jobs`` that is not a list, before anything is enqueued."""


class NotANotificationError(TypeError):
    """Raised for an item of ``jobs`` that is not a notification, before anything is enqueued."""


def is_notification(job: object) -> bool:
    """A dict with a string ``phoneNumber`` and a string ``message``: what the processor reads."""
    return isinstance(job, dict) and all(isinstance(job.get(key), str) for key in NOTIFICATION_KEYS)


def print_event(event) -> None:
    print(event.line("Notification job"), flush=True)


def create_push_notifications_jobs(jobs: list[dict], queue: Queue) -> JobWatch:
    """Create one job per notification on ``push_notification_code_3``, on ``queue``'s Redis."""
    if not isinstance(jobs, list):
        raise NotAnArrayError("Jobs is not an array")
    # Every item is checked before the first is enqueued: a bad one must not leave half a batch queued.
    for index, job in enumerate(jobs):
        if not is_notification(job):
            raise NotANotificationError(f"jobs[{index}] is not an object with phoneNumber and message")
    # JSON jobs, where RQ's default (pickle) runs what a job's data says.
    notifications = Queue(QUEUE_NAME, connection=queue.connection, serializer=JSONSerializer)
    job_events = JobWatch(notifications, on_event=print_event)
    try:
        # Kue-style ids (from one INCRBY) instead of RQ's UUIDs, watched from now on.
        job_ids = job_events.new_job_ids(len(jobs))
        created = notifications.enqueue_many(
            [
                Queue.prepare_data(
                    JOB_FUNCTION,
                    args=(job,),
                    job_id=job_id,
                    on_success=Callback(publish_completed),
                    on_failure=Callback(publish_failed),
                )
                for job, job_id in zip(jobs, job_ids, strict=True)
            ]
        )
    except BaseException:
        job_events.close()
        raise
    for job in created:
        print(f"Notification job created: {job.id}", flush=True)
    return job_events


if __name__ == "__main__":
    # A module of functions: run as a script, it only answers --help (8_job_main.py uses it).
    parse_command_line(__doc__)
