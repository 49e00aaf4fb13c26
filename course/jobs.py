"""What Kue gave the course and RQ does not: integer job ids and job events for the job's creator.

Kue numbered jobs 1, 2, 3... with one counter per Redis database, and told the process that
created a job about its progress, completion and failure through Redis pub/sub. RQ names
jobs with UUIDs and publishes no job events, so this module adds both on top of ordinary
RQ jobs (``rq info`` lists them, a plain ``rq worker`` runs them):

- ids: ``next_job_ids`` reserves Kue-style integers with ``INCRBY`` on ``JOB_IDS_KEY``;
- events: JSON messages on one channel per queue (``events_channel``). The processor side
  publishes them: ``report_progress`` from inside a job, and the success and failure
  callbacks that ``enqueue_jobs`` attaches to every job (RQ runs those in the worker);
- the creator side: a ``JobWatch`` subscribes *before* it enqueues (pub/sub keeps nothing
  for late subscribers) and hands each event of its own jobs to a handler. Every second it
  also reads RQ's own job status, so an event lost on the way never leaves a creator
  waiting forever. ``JobListener`` runs a watch in a background thread, for a long-running
  process such as a web server.

The creator names the job function by its import path (``"7_job_processor.send_notification_job"``);
it never imports the processor, the worker does.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from rq import Callback, Queue, SimpleWorker
from rq.job import Job, JobStatus, get_current_job

from course.connection import not_connected_line

JOB_IDS_KEY = "course:job-ids"
EVENTS_CHANNEL_PREFIX = "course:job-events:"

# Kue's event names.
PROGRESS = "progress"
COMPLETE = "complete"
FAILED = "failed"

PROGRESS_META_KEY = "progress"
ERROR_META_KEY = "error"

# A notification takes milliseconds; a short timeout also bounds how long RQ waits before it
# may declare a job of a dead worker abandoned (its started entry lasts timeout + ABANDONED_GRACE_SECONDS).
JOB_TIMEOUT_SECONDS = 10
# Long enough to look at jobs with `rq info` after a lesson, short enough not to pile up
# (RQ keeps a failed job, and its result stream without any expiry, for a year by default).
RESULT_TTL_SECONDS = 60 * 60
FAILURE_TTL_SECONDS = 24 * 60 * 60

POLL_INTERVAL_SECONDS = 1.0
SUBSCRIBE_TIMEOUT_SECONDS = 10.0
LISTENER_RETRY_SECONDS = 1.0

# A restarted Redis (`./redis_setup.sh stop` then start) is away for a second or two. A creator
# waiting for its jobs, and a worker in the middle of one, ride out an absence this long; a
# creator whose Redis stays away longer gives up with the course's failed-connection line.
RECONNECT_SECONDS = 10.0
RECONNECT_RETRY_SECONDS = 0.5
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
# Longer than a worker's retries, so a worker that rode out a Redis restart
# in the middle of a job is never taken for dead.
ABANDONED_GRACE_SECONDS = 15

# Above CRITICAL: the loggers RQ sets to this level format no record at all.
QUIET = logging.CRITICAL + 1

ENDED_STATUSES = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


@dataclass(frozen=True)
class JobEvent:
    """One of Kue's job events: ``progress`` (with a percent), ``complete`` or ``failed`` (with an error)."""

    job_id: str
    kind: str
    percent: int | None = None
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.kind in (COMPLETE, FAILED)

    def to_json(self) -> str:
        fields = {"id": self.job_id, "event": self.kind, "percent": self.percent, "error": self.error}
        return json.dumps({key: value for key, value in fields.items() if value is not None})

    @classmethod
    def from_json(cls, raw: str | bytes) -> JobEvent:
        fields = json.loads(raw)
        return cls(fields["id"], fields["event"], fields.get("percent"), fields.get("error"))


def event_line(subject: str, event: JobEvent) -> str:
    """The line the course prints for an event, e.g. ``Notification job 7 50% complete``."""
    if event.kind == PROGRESS:
        return f"{subject} {event.job_id} {event.percent}% complete"
    if event.kind == COMPLETE:
        return f"{subject} {event.job_id} completed"
    return f"{subject} {event.job_id} failed: {event.error}"


# Ids ---------------------------------------------------------------------------------------


def next_job_ids(connection: redis.Redis, count: int = 1) -> list[str]:
    """Reserve ``count`` consecutive Kue-style ids, as RQ job ids (strings of digits).

    One counter per database, shared by every queue; INCRBY hands out a whole block at once
    and never repeats, which matters: RQ silently overwrites a job whose id is reused.
    """
    last = connection.incrby(JOB_IDS_KEY, count)
    return [str(job_id) for job_id in range(last - count + 1, last + 1)]


