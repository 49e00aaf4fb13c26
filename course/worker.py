"""The processors' side of course jobs: an RQ worker that runs only the course's job functions.

``CourseWorker`` is RQ's SimpleWorker (no fork per job) with what the course needs:

- an allow-list: it runs the job functions it was given (``job_functions``) and nothing else.
  A job naming another function, or another callback, fails with a message saying so before
  RQ imports or calls anything (``perform_job`` is where RQ's worker goes from a job read
  from Redis to importing its function); its creator hears that failure. A job hash it
  cannot read at all fails the same way, and the worker goes on.
- stops that never strand a job: RQ raises its stop from the signal handler wherever the
  worker is, and a stop that lands between taking a job off the queue and starting it left
  the job in RQ's intermediate list, later failed as "stuck". Here the worker waits for a
  job without taking it (``BLMOVE`` of the queue onto itself, which changes nothing), and
  only that wait is interrupted; a job once taken is run, then the worker stops. A job
  still found taken and not started (its worker was killed at that instant) goes back to
  the front of its queue at the next maintenance; it is never failed.
- Redis lost and found: the course's failed-connection line once when Redis goes, the
  connected line once when it is back, for the whole processor (its workers share the
  state), and the worker goes on. Commands are tried again for about 11 s, so a restart
  never interrupts a job; an idle worker waits for Redis as long as it takes.
- abandoned jobs failed soon: a restarted processor fails the job its killed predecessor
  was running about 25 to 35 s after it started (RQ's defaults: up to 10 minutes and more).
- few round trips per job: RQ's worker writes its own state and heartbeat several times
  between two jobs, each write a round trip of its own. Here a heartbeat is sent at most
  once every ``HEARTBEAT_MIN_INTERVAL_SECONDS`` unless RQ gives it a TTL of its own, the
  state only when it changes, the end of a job's bookkeeping in one pipeline, and a job is
  taken at once when the queue holds one (the blocking wait only when it is empty).

``CoursePool`` runs several of them (task 7's concurrency), stoppable from its first instant.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from course.connection import CONNECTED, not_connected_line
from course.events import (
    COURSE_CALLBACKS,
    ERROR_META_KEY,
    FAILED,
    FAILURE_TTL_SECONDS,
    OUTCOME_FIELD,
    SERIALIZER,
    CourseJob,
    JobEvent,
    UnreadableJobError,
    publish_event,
    publish_failed,
)
from course.text import printable, text_of

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from rq import SimpleWorker, worker_registration
from rq.exceptions import DeserializationError, NoSuchJobError, StopRequested
from rq.job import JOB_ID_PATTERN, Job, JobStatus
from rq.queue import Queue
from rq.registry import clean_registries
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import now, utcformat
from rq.worker import WorkerStatus
from rq.worker_pool import WorkerPool

# A worker's commands are tried again after 0.1, 0.2, 0.4, 0.8 s, then every second: about 11.5 s in all.
WORKER_RETRY_BASE_SECONDS = 0.05
WORKER_RETRY_CAP_SECONDS = 1.0
WORKER_RETRIES = 14
# A processor waiting for Redis tries again after 1 s, then 2, then every 4 s.
WAIT_FIRST_DELAY_SECONDS = 1.0
WAIT_MAX_DELAY_SECONDS = 4.0

# RQ checks its registries for abandoned jobs every 10 minutes, between two dequeues that
# may each block for 405 s, and a job of a dead worker stays "started" for its timeout
# + 60 s. These make a restarted processor fail such a job about 25 to 35 s after it
# started: maintenance at every dequeue, each blocking 10 s (worker TTL minus 15 s).
MAINTENANCE_INTERVAL_SECONDS = 8
WORKER_TTL_SECONDS = 25
# Longer than a worker's retries, so a worker that rode out a Redis restart in the middle
# of a job is never taken for dead, nor a job it had just taken for stranded.
ABANDONED_GRACE_SECONDS = 15
# A worker's key lasts WORKER_TTL_SECONDS + 60 s after a heartbeat (RQ's rule): one every
# few seconds keeps it far from expiring, where RQ sends four between two jobs.
HEARTBEAT_MIN_INTERVAL_SECONDS = 5.0
# A worker whose RQ loop ended for no stop (an error RQ gave up on) starts again after this.
RESTART_PAUSE_SECONDS = 1.0


def warn(line: str) -> None:
    """One line on stderr, with no control character a terminal would act on."""
    print(printable(line), file=sys.stderr, flush=True)


class RefusedJobError(Exception):
    """A job this processor does not run: its message says why."""


# Redis lost and found --------------------------------------------------------------------


class RedisPresence:
    """Whether this processor last found Redis there: one line when that changes, whichever worker sees it.

    It lives in shared memory, made before the processor forks its workers, so that a
    processor of two workers says each thing once.
    """

    def __init__(self) -> None:
        self._lost = multiprocessing.Value("b", 0)

    def lost(self, error: BaseException) -> None:
        with self._lost.get_lock():
            if not self._lost.value:
                self._lost.value = 1
                print(not_connected_line(error), flush=True)

    def back(self) -> None:
        # Read without the lock first: this runs after every successful command.
        if self._lost.value:
            with self._lost.get_lock():
                if self._lost.value:
                    self._lost.value = 0
                    print(CONNECTED, flush=True)


_presence: RedisPresence | None = None


def redis_presence() -> RedisPresence:
    global _presence
    if _presence is None:
        _presence = RedisPresence()
    return _presence


class ReportingRetry(Retry):
    """redis-py's retries, reporting the first failure and the first success after one."""

    def call_with_retry(self, do: Callable, fail: Callable, *args, **kwargs):
        def failed(error: Exception, *count: int) -> object:
            redis_presence().lost(error)
            return fail(error, *count)

        result = super().call_with_retry(do, failed, *args, **kwargs)
        redis_presence().back()
        return result


