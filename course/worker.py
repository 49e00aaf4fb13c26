"""The processors' RQ worker: RQ's SimpleWorker running the course's job functions and nothing else.

``CourseWorker`` (a subclass naming its ``job_functions``) is an ordinary RQ worker class:
``worker.work()`` and ``WorkerPool(..., worker_class=...)`` run it with RQ's own loop,
scheduler (``with_scheduler=True``), log lines, ``burst``, ``max_jobs``, ``max_idle_time``.
On top of RQ, and nothing more:

- an allow-list: a job naming another function or callback fails unrun, before RQ imports
  anything, and its creator hears it. Jobs are JSON; a hash RQ cannot read is failed.
- no job stranded by a stop: a job RQ took off the queue (onto its intermediate list) and
  never started is put back at the front of its queue by maintenance (``clean_registries``),
  where RQ alone fails it a minute later, unrun.
- a stop never lost: RQ raises it from its signal handler wherever an idle worker is; here
  only out of a wait, and otherwise before the worker's next wait (``course.stops``).
- a processor that never dies of Redis: ``work()`` waits for Redis and starts RQ's loop again.
"""

from __future__ import annotations

import inspect
import os
import signal
import sys
import time
from datetime import timedelta
from types import FrameType

from course.connection import say
from course.events import FAILED, OUTCOME_FIELD, JobEvent, publish_event, publish_failure
from course.jobs import COURSE_CALLBACK_NAMES, ERROR_META_KEY, SERIALIZER, CourseJob, UnreadableJobError
from course.stops import send_again_later, stopping_here_breaks
from course.text import printable, text_of

import redis
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.exceptions import DeserializationError, NoSuchJobError, StopRequested
from rq.job import JOB_ID_PATTERN, Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.utils import now, utcformat

WAIT_SECONDS = 1.0
# Maintenance at every wait for a job, each 10 s at most (RQ's: every 10 minutes, waits of 405 s),
# so a stranded job is back in its queue within about half a minute.
MAINTENANCE_INTERVAL_SECONDS = 8
WORKER_TTL_SECONDS = 25
# Longer than a command retries (course.retry): a job taken just before a Redis restart is not stranded.
ABANDONED_GRACE_SECONDS = 15


def warn(line: str) -> None:
    say(printable(line), sys.stderr)


def fail_unreadable(connection: redis.Redis, job_id: str, message: str) -> None:
    """Fail a job from its raw hash (RQ cannot make a job of it) and tell its creator."""
    key = Job.key_for(job_id)
    origin = connection.hget(key, "origin")
    fields = {
        "status": JobStatus.FAILED.value,
        "ended_at": utcformat(now()),
        "meta": SERIALIZER.dumps({ERROR_META_KEY: message}),
        OUTCOME_FIELD: FAILED,
    }
    with connection.pipeline() as pipeline:
        pipeline.hset(key, mapping=fields)
        pipeline.expire(key, DEFAULT_FAILURE_TTL)
        if origin:
            queue = Queue(text_of(origin), connection=connection)
            registry = FailedJobRegistry(queue.name, connection=connection)
            pipeline.zadd(registry.key, {job_id: time.time() + DEFAULT_FAILURE_TTL})
            pipeline.lrem(queue.intermediate_queue_key, 1, job_id)
            publish_event(pipeline, queue.name, JobEvent(job_id, FAILED, error=message))
        pipeline.execute()
    warn(f"Job {job_id} failed without running: {message}")


class WorkerJob(CourseJob):
    """A ``CourseJob`` as the worker reads it: one it cannot read is failed, then skipped."""

    @classmethod
    def fetch(cls, id: str, connection: redis.Redis | None = None, serializer=None) -> CourseJob:
        try:
            return super().fetch(id, connection=connection, serializer=serializer)
        except UnreadableJobError as error:
            fail_unreadable(connection, id, str(error))
            raise
        except NoSuchJobError:
            # A hash without data is "no job" to RQ: the worker fails it rather than leave it queued.
            if connection.exists(Job.key_for(id)):
                fail_unreadable(connection, id, "Job could not be read: it holds no data")
                raise UnreadableJobError(id) from None
            raise