# The processor side ------------------------------------------------------------------------


def events_channel(queue_name: str) -> str:
    return f"{EVENTS_CHANNEL_PREFIX}{queue_name}"


def publish_event(connection: redis.Redis, queue_name: str, event: JobEvent) -> None:
    connection.publish(events_channel(queue_name), event.to_json())


def report_progress(percent: int, job: Job | None = None) -> None:
    """Kue's ``job.progress()``: record the percent on the job and tell its creator.

    Called from inside a job function; ``job`` defaults to the job being run.
    """
    job = job or get_current_job()
    job.meta[PROGRESS_META_KEY] = percent
    job.save_meta()
    publish_event(job.connection, job.origin, JobEvent(job.id, PROGRESS, percent=percent))


def publish_completed(job: Job, connection: redis.Redis, result: object) -> None:
    """RQ's success callback: Kue's ``complete`` event."""
    publish_event(connection, job.origin, JobEvent(job.id, COMPLETE))


def failure_message(error: BaseException) -> str:
    """Kue showed the error's message; RQ's abandoned-job error has none, so its name stands in."""
    return str(error) or type(error).__name__


def publish_failed(
    job: Job, connection: redis.Redis, error_type: type, error: BaseException, traceback: object
) -> None:
    """RQ's failure callback, also run for an abandoned job: Kue's ``failed`` event.

    The message is kept on the job too, so a creator that missed this event reads it there.
    """
    message = failure_message(error)
    job.meta[ERROR_META_KEY] = message
    job.save_meta()
    publish_event(connection, job.origin, JobEvent(job.id, FAILED, error=message))


def enqueue_jobs(
    queue: Queue,
    function_name: str,
    datas: Sequence[dict],
    job_ids: Sequence[str],
    *,
    timeout: int = JOB_TIMEOUT_SECONDS,
    result_ttl: int = RESULT_TTL_SECONDS,
    failure_ttl: int = FAILURE_TTL_SECONDS,
) -> list[Job]:
    """Enqueue one ordinary RQ job per data dict, in one round trip, with the event callbacks.

    The job's only argument is its data, exactly (Kue's ``job.data``). ``timeout`` is RQ's
    job timeout; ``result_ttl`` and ``failure_ttl`` how long a finished or failed job is kept.
    """
    return queue.enqueue_many(
        [
            Queue.prepare_data(
                function_name,
                args=(data,),
                job_id=job_id,
                timeout=timeout,
                result_ttl=result_ttl,
                failure_ttl=failure_ttl,
                on_success=Callback(publish_completed),
                on_failure=Callback(publish_failed),
            )
            for data, job_id in zip(datas, job_ids, strict=True)
        ]
    )


def job_data(job: Job) -> dict:
    """The data a job was created with."""
    return job.args[0]


# The creator side --------------------------------------------------------------------------


def ended_event(connection: redis.Redis, job_id: str, status: JobStatus | None) -> JobEvent:
    """The event RQ's state stands for, for a job whose event went missing."""
    if status == JobStatus.FINISHED:
        return JobEvent(job_id, COMPLETE)
    [job] = Job.fetch_many([job_id], connection=connection)
    if job is None or status is None:
        return JobEvent(job_id, FAILED, error="Job was deleted")
    return JobEvent(job_id, FAILED, error=job.meta.get(ERROR_META_KEY) or f"Job {status.value}")