def wait_for_redis(connection: redis.Redis) -> None:
    """Return once Redis answers; the failed-connection line if it did not at first, the connected line then.

    A processor waits for its server rather than exit, as a Kue processor's node_redis
    client kept reconnecting; Ctrl-C still stops it.
    """
    delay = WAIT_FIRST_DELAY_SECONDS
    while True:
        try:
            connection.ping()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            redis_presence().lost(error)
        else:
            redis_presence().back()
            return
        time.sleep(delay)
        delay = min(delay * 2, WAIT_MAX_DELAY_SECONDS)


# Stops during start-up -------------------------------------------------------------------

_stop_before_work = False


def note_stop_before_work() -> None:
    """A stop signal reached a worker process before its worker took over the signals."""
    global _stop_before_work
    _stop_before_work = True


# The worker ------------------------------------------------------------------------------


class CourseWorker(SimpleWorker):
    """RQ's SimpleWorker that runs only ``job_functions``, strands no job when stopped, rides out restarts.

    ``job_functions``: the import paths of the functions it runs, e.g.
    ``{"6_job_processor.send_notification_job"}`` (a subclass may set the class attribute).
    Jobs, meta and results are JSON (``SERIALIZER``), whatever serializer is passed.
    """

    job_functions: frozenset[str] = frozenset()
    # Set by a CoursePool on the class it forks its workers with: whether the pool is stopping.
    pool_stopping: multiprocessing.sharedctypes.Synchronized | None = None

    # RQ waits between dequeue attempts while Redis is away: 1 s, doubling up to this (60 s by default).
    max_connection_wait_time = 5.0

    def __init__(self, queues, *args, job_functions: Iterable[str] | None = None, **kwargs):
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_SECONDS)
        kwargs.setdefault("worker_ttl", WORKER_TTL_SECONDS)
        kwargs["serializer"] = SERIALIZER
        kwargs["job_class"] = CourseJob
        # By name, so that RQ makes each queue with the serializer and job class above.
        given = [queues] if isinstance(queues, str | Queue) else list(queues)
        names = [queue if isinstance(queue, str) else queue.name for queue in given]
        super().__init__(names, *args, **kwargs)
        if job_functions is not None:
            self.job_functions = frozenset(job_functions)
        backoff = ExponentialBackoff(cap=WORKER_RETRY_CAP_SECONDS, base=WORKER_RETRY_BASE_SECONDS)
        self.connection.set_retry(ReportingRetry(backoff, WORKER_RETRIES))
        self._interruptible = False
        # When the last heartbeat with RQ's usual TTL was sent (time.monotonic()), or None.
        self._usual_heartbeat_sent_at: float | None = None
        # Whether the workers were suspended (``rq suspend``) when the last job ended; None once used.
        self._suspended_after_job: bool | None = None

    # Which jobs it runs ----------------------------------------------------------------

    def refusal(self, job: CourseJob) -> str | None:
        """Why this worker will not run ``job``, or None. Reads the job's JSON; imports nothing."""
        try:
            function, instance = job.func_name, job.instance
        except DeserializationError:
            return "Job data could not be read"
        if instance is not None or function not in self.job_functions:
            return f"Job function {function} is not one this processor runs"
        foreign = [name for name in job.callback_names() if name not in COURSE_CALLBACKS]
        if foreign:
            return f"Job callback {foreign[0]} is not one this processor runs"
        return None

    def perform_job(self, job: CourseJob, queue: Queue) -> bool:
        """RQ's perform_job, for a job this worker runs; any other job fails unrun."""
        refusal = self.refusal(job)
        if refusal is None:
            return super().perform_job(job, queue)
        self.refuse(job, queue, printable(refusal))
        return False

    def refuse(self, job: CourseJob, queue: Queue, message: str) -> None:
        """Fail a job without running it or any of its callbacks; tell its creator why."""
        self.connection.lrem(queue.intermediate_queue_key, 1, job.id)
        job.ended_at = now()
        self.handle_job_failure(job, queue, queue.started_job_registry, exc_string=message)
        # After RQ saved the failure, so that the creator finds the job failed when it checks.
        error = RefusedJobError(message)
        publish_failed(job, self.connection, RefusedJobError, error, None)
        warn(f"Job {job.id} failed without running: {message}")

    def fail_unreadable(self, queue: Queue, job_id: str, message: str) -> None:
        """Fail a job whose hash is not one RQ can read, from its raw keys; tell its creator."""
        key = Job.key_for(job_id)
        fields = {
            "status": JobStatus.FAILED.value,
            "ended_at": utcformat(now()),
            "meta": SERIALIZER.dumps({ERROR_META_KEY: message}),
            OUTCOME_FIELD: FAILED,
        }
        with self.connection.pipeline() as pipeline:
            pipeline.hset(key, mapping=fields)
            pipeline.expire(key, FAILURE_TTL_SECONDS)
            pipeline.zadd(queue.failed_job_registry.key, {job_id: time.time() + FAILURE_TTL_SECONDS})
            pipeline.lrem(queue.intermediate_queue_key, 1, job_id)
            pipeline.execute()
        publish_event(self.connection, queue.name, JobEvent(job_id, FAILED, error=message))
        warn(f"Job {job_id} failed without running: {message}")

    # Taking jobs -----------------------------------------------------------------------

    @contextmanager
    def _interruptible_here(self) -> Iterator[None]:
        """The one place a stop signal interrupts: a wait during which nothing is taken."""
        self._interruptible = True
        try:
            if self._stop_requested:
                raise StopRequested()
            yield
        finally:
            self._interruptible = False

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)

    def request_stop(self, signum, frame) -> None:
        """Stop once the job in hand (if any) is done; at once if waiting for one.

        A second signal changes nothing: a terminal's Ctrl-C reaches a pool's workers both
        from the terminal and from the pool. A job that hangs is ended by SIGKILL, and then
        failed as abandoned.
        """
        if self._stop_requested:
            return
        self._stop_requested = True
        self._shutdown_requested_date = now()
        if self._interruptible:
            raise StopRequested()

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None):
        """Take a job (onto RQ's intermediate list, as RQ does) and read it; if none, wait for one.

        None once a stop is requested (or, in burst mode, once the queue is empty).
        """
        if len(self.queues) != 1:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        [queue] = self.queues
        self.set_state(WorkerStatus.IDLE)
        self.procline(f"Listening on {queue.name}")
        while not self._stop_requested:
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()
            try:
                job_id = self.connection.lmove(queue.key, queue.intermediate_queue_key)
                if job_id is None:
                    if timeout is None:
                        return None
                    # Empty: wait until it is not (or the timeout ran out), then try again.
                    self._wait_for_a_job(queue, timeout)
                    continue
            except (redis.ConnectionError, redis.TimeoutError):
                with self._interruptible_here():
                    wait_for_redis(self.connection)
                continue
            if not JOB_ID_PATTERN.fullmatch(text_of(job_id)):
                self.connection.lrem(queue.intermediate_queue_key, 1, job_id)
                warn(f"Dropped a queue entry that is not a job id: {text_of(job_id)!r}")
                continue
            taken = self._read_taken_job(queue, text_of(job_id))
            if taken is not None:
                return taken
        return None

    def _wait_for_a_job(self, queue: Queue, timeout: int) -> None:
        """Block until the queue holds a job or ``timeout`` ran out; the queue is left as it was."""
        with self._interruptible_here():
            self.connection.blmove(queue.key, queue.key, timeout, src="LEFT", dest="LEFT")

    def _read_taken_job(self, queue: Queue, job_id: str) -> tuple[CourseJob, Queue] | None:
        try:
            job = self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
        except NoSuchJobError:
            self.connection.lrem(queue.intermediate_queue_key, 1, job_id)
            return None
        except UnreadableJobError as error:
            self.fail_unreadable(queue, job_id, str(error))
            return None
        job.redis_server_version = self.get_redis_server_version()
        return job, queue

    # Bookkeeping ----------------------------------------------------------------------

    def execute_job(self, job: CourseJob, queue: Queue) -> None:
        """SimpleWorker's ``execute_job``; its state, next heartbeat and suspension check: one pipeline."""
        self.prepare_execution(job)
        self.perform_job(job, queue)
        with self.connection.pipeline(transaction=False) as pipeline:
            self.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            self.heartbeat(pipeline=pipeline)
            pipeline.exists(WORKERS_SUSPENDED)
            self._suspended_after_job = bool(pipeline.execute()[-1])

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's check for ``rq suspend``, unless the end of the job just run found the workers not suspended.

        RQ's loop checks right after each job (a pipeline of a heartbeat and an EXISTS): the
        pipeline that ended the job read the same key a moment before.
        """
        suspended, self._suspended_after_job = self._suspended_after_job, None
        if suspended is False:
            return
        super().check_for_suspension(burst)

    def set_state(self, state: str, pipeline=None) -> None:
        """RQ's ``set_state``; a write of the state the worker last wrote is left out."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline=pipeline)

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        """RQ's heartbeat, sent at most every ``HEARTBEAT_MIN_INTERVAL_SECONDS`` when RQ gives no TTL.

        One with a TTL of RQ's choosing (a job's, shorter than the usual) is always sent. One
        sent on its own is one round trip (RQ's is two: HSET, then EXPIRE).
        """
        usual = timeout is None
        if usual and pipeline is None and self._sent_usual_heartbeat_lately():
            return
        if pipeline is None:
            with self.connection.pipeline(transaction=False) as own_pipeline:
                super().heartbeat(timeout, pipeline=own_pipeline)
                own_pipeline.execute()
        else:
            super().heartbeat(timeout, pipeline=pipeline)
        self._usual_heartbeat_sent_at = time.monotonic() if usual else None

    def _sent_usual_heartbeat_lately(self) -> bool:
        sent_at = self._usual_heartbeat_sent_at
        return sent_at is not None and time.monotonic() - sent_at < HEARTBEAT_MIN_INTERVAL_SECONDS

    def handle_execution_ended(self, job: CourseJob, queue: Queue, heartbeat_ttl: int) -> None:
        """RQ's, without its write of the job's ``last_heartbeat``: RQ's save of the ended job writes it.

        The job is saved whole (``last_heartbeat`` included) in the pipeline that records its
        success or failure, milliseconds later; the write here was a round trip of its own.
        """
        job.ended_at = now()
        job.last_heartbeat = job.ended_at

    # Maintenance -----------------------------------------------------------------------

    def clean_registries(self) -> None:
        """RQ's maintenance, except that a job taken and never started goes back to its queue."""
        for queue in self.queues:
            if queue.acquire_maintenance_lock():
                clean_registries(queue, self._exc_handlers)
                worker_registration.clean_worker_registry(queue)
                self.put_back_stranded_jobs(queue)
                queue.release_maintenance_lock()
        self.last_cleaned_at = now()

    def put_back_stranded_jobs(self, queue: Queue) -> None:
        """Jobs left in RQ's intermediate list, still queued, go back to the front of their queue.

        A job stays there for milliseconds between being taken and being started; one found
        there at two maintenances ``ABANDONED_GRACE_SECONDS`` apart was taken by a worker that
        died at that instant. RQ fails such a job ("stuck in intermediate queue"); it never ran.
        """
        intermediate = queue.intermediate_queue
        for raw_id in self.connection.lrange(intermediate.key, 0, -1):
            job_id = text_of(raw_id)
            if not JOB_ID_PATTERN.fullmatch(job_id):
                self.connection.lrem(intermediate.key, 1, raw_id)
                continue
            if job_id in queue.started_job_registry:
                continue
            status = self.connection.hget(Job.key_for(job_id), "status")
            if status is None or text_of(status) != JobStatus.QUEUED.value:
                # Gone, or ended some other way: it has no business in the list.
                intermediate.remove(job_id)
                continue
            if intermediate.set_first_seen(job_id):
                continue
            first_seen = intermediate.get_first_seen(job_id)
            if first_seen is None or now() - first_seen < timedelta(seconds=ABANDONED_GRACE_SECONDS):
                continue
            with self.connection.pipeline() as pipeline:
                pipeline.lrem(intermediate.key, 1, job_id)
                pipeline.lpush(queue.key, job_id)
                pipeline.delete(intermediate.get_first_seen_key(job_id))
                pipeline.execute()

    # Heartbeats and the main loop --------------------------------------------------------

    def get_heartbeat_ttl(self, job: Job) -> int:
        """How long a job stays ``started`` with no word from its worker: its timeout and a grace.

        A SimpleWorker sends no heartbeat while it runs a job; RQ's grace after the timeout is
        60 s, which only delays the moment a dead worker's job is failed.
        """
        if job.timeout and job.timeout > 0:
            return job.timeout + ABANDONED_GRACE_SECONDS
        return super().get_heartbeat_ttl(job)

    def work(self, *args, **kwargs) -> bool:
        # WorkerPool always starts RQ's scheduler process beside one of its workers. The course
        # schedules no jobs, and that process dies with a traceback when Redis goes away;
        # `rq worker` runs without it unless asked.
        kwargs["with_scheduler"] = False
        self._install_signal_handlers()
        if _stop_before_work or (self.pool_stopping is not None and self.pool_stopping.value):
            return False
        restarting = False
        while True:
            try:
                with self._interruptible_here():
                    wait_for_redis(self.connection)
            except StopRequested:
                return False
            if restarting:
                # What RQ's own end would have done, so the worker may register again.
                self.register_death()
                self.unsubscribe()
            try:
                worked = super().work(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError):
                # RQ ended its loop, and could not record the worker's end: Redis stayed away
                # past the retries while a job was in hand (RQ's maintenance fails that job
                # as abandoned), or while the worker was stopping anyway.
                if self._stop_requested:
                    return False
            else:
                if self._stop_requested or kwargs.get("burst") or kwargs.get("max_jobs"):
                    return worked
                # RQ gave up on an error of its own (it logs it, with --verbose) and ended
                # cleanly: a processor runs until it is stopped, so it starts again.
                time.sleep(RESTART_PAUSE_SECONDS)
            restarting = True


