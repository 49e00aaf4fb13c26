"""The processors' RQ worker: RQ's SimpleWorker running the course's job functions and nothing else.

``CourseWorker`` (a subclass naming its ``job_functions``) is an ordinary RQ worker class:
``worker.work()`` and ``WorkerPool(..., worker_class=...)`` run it with RQ's own loop,
scheduler (``with_scheduler=True``), log lines, ``burst``, ``max_jobs``, ``max_idle_time``.
On top of RQ, and nothing more:

- an allow-list: a job naming another function or callback fails unrun, with a message
  saying so, before RQ imports anything (``perform_job``); its creator hears that failure.
  Jobs are JSON (pickle runs what a job hash says), and a hash RQ cannot read is failed.
- no job stranded by a stop: RQ stops an idle worker by raising from its signal handler,
  wherever the worker is; a stop landing right after RQ took a job off the queue (onto its
  intermediate list) leaves the job there, and RQ's maintenance fails it a minute later
  ("stuck in intermediate queue"), unrun. Here maintenance first puts it back at the front
  of its queue (the one override for it: ``clean_registries``).
- a stop that is never lost: RQ raises it from the signal handler wherever an idle worker
  is, where Python may print and drop it (a ``__del__``, a fork hook); the course's worker
  raises it only out of a wait, and otherwise stops before its next wait for a job.
- a processor that never dies of Redis: ``work()`` waits for Redis and starts RQ's loop
  again after an error it ended on; ``processor_connection()`` rides out a restart or a
  full Redis for a while and prints the course's lines.

Importing this module (the processors do) makes Ctrl-C or SIGTERM end the program quietly,
with the worker processes it forked so far, until RQ's worker or pool installs its handlers
(there is no job in hand before), and keeps a stop sent during a fork pending for the child.
"""

from __future__ import annotations

import contextlib
import inspect
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from datetime import timedelta
from types import FrameType

from course.connection import CONNECTED, client_from_env, not_connected_line
from course.events import ERROR_META_KEY, FAILED, OUTCOME_FIELD, JobEvent, publish_event, publish_failure
from course.jobs import COURSE_CALLBACK_NAMES, SERIALIZER, CourseJob, UnreadableJobError
from course.text import printable, text_of

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ExecAbortError
from redis.retry import Retry
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.exceptions import DeserializationError, NoSuchJobError, StopRequested
from rq.job import JOB_ID_PATTERN, Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.utils import now, utcformat

# A processor's command is tried again after 0.1, 0.2, 0.4, 0.8 s, then every second: about 11.5 s.
RETRY_BASE_SECONDS = 0.05
RETRY_CAP_SECONDS = 1.0
RETRIES = 14
RETRY_SECONDS = 11.5
REFUSAL_REPEAT_SECONDS = 60.0
# What a processor's commands ride out: Redis away, and Redis refusing writes (full, or a replica).
WRITES_REFUSED = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)
# A transaction (RQ's, as it starts a job) that Redis found over its memory at EXEC is discarded
# whole: "Transaction discarded because of: OOM ...". Retried like a refused write; others are not.
RETRIED_ERRORS = (redis.ConnectionError, redis.TimeoutError, socket.timeout, *WRITES_REFUSED, ExecAbortError)
REFUSED_TRANSACTION = "Transaction discarded because of: "
REFUSAL_CODES = ("OOM", "READONLY")
# RQ's scheduler process ends with a traceback on a Redis error; the name RQ gives that process.
RQ_SCHEDULER_PROCESS = "Scheduler"
WAIT_SECONDS = 1.0

# RQ's maintenance runs every 10 minutes, between dequeues that each block for 405 s; a job
# found stranded is put back once it has been there ABANDONED_GRACE_SECONDS. These make that
# happen within about half a minute: maintenance at every dequeue, each blocking 10 s.
MAINTENANCE_INTERVAL_SECONDS = 8
WORKER_TTL_SECONDS = 25
# Longer than a worker retries a command: a worker that rode out a Redis restart between
# taking a job and starting it never has that job taken for stranded.
ABANDONED_GRACE_SECONDS = 15


def warn(line: str) -> None:
    print(printable(line), file=sys.stderr, flush=True)


# Stops before RQ's handlers ----------------------------------------------------------------

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
# How long after a fork a stop that came during it is sent again.
RESEND_STOP_SECONDS = 0.05


# From the first fork hook to the last (the course's are registered after those of the modules
# it imports): a stop's exception raised in any of them would be lost.
forking = False