class CourseWorker(SimpleWorker):
    """RQ's SimpleWorker running only ``job_functions`` (import paths), given to the constructor or
    set on a subclass (``WorkerPool`` makes its workers with RQ's arguments only)."""

    job_functions: frozenset[str] | set[str] = frozenset()

    def __init__(self, queues, *args, job_functions=None, **kwargs) -> None:
        # Whatever a caller (or WorkerPool) passes: these keep Redis data from running code.
        kwargs["serializer"] = SERIALIZER
        kwargs["job_class"] = WorkerJob
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_SECONDS)
        kwargs.setdefault("worker_ttl", WORKER_TTL_SECONDS)
        super().__init__(queues, *args, **kwargs)
        # RQ's maintenance reads jobs with each queue's serializer: WorkerPool's queues would unpickle.
        for queue in self.queues:
            queue.serializer = SERIALIZER
            queue.job_class = WorkerJob
        if job_functions is not None:
            self.job_functions = frozenset(job_functions)
        self.stopping = False
        self.process_id = os.getpid()

    # Which jobs it runs ---------------------------------------------------------------------

    def refusal(self, job: CourseJob) -> str | None:
        """Why this worker will not run ``job``, or None. Reads the job's JSON; imports nothing."""
        try:
            function, instance = job.func_name, job.instance
        except DeserializationError:
            return "Job data could not be read"
        if instance is not None or function not in self.job_functions:
            return f"Job function {function} is not one this processor runs"
        foreign = [name for name in job.callback_names() if name not in COURSE_CALLBACK_NAMES]
        if foreign:
            return f"Job callback {foreign[0]} is not one this processor runs"
        return None

    def perform_job(self, job: CourseJob, queue: Queue) -> bool:
        """RQ's perform_job, for a job this worker runs; any other job fails unrun."""
        refusal = self.refusal(job)
        if refusal is None:
            return super().perform_job(job, queue)
        message = printable(refusal)
        queue.intermediate_queue.remove(job.id)
        job.ended_at = now()
        self.handle_job_failure(job, queue, queue.started_job_registry, exc_string=message)
        # After RQ saved the failure, so that the creator finds the job failed when it checks.
        publish_failure(self.connection, job, message)
        warn(f"Job {job.id} failed without running: {message}")
        return False

    # Stops ----------------------------------------------------------------------------------

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """RQ's warm stop, raised only out of a wait (RQ raises it wherever an idle worker is, where it
        may be lost: docs/internals.md); elsewhere the worker stops before its next wait."""
        if self.not_now(signum, frame):
            return
        self.stopping = True
        try:
            super().request_stop(signum, frame)
        except StopRequested:
            if self.waiting(frame):
                raise

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """RQ's cold stop, in this worker's process only (RQ's scheduler, forked from it, starts with it)."""
        if not self.not_now(signum, frame):
            super().request_force_stop(signum, frame)

    def not_now(self, signum: int, frame: FrameType | None) -> bool:
        """A stop to send again in a moment: in a process forked from this worker, or where it would break."""
        if os.getpid() != self.process_id or stopping_here_breaks(frame):
            send_again_later(signum, frame)
            return True
        return False

    def waiting(self, frame: FrameType | None) -> bool:
        """Whether ``frame`` waits, for a job (RQ) or for Redis (the course): a stop there loses nothing."""
        if frame is not None and frame.f_code is CourseWorker.work.__code__:
            return True
        while frame is not None:
            if frame.f_code in (self.queue_class.dequeue_any.__code__, CourseWorker.wait_for_redis.__code__):
                return True
            frame = frame.f_back
        return False

    @property
    def should_run_maintenance_tasks(self) -> bool:
        """RQ's, read before each wait for a job, with nothing taken: where a stop held back takes effect."""
        if self.stopping:
            raise StopRequested()
        return super().should_run_maintenance_tasks

    def clean_registries(self) -> None:
        """RQ's maintenance, after putting back the jobs a stopped or killed worker took and never started."""
        for queue in self.queues:
            self.put_back_stranded_jobs(queue)
        super().clean_registries()

    def put_back_stranded_jobs(self, queue: Queue) -> None:
        """Jobs taken and not started, ``ABANDONED_GRACE_SECONDS`` after RQ's mark, go back to the front."""
        intermediate = queue.intermediate_queue
        for raw_id in self.connection.lrange(intermediate.key, 0, -1):
            job_id = text_of(raw_id)
            if not JOB_ID_PATTERN.fullmatch(job_id):
                self.connection.lrem(intermediate.key, 1, raw_id)
                warn(f"Dropped a queue entry that is not a job id: {job_id!r}")
                continue
            if job_id in queue.started_job_registry:
                continue
            # Marked here too: RQ marks it under its maintenance lock, which a stopped worker can keep 15 min.
            if intermediate.set_first_seen(job_id):
                continue
            first_seen = intermediate.get_first_seen(job_id)
            if first_seen is None or now() - first_seen < timedelta(seconds=ABANDONED_GRACE_SECONDS):
                continue
            status = text_of(self.connection.hget(Job.key_for(job_id), "status") or "")
            # Only the worker whose LREM took it puts it back: maintenance may run in two at once.
            if status == JobStatus.QUEUED.value and self.connection.lrem(intermediate.key, 1, job_id):
                queue.push_job_id(job_id, at_front=True)
                self.connection.delete(intermediate.get_first_seen_key(job_id))

    # The loop -------------------------------------------------------------------------------

    def work(self, *args, **kwargs) -> bool:
        """RQ's ``work()``, once Redis answers, and again if it ended on an error unless it ends by
        itself (stopped, ``burst``, ``max_jobs``, ``max_idle_time``): then it returns as RQ's does."""
        options = inspect.signature(SimpleWorker.work).bind(self, *args, **kwargs).arguments
        ends_by_itself = any(options.get(name) for name in ("burst", "max_jobs", "max_idle_time"))
        # RQ's handlers from now on (RQ installs them after its start-up, which needs Redis).
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        try:
            while True:
                self.wait_for_redis()
                try:
                    worked = super().work(*args, **kwargs)
                except redis.RedisError:
                    # RQ's start or end could not be written: Redis stayed away, or refused.
                    worked = False
                    self.forget_registration()
                if self.stopping or ends_by_itself:
                    return worked
                time.sleep(WAIT_SECONDS)
        except StopRequested:
            if self.birth_date is not None:
                self.forget_registration()
            return False

    def wait_for_redis(self) -> None:
        """Return once Redis answers (a processor waits for its server, as node_redis kept reconnecting)."""
        while True:
            try:
                self.connection.ping()
                return
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(WAIT_SECONDS)

    def forget_registration(self) -> None:
        """RQ's end of a worker (its entry removed, its channel left), once Redis takes the write."""
        while True:
            try:
                self.teardown()
                return
            except redis.RedisError:
                if self.stopping:
                    return
                time.sleep(WAIT_SECONDS)
