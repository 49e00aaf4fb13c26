"""Task 8: ``create_push_notifications_jobs``, a job creator written to be tested.

It checks its whole input before touching Redis: a list of notifications, each a dict with
a string ``phoneNumber`` and a string ``message``; one bad item, and nothing is enqueued.
It reserves Kue-style ids for the jobs, subscribes to their events (Kue's ``job.on(...)``
handlers, attached before the jobs exist), creates one RQ job per notification on
``push_notification_code_3`` as task 7 does (``enqueue_jobs``), prints each job's
``created`` line, and hands back the subscription, which prints the jobs' event lines when
those events happen: the caller decides how long to listen (``wait()``) and stops with
``close()``.
"""

from course.events import JobEvent, event_line
from course.jobs import JobWatch, course_queue, enqueue_jobs, next_job_ids, subscribe_to_job_events
from course.settings import parse_command_line

from rq import Queue

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


def print_event(event: JobEvent) -> None:
    print(event_line("Notification job", event), flush=True)


def create_push_notifications_jobs(jobs: list[dict], queue: Queue) -> JobWatch:
    """Create one job per notification on ``push_notification_code_3``, on ``queue``'s Redis."""
    if not isinstance(jobs, list):
        raise NotAnArrayError("Jobs is not an array")
    # Every item is checked before the first is enqueued: a bad one must not leave half a batch queued.
    for index, job in enumerate(jobs):
        if not is_notification(job):
            raise NotANotificationError(f"jobs[{index}] is not an object with phoneNumber and message")
    notifications = course_queue(QUEUE_NAME, queue.connection)
    job_ids = next_job_ids(notifications.connection, len(jobs))
    job_events = subscribe_to_job_events(notifications, job_ids, on_event=print_event)
    try:
        # enqueue_jobs: task 7's Queue.prepare_data for each job and one queue.enqueue_many, with
        # the callbacks that publish the jobs' events.
        created = enqueue_jobs(notifications, JOB_FUNCTION, jobs, job_ids)
    except BaseException:
        job_events.close()
        raise
    for job in created:
        print(f"Notification job created: {job.id}", flush=True)
    return job_events


if __name__ == "__main__":
    # A module of functions: run as a script, it only answers --help (8_job_main.py uses it).
    parse_command_line(__doc__)