def hold_stop_signals() -> None:
    """Before a fork: CPython drops a signal reaching the child before it can handle them (a pool's stop)."""
    global forking
    forking = True
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def release_stop_signals() -> None:
    """After a fork: release the held stop signals; one that came meanwhile is sent again a moment later.

    A handler run inside a fork hook (RQ's StopRequested) has its exception printed and
    ignored by CPython, and the stop was lost. signal's C
    ``pthread_sigmask`` runs the handlers of the signals it releases before it returns, so
    they meet ``send_again_later`` here; one that comes in another module's hook, or after
    the handlers are back, is sent again by the course's handlers (``stopping_here_breaks``).
    """
    global forking
    if threading.current_thread() is threading.main_thread():
        handlers = {stop: signal.signal(stop, send_again_later) for stop in STOP_SIGNALS}
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        for stop, handler in handlers.items():
            signal.signal(stop, signal.SIG_DFL if handler is None else handler)
    else:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    forking = False


def send_again_later(signum: int, frame: FrameType | None) -> None:
    """A stop that came where it cannot be acted on (a fork hook): sent again a moment later."""
    threading.Timer(RESEND_STOP_SECONDS, os.kill, (os.getpid(), signum)).start()


def stopping_here_breaks(frame: FrameType | None) -> bool:
    """Whether a stop's exception, raised from its handler in ``frame``, would be lost or break something.

    Inside a fork hook or an object's ``__del__`` (run by the garbage collector anywhere)
    CPython prints and ignores it: a thread that does not hold the signals (RQ's pubsub
    thread) lets them in during logging's fork hook, say. Inside ``Thread.start`` (RQ's
    worker starts that thread as it begins) the new thread finds itself already forgotten
    and prints a traceback.
    """
    if forking:
        return True
    while frame is not None:
        if frame.f_code in (release_stop_signals.__code__, threading.Thread.start.__code__):
            return True
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def stop_quietly(signum: int, frame: FrameType | None) -> None:
    """End now, and the worker processes forked so far: nothing has been taken from a queue yet.

    ``os._exit``: an exception raised here could land where Python drops it (a weakref
    callback during an import, a fork hook) and the stop would be lost; there is nothing to
    clean up yet. A process forked from the processor ends alone (its siblings are not its own).
    """
    if os.getpid() == PROCESSOR_PID:
        for child in multiprocessing.active_children():
            child.terminate()
    with contextlib.suppress(OSError, ValueError):  # a reader gone, or stdout closed
        sys.stdout.flush()
    os._exit(0)


PROCESSOR_PID = os.getpid()
if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, stop_quietly)
    signal.signal(signal.SIGTERM, stop_quietly)
    os.register_at_fork(
        before=hold_stop_signals, after_in_parent=release_stop_signals, after_in_child=release_stop_signals
    )


# Redis lost and found ----------------------------------------------------------------------


class RedisPresence:
    """Whether this processor last found Redis there and taking writes: one line when that changes.

    Shared memory, made before a pool forks its workers, so that its processes (workers,
    RQ's scheduler) say each thing once. Redis is back when a command that failed goes
    through, or when any does once Redis has been away longer than a command retries: a
    server shutting down may still answer one process after it closed another's connection.
    Redis refusing writes is still connected: said once a minute at most (a full Redis
    refuses one write and takes the next as its memory moves), and nothing when it is over.
    """

    HERE, AWAY = 0, 1

    def __init__(self) -> None:
        self.state = multiprocessing.Value("b", self.HERE)
        self.since = multiprocessing.Value("d", 0.0)
        self.refused_at = multiprocessing.Value("d", -REFUSAL_REPEAT_SECONDS)

    def lost(self, error: BaseException) -> None:
        refused = write_refusal(error)
        with self.state.get_lock():
            if refused is not None and self.state.value == self.HERE:
                if time.monotonic() - self.refused_at.value > REFUSAL_REPEAT_SECONDS:
                    self.refused_at.value = time.monotonic()
                    print(f"Redis refuses writes: {refused}", flush=True)
            elif refused is None and self.state.value == self.HERE:
                self.state.value = self.AWAY
                self.since.value = time.monotonic()
                print(not_connected_line(error), flush=True)

    def back(self, failed_first: bool) -> None:
        # Read without the lock first (the wrapped value: ``.value`` takes the lock): this runs after
        # every command, and a worker stopped while holding the lock waits for RQ's scheduler, which
        # took it after each of its commands too, and never stopped.
        if self.state.get_obj().value == self.HERE:
            return
        with self.state.get_lock():
            long_away = time.monotonic() - self.since.value > RETRY_SECONDS
            if self.state.value == self.AWAY and (failed_first or long_away):
                self.state.value = self.HERE
                print(CONNECTED, flush=True)


presence = RedisPresence()


