"""Task 6: create one job and hear, in this terminal, when a processor has run it.

The job goes to the queue ``push_notification_code`` with the course's data; the
creator names the processor's job function but never imports it. It listens for the
job's events from before the job exists, and exits once the job completed or failed.
With ``--verbose``, messages on the events channel that it ignores are shown on stderr.
"""

from course.connection import client_from_env, run
from course.jobs import COMPLETE, FAILED, JobEvent, JobWatch, course_queue, verbose_from_args

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
    queue = course_queue(QUEUE_NAME, client_from_env(decode_responses=False))
    with JobWatch(queue, on_event=print_outcome) as watch:
        job_id = watch.enqueue(JOB_FUNCTION, JOB_DATA)
        print(f"Notification job created: {job_id}", flush=True)
        watch.wait()


if __name__ == "__main__":
    run(main)
