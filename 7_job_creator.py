"""Task 7: create eleven jobs and follow each one's progress, completion or failure.

Kue's ``queue.create(...).save()`` for each job becomes RQ's ``Queue.prepare_data`` for
each and one ``queue.enqueue_many`` for all (one round trip), with the eleven Kue-style ids
reserved in one INCRBY. Kue's ``job.on('progress' | 'complete' | 'failed', ...)`` is a
``JobWatch``, subscribed to the queue's job events before the jobs exist; the processor
publishes them from inside the job (progress) and from the job's RQ callbacks. Lines of
different jobs may interleave; each job's own lines come in order. The creator exits once
every job completed or failed. With ``--verbose``, messages on the events channel that it
ignores are shown on stderr.
"""

from course.connection import client_from_env, run
from course.events import publish_completed, publish_failed
from course.events.watch import JobWatch
from course.settings import verbose_from_args

from rq import Callback, Queue
from rq.job import Job
from rq.serializers import JSONSerializer

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


def print_event(event) -> None:
    """``Notification job ID 50% complete``, ``... completed``, ``... failed: ERROR``."""
    print(event.line("Notification job"), flush=True)


def enqueue_notification_jobs(queue: Queue, datas: list[dict], job_ids: list[str]) -> list[Job]:
    """One RQ job per data dict, all in one round trip; each tells its creator how it ended."""
    return queue.enqueue_many(
        [
            Queue.prepare_data(
                JOB_FUNCTION,
                args=(data,),
                job_id=job_id,
                on_success=Callback(publish_completed),
                on_failure=Callback(publish_failed),
            )
            for data, job_id in zip(datas, job_ids, strict=True)
        ]
    )


def main() -> None:
    verbose_from_args(__doc__)
    # RQ needs bytes from Redis; JSON jobs, where RQ's default (pickle) runs what a job's data says.
    queue = Queue(QUEUE_NAME, connection=client_from_env(decode_responses=False), serializer=JSONSerializer)
    with JobWatch(queue, on_event=print_event) as job_events:
        # Kue-style ids (from one INCRBY) instead of RQ's UUIDs, watched from now on.
        job_ids = job_events.new_job_ids(len(JOBS))
        for job in enqueue_notification_jobs(queue, JOBS, job_ids):
            print(f"Notification job created: {job.id}", flush=True)
        job_events.wait()


if __name__ == "__main__":
    run(main)