def write_refusal(error: BaseException) -> str | None:
    """Why Redis refused a write (full, or a read-only replica), or None for any other error."""
    if isinstance(error, WRITES_REFUSED):
        # A pipeline's error names the command first: the reason is what follows.
        return str(error).rpartition("caused error: ")[2]
    if isinstance(error, ExecAbortError):
        code, _, reason = str(error).removeprefix(REFUSED_TRANSACTION).partition(" ")
        return reason if code in REFUSAL_CODES else None
    return None


class ReportingRetry(Retry):
    """redis-py's retries, reporting the first failure and the first success after one."""

    def call_with_retry(self, do, fail, *args, **kwargs):
        failures: list[Exception] = []

        def failed(error: Exception, *count: int) -> object:
            if isinstance(error, ExecAbortError) and write_refusal(error) is None:
                raise error
            failures.append(error)
            presence.lost(error)
            return fail(error, *count)

        try:
            result = super().call_with_retry(do, failed, *args, **kwargs)
        except RETRIED_ERRORS:
            # RQ's scheduler ends quietly instead; a worker's maintenance starts another (RQ's own).
            if multiprocessing.current_process().name == RQ_SCHEDULER_PROCESS:
                raise SystemExit(0) from None
            raise
        presence.back(failed_first=bool(failures))
        return result


def processor_connection() -> redis.Redis:
    """A Redis client for RQ (bytes) that retries for about 11.5 s and prints the course's lines.

    The failed-connection line (or ``Redis refuses writes: ...``) when Redis first fails a
    command, the connected line when it answers again: once each, for the whole processor.
    """
    backoff = ExponentialBackoff(cap=RETRY_CAP_SECONDS, base=RETRY_BASE_SECONDS)
    retry = ReportingRetry(backoff, RETRIES, supported_errors=RETRIED_ERRORS)
    return client_from_env(decode_responses=False, retry=retry)


# Jobs the worker cannot read ---------------------------------------------------------------


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


# The worker --------------------------------------------------------------------------------


class CourseWorker(SimpleWorker):
    """RQ's SimpleWorker that runs only ``job_functions``, JSON jobs, strands no job when stopped.

    ``job_functions``: the import paths of the functions it runs, e.g.
    ``{"6_job_processor.send_notification_job"}``, given to the constructor or set on a
    subclass (``WorkerPool`` makes its workers with RQ's arguments only).
    """

    job_functions: frozenset[str] | set[str] = frozenset()

    def __init__(self, queues, *args, job_functions=None, **kwargs) -> None:
        # Whatever a caller (or WorkerPool) passes: these two are what keeps Redis data from running code.
        kwargs["serializer"] = SERIALIZER
        kwargs["job_class"] = WorkerJob
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_SECONDS)
        kwargs.setdefault("worker_ttl", WORKER_TTL_SECONDS)
        super().__init__(queues, *args, **kwargs)
        # RQ's maintenance reads a queue's jobs (abandoned ones, to fail them) with the queue's own
        # serializer and job class: a queue made without them (WorkerPool's) would unpickle meta.
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
        """RQ's warm stop (the job in hand is finished first), remembered: ``work()`` does not start again.

        RQ raises ``StopRequested`` from the handler wherever an idle worker is. Out of its wait
        for a job (or the course's wait for Redis) that ends the worker at once; elsewhere it
        can land where it is lost (an object's ``__del__``, one of RQ's ``except Exception``)
        or breaks something: there the worker stops before its next wait instead
        (``should_run_maintenance_tasks``).
        """
        if self.not_now(signum, frame):
            return
        self.stopping = True
        try:
            super().request_stop(signum, frame)
        except StopRequested:
            if self.waiting(frame):
                raise

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """RQ's cold stop (its handler after a first stop), in this worker's process only.

        RQ's scheduler, forked after a first stop that the worker held for its next wait,
        starts with this handler, which ignores a second signal within a second: RQ's SIGTERM
        to it was dropped and the worker waited for it for ever.
        """
        if not self.not_now(signum, frame):
            super().request_force_stop(signum, frame)

    def not_now(self, signum: int, frame: FrameType | None) -> bool:
        """A stop to send again in a moment: in a process forked from this worker (RQ's scheduler)
        before it sets its own handlers, or where its exception would break (``stopping_here_breaks``)."""
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
        """Jobs left in RQ's intermediate list, not started, go back to the front of the queue.

        A job stays there for milliseconds between being taken and being started. RQ's
        maintenance marks when it first sees one there and fails it a minute later, unrun;
        here one still there ``ABANDONED_GRACE_SECONDS`` after the mark goes back instead.
        An entry that is not a job id (RQ's maintenance cannot read it) is dropped.
        """
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
        """RQ's ``work()``, started once Redis answers, and again if it ended on an error while not stopped.

        It returns as RQ's does when RQ's loop ends by itself: stopped, ``burst``,
        ``max_jobs`` or ``max_idle_time``.
        """
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