class CoursePool(WorkerPool):
    """RQ's WorkerPool of ``CourseWorker``s (task 7's concurrency), stoppable from its first instant.

    RQ's pool forks its workers before it installs its signal handlers, and a forked worker
    has Python's until its RQ loop starts: a Ctrl-C in that first moment printed
    KeyboardInterrupt tracebacks. Here the pool's handlers come first; a worker process
    forked with them only notes the stop (its worker then does not start), and a pool
    stopped while forking forks no more and stops those it forked; one forked an instant
    before the stop, whose signal CPython may drop, finds the stop in the pool's shared flag.
    """

    def __init__(self, queues, connection: redis.Redis, num_workers: int, job_functions: Iterable[str]):
        # Shared with the workers it forks. A signal that reaches a process between its fork and
        # the moment CPython resets its signal state there is lost; the pool's stop, sent to a
        # worker forked an instant before, can be that signal. The worker reads this instead.
        self._stopping = multiprocessing.Value("b", 0)
        worker_class = type(
            "CourseWorker",
            (CourseWorker,),
            {"job_functions": frozenset(job_functions), "pool_stopping": self._stopping},
        )
        super().__init__(
            queues,
            connection=connection,
            num_workers=num_workers,
            worker_class=worker_class,
            serializer=SERIALIZER,
            job_class=CourseJob,
        )
        self._pid = os.getpid()
        self._stop_signalled = False

    def request_stop(self, signum=None, frame=None) -> None:
        if os.getpid() != self._pid:
            note_stop_before_work()
            return
        self._stop_signalled = True
        # Before the workers are signalled: one that misses its signal then finds this set.
        self._stopping.value = 1
        super().request_stop(signum, frame)

    def start_worker(self, *args, **kwargs) -> None:
        if not self._stop_signalled:
            super().start_worker(*args, **kwargs)
        if self._stop_signalled:
            self.status = self.Status.STOPPED
            # Also the one forked while the signal came, which stop_workers() did not know yet.
            self.stop_workers()

    def start(self, burst: bool = False, logging_level: str | int = "INFO") -> None:
        self._install_signal_handlers()
        super().start(burst=burst, logging_level=logging_level)
