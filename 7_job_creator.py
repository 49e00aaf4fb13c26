"""Task 7: create eleven jobs and follow each one's progress, completion or failure.

All the jobs are created first (their ids reserved in one INCRBY, the jobs enqueued in one
round trip); then their events are printed as the processor sends them. Lines of different
jobs may interleave; each job's own lines come in order. The creator exits once every job
completed or failed. With ``--verbose``, messages on the events channel that it ignores
are shown on stderr.
"""

from course.connection import client_from_env, run
from course.jobs import JobEvent, JobWatch, course_queue, event_line, verbose_from_args

QUEUE_NAME = "push_notification_code_2"
JOB_FUNCTION = "7_job_processor.send_notification_job"
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


def print_event(event: JobEvent) -> None:
    print(event_line("Notification job", event), flush=True)


def create_notification_jobs(watch: JobWatch, jobs: list[dict]) -> list[str]:
    job_ids = watch.enqueue_many(JOB_FUNCTION, jobs)
    for job_id in job_ids:
        print(f"Notification job created: {job_id}", flush=True)
    return job_ids


def main() -> None:
    verbose_from_args(__doc__)
    queue = course_queue(QUEUE_NAME, client_from_env(decode_responses=False))
    with JobWatch(queue, on_event=print_event) as watch:
        create_notification_jobs(watch, JOBS)
        watch.wait()


if __name__ == "__main__":
    run(main)