class JobWatch:
    """The creator's end of Kue's job events: subscribe, enqueue, then hear about those jobs.

    ``on_event`` gets each event of the jobs enqueued through this watch, in the order the
    processor sent them; a job's last event is ``complete`` or ``failed``, after which it
    is no longer pending. Events of other jobs on the same queue are ignored.
    """

    def __init__(self, queue: Queue, on_event: Callable[[JobEvent], None]):
        self.queue = queue
        self.on_event = on_event
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        # Ended according to RQ at the last poll, with no event yet: reported at the next one.
        self._ended_in_rq: set[str] = set()
        self._next_poll = time.monotonic() + POLL_INTERVAL_SECONDS
        self._pubsub = queue.connection.pubsub()
        self._subscribe()

    def _subscribe(self) -> None:
        """Subscribe and wait for the server's confirmation: only then may jobs be enqueued."""
        self._pubsub.subscribe(events_channel(self.queue.name))
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=deadline - time.monotonic())
            if message is not None and message["type"] == "subscribe":
                return
        raise redis.ConnectionError(f"no confirmation of SUBSCRIBE within {SUBSCRIBE_TIMEOUT_SECONDS:.0f} s")

    @property
    def pending(self) -> set[str]:
        """Ids of the watched jobs that have neither completed nor failed yet."""
        with self._lock:
            return set(self._pending)

    def enqueue(self, function_name: str, data: dict, **options: int) -> str:
        """Create one job and watch it; returns its id. ``options``: as for ``enqueue_jobs``."""
        return self.enqueue_many(function_name, [data], **options)[0]

    def enqueue_many(self, function_name: str, datas: Sequence[dict], **options: int) -> list[str]:
        """Create one job per data dict, in order, and watch them; returns their ids.

        The ids are watched before the jobs exist, so an event dispatched by another thread
        the moment a worker picks a job up is not dropped as someone else's.
        """
        if not datas:
            return []
        job_ids = next_job_ids(self.queue.connection, len(datas))
        self._track(job_ids)
        try:
            enqueue_jobs(self.queue, function_name, datas, job_ids, **options)
        except BaseException:
            self._forget(job_ids)
            raise
        return job_ids

    def _track(self, job_ids: Iterable[str]) -> None:
        with self._lock:
            self._pending.update(job_ids)

    def _forget(self, job_ids: Iterable[str]) -> None:
        with self._lock:
            self._pending.difference_update(job_ids)
            self._ended_in_rq.difference_update(job_ids)

    def dispatch(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for events and hand on all that have arrived.

        RQ's state is polled whenever a second has passed since the last poll.
        """
        deadline = time.monotonic() + timeout
        handled = False
        while True:
            wait = 0.0 if handled else max(0.0, min(deadline, self._next_poll) - time.monotonic())
            message = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            if message is not None:
                self._handle(JobEvent.from_json(message["data"]))
                handled = True
                continue
            if time.monotonic() >= self._next_poll:
                self.check_rq_state()
                self._next_poll = time.monotonic() + POLL_INTERVAL_SECONDS
            if handled or time.monotonic() >= deadline:
                return

    def wait(self, timeout: float | None = None) -> bool:
        """Dispatch events until every watched job has ended; False if ``timeout`` ran out first.

        A Redis that goes away for up to ``RECONNECT_SECONDS`` (a restart) is waited for: the
        subscription is renewed on reconnection, and the polling of RQ's state reports the
        jobs whose events were published meanwhile. A longer absence raises its error.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        lost_since = None
        while self.pending:
            left = POLL_INTERVAL_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self.dispatch(min(left, POLL_INTERVAL_SECONDS))
            except (redis.ConnectionError, redis.TimeoutError):
                if lost_since is None:
                    lost_since = time.monotonic()
                elif time.monotonic() - lost_since > RECONNECT_SECONDS:
                    raise
                time.sleep(RECONNECT_RETRY_SECONDS)
            else:
                lost_since = None
        return True

    def _handle(self, event: JobEvent) -> None:
        with self._lock:
            if event.job_id not in self._pending:
                return
            if event.ended:
                self._pending.discard(event.job_id)
                self._ended_in_rq.discard(event.job_id)
        self.on_event(event)

    def check_rq_state(self) -> None:
        """Report, from RQ's state, the jobs that ended with no event.

        A job is reported only if RQ showed it ended at the previous poll too: its worker
        publishes the event *before* RQ saves the final status, and that second of grace
        lets a late event arrive first and keep its place in the job's order of events.
        """
        job_ids = sorted(self.pending, key=int)
        if not job_ids:
            return
        statuses = self._statuses(job_ids)
        ended = {job_id for job_id, status in statuses.items() if status is None or status in ENDED_STATUSES}
        with self._lock:
            overdue = sorted(ended & self._ended_in_rq, key=int)
            self._ended_in_rq = ended - set(overdue)
        for job_id in overdue:
            self._handle(ended_event(self.queue.connection, job_id, statuses[job_id]))

    def _statuses(self, job_ids: list[str]) -> dict[str, JobStatus | None]:
        """Each job's RQ status (None for a job that no longer exists), in one round trip."""
        with self.queue.connection.pipeline(transaction=False) as pipeline:
            for job_id in job_ids:
                pipeline.hget(Job.key_for(job_id), "status")
            raw_statuses = pipeline.execute()
        return {
            job_id: None if raw is None else JobStatus(raw.decode() if isinstance(raw, bytes) else raw)
            for job_id, raw in zip(job_ids, raw_statuses, strict=True)
        }

    def close(self) -> None:
        self._pubsub.close()

    def __enter__(self) -> JobWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class JobListener:
    """A ``JobWatch`` kept dispatching by a daemon thread, for a long-running process.

    A web server creates one at start-up (in each of its processes: threads do not survive
    a fork), calls ``enqueue`` from its request handlers and gets ``on_event`` calls, from
    the listener's thread, for the jobs it enqueued. If Redis goes away, the thread retries
    every second; the watch's polling of RQ's state catches up on what was missed.
    """

    def __init__(self, queue: Queue, on_event: Callable[[JobEvent], None]):
        self.watch = JobWatch(queue, on_event)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job events of {queue.name}", daemon=True)

    def start(self) -> JobListener:
        self._thread.start()
        return self

    def enqueue(self, function_name: str, data: dict, **options: int) -> str:
        return self.watch.enqueue(function_name, data, **options)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.watch.dispatch(POLL_INTERVAL_SECONDS)
            except (redis.ConnectionError, redis.TimeoutError):
                self._stopping.wait(LISTENER_RETRY_SECONDS)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self.watch.close()


# Processors --------------------------------------------------------------------------------


def wait_for_redis(connection: redis.Redis) -> None:
    """Return once Redis answers, printing the course's failed-connection line for each failed try.

    A processor waits for its server rather than exit, as a Kue processor's node_redis
    client kept reconnecting; Ctrl-C still stops it.
    """
    delay = WAIT_FIRST_DELAY_SECONDS
    while True:
        try:
            connection.ping()
            return
        except (redis.ConnectionError, redis.TimeoutError) as error:
            print(not_connected_line(error), flush=True)
        time.sleep(delay)
        delay = min(delay * 2, WAIT_MAX_DELAY_SECONDS)


class CourseWorker(SimpleWorker):
    """RQ's SimpleWorker (no fork per job), checking for abandoned jobs often, riding out Redis restarts.

    When a processor is killed mid-job, its started jobs stay ``started`` until some worker
    cleans the queue's registries and fails them (RQ calls the failure callback, so their
    creators hear about it). A restarted processor does that about 25 to 35 s after the job
    started (a course job; a job with a shorter timeout sooner).

    Redis going away does not end it: its commands are retried for about 11 s (a restart),
    an idle worker waits for Redis as long as it takes (RQ does that), and a worker whose
    Redis stayed away longer in the middle of a job waits, then starts again.
    """

    # RQ waits between dequeue attempts while Redis is away: 1 s, doubling up to this (60 s by default).
    max_connection_wait_time = 5.0

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_SECONDS)
        kwargs.setdefault("worker_ttl", WORKER_TTL_SECONDS)
        super().__init__(*args, **kwargs)
        backoff = ExponentialBackoff(cap=WORKER_RETRY_CAP_SECONDS, base=WORKER_RETRY_BASE_SECONDS)
        self.connection.set_retry(Retry(backoff, WORKER_RETRIES))
        self._stop_requested_by_signal = False

    def get_heartbeat_ttl(self, job: Job) -> int:
        """How long a job stays ``started`` with no word from its worker: its timeout and a grace.

        A SimpleWorker sends no heartbeat while it runs a job; RQ's grace after the timeout is
        60 s, which only delays the moment a dead worker's job is failed.
        """
        if job.timeout and job.timeout > 0:
            return job.timeout + ABANDONED_GRACE_SECONDS
        return super().get_heartbeat_ttl(job)

    def request_stop(self, signum, frame) -> None:
        self._stop_requested_by_signal = True
        super().request_stop(signum, frame)

    def work(self, *args, **kwargs) -> bool:
        # WorkerPool always starts RQ's scheduler process beside one of its workers. The course
        # schedules no jobs, and that process dies with a traceback when Redis goes away;
        # `rq worker` runs without it unless asked.
        kwargs["with_scheduler"] = False
        wait_for_redis(self.connection)
        while True:
            try:
                return super().work(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError):
                # RQ ended its loop, and could not record the worker's end: Redis stayed away
                # past the retries while a job was in hand (RQ's maintenance fails that job
                # as abandoned), or while the worker was stopping anyway.
                if self._stop_requested_by_signal:
                    return False
            wait_for_redis(self.connection)
            # What RQ's own end would have done, so the worker may register again.
            self.register_death()
            self.unsubscribe()


def logging_level_from_args(description: str) -> str | int:
    """A processor's command line: ``--verbose`` shows RQ's own log lines. Returns RQ's level."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show RQ's own log lines")
    return rq_logging_level(parser.parse_args().verbose)


def rq_logging_level(verbose: bool) -> str | int:
    """The level to give RQ, its own log lines shown only on request (``--verbose``).

    Quiet, RQ's loggers also get a handler that drops everything, so RQ adds none of its own
    and nothing reaches the terminal.
    """
    if verbose:
        return "INFO"
    rq_logger = logging.getLogger("rq")
    rq_logger.addHandler(logging.NullHandler())
    rq_logger.propagate = False
    return QUIET
