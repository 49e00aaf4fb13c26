"""What Kue gave the course and RQ does not: integer job ids and job events for the job's creator.

Kue numbered jobs 1, 2, 3... with one counter per Redis database, and told the process that
created a job about its progress, completion and failure through Redis pub/sub. RQ names
jobs with UUIDs and publishes no job events, so this module adds both on top of ordinary
RQ jobs (``rq info`` lists them; ``rq worker --serializer rq.serializers.JSONSerializer``
runs them):

- ids: ``next_job_ids`` reserves Kue-style integers with ``INCRBY`` on ``JOB_IDS_KEY``;
- events: JSON messages on one channel per queue, published by the processor side
  (``course.events``: ``report_progress`` from inside a job, and the success and failure
  callbacks that ``enqueue_jobs`` attaches to every job);
- the creator side: ``subscribe_to_job_events`` (a ``JobWatch``) subscribes *before* the
  jobs are enqueued (pub/sub keeps nothing for late subscribers) and hands each event of
  its own jobs to a handler. A message that
  is not an event, or not about its jobs, is ignored (a line on stderr with ``--verbose``);
  a ``complete`` or ``failed`` is believed only for a job whose hash records that outcome.
  Every second it also reads RQ's own status of a bounded batch of its pending jobs (the
  oldest, and a turn of the others), so an event lost on the way never leaves a creator
  waiting forever, at a cost that does not grow with the number of jobs pending.
  ``JobListener`` runs a watch in a background thread, for a long-running process such
  as a web server.
- jobs are JSON (``SERIALIZER``) and read as ``CourseJob``s everywhere; the processors'
  worker is ``course.worker.CourseWorker``.

The creator names the job function by its import path (``"7_job_processor.send_notification_job"``);
it never imports the processor, the worker does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import islice

from course.events import (
    COMPLETE,
    ERROR_META_KEY,
    FAILED,
    FAILURE_TTL_SECONDS,
    JOB_TIMEOUT_SECONDS,
    KNOWN_STATUSES,
    OUTCOME_FIELD,
    RESULT_TTL_SECONDS,
    SERIALIZER,
    CourseJob,
    JobEvent,
    UnreadableJobError,
    events_channel,
    parse_event,
    publish_completed,
    publish_failed,
)
from course.text import printable, text_of

import redis
from rq import Callback, Queue
from rq.job import Job, JobStatus

JOB_IDS_KEY = "course:job-ids"

# How long RQ keeps a job once it ended, passed to every ``enqueue`` or ``prepare_data``
# (RQ's own defaults: 500 s for a finished job, a year for a failed one).
JOB_TTLS = {"result_ttl": RESULT_TTL_SECONDS, "failure_ttl": FAILURE_TTL_SECONDS}

POLL_INTERVAL_SECONDS = 1.0
# Each poll reads the status of at most this many pending jobs: the oldest ones (a queue
# runs its jobs in order, so they are the ones that end next), and as many again in turn
# from all the others (any job may end out of order: deleted, or run by another queue's
# order). A lost event is noticed within a second or two for a job among the oldest, and
# within (pending jobs / POLL_IN_TURN) seconds for any job.
POLL_OLDEST = 8
POLL_IN_TURN = 8
SUBSCRIBE_TIMEOUT_SECONDS = 10.0
LISTENER_RETRY_SECONDS = 1.0

# A restarted Redis (`./redis_setup.sh stop` then start) is away for a second or two. A creator
# waiting for its jobs rides out an absence this long; one whose Redis stays away longer gives
# up with the course's failed-connection line.
RECONNECT_SECONDS = 10.0
RECONNECT_RETRY_SECONDS = 0.5

ENDED_STATUSES = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}

log = logging.getLogger(__name__)
# Nothing of the course's own log lines reaches the terminal unless asked for (--verbose).
logging.getLogger("course").addHandler(logging.NullHandler())


# Ids ---------------------------------------------------------------------------------------


def next_job_ids(connection: redis.Redis, count: int = 1) -> list[str]:
    """Reserve ``count`` consecutive Kue-style ids, as RQ job ids (strings of digits).

    One counter per database, shared by every queue; INCRBY hands out a whole block at once
    and never repeats, which matters: RQ silently overwrites a job whose id is reused.
    """
    if count == 0:
        return []
    last = connection.incrby(JOB_IDS_KEY, count)
    return [str(job_id) for job_id in range(last - count + 1, last + 1)]


# Creating jobs -----------------------------------------------------------------------------


def course_queue(name: str, connection: redis.Redis) -> Queue:
    """A queue as every course program uses it: JSON jobs (``SERIALIZER``), read as ``CourseJob``s.

    Its jobs get the course's timeout (``JOB_TIMEOUT_SECONDS``) unless they name their own.
    """
    return Queue(
        name,
        connection=connection,
        serializer=SERIALIZER,
        job_class=CourseJob,
        default_timeout=JOB_TIMEOUT_SECONDS,
    )


def as_course_queue(queue: Queue) -> Queue:
    if queue.serializer is SERIALIZER and queue.job_class is CourseJob:
        return queue
    return course_queue(queue.name, queue.connection)


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
    The jobs are JSON whatever ``queue``'s serializer.
    """
    return as_course_queue(queue).enqueue_many(
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


# The creator side --------------------------------------------------------------------------


def has_ended(status: str | None) -> bool:
    """Whether RQ's raw status says the job will not run any more (gone, or a status RQ does not know)."""
    return status is None or status not in KNOWN_STATUSES or JobStatus(status) in ENDED_STATUSES


def ended_event(connection: redis.Redis, job_id: str, status: str | None) -> JobEvent:
    """The event RQ's state stands for, for a job whose event went missing."""
    if status == JobStatus.FINISHED.value:
        return JobEvent(job_id, COMPLETE)
    if status is not None and status not in KNOWN_STATUSES:
        return JobEvent(job_id, FAILED, error=f"Job status {status}")
    try:
        [job] = CourseJob.fetch_many([job_id], connection=connection, serializer=SERIALIZER)
    except UnreadableJobError as error:
        return JobEvent(job_id, FAILED, error=str(error))
    if job is None or status is None:
        return JobEvent(job_id, FAILED, error="Job was deleted")
    error = job.meta.get(ERROR_META_KEY)
    return JobEvent(job_id, FAILED, error=error if isinstance(error, str) and error else f"Job {status}")


def ignore(reason: str, what: object) -> None:
    """A message the watch does not act on: one line on stderr with --verbose, nothing otherwise."""
    log.info("Ignored %s: %s", reason, printable(repr(what))[:200])


class JobWatch:
    """The creator's end of Kue's job events: subscribe, enqueue, then hear about those jobs.

    ``on_event`` gets each event of the jobs enqueued through this watch, in the order the
    processor sent them; a job's last event is ``complete`` or ``failed``, after which it
    is no longer pending. Events of other jobs on the same queue are ignored, and so is
    anything else published on the channel.
    """

    def __init__(self, queue: Queue, on_event: Callable[[JobEvent], None], job_ids: Iterable[str] = ()):
        self.queue = as_course_queue(queue)
        self.on_event = on_event
        self._lock = threading.Lock()
        # Insertion order is id order: the oldest pending jobs come first.
        self._pending: dict[str, None] = {}
        # Every pending id, in the order of the polls' turns (ids that ended drop out as met).
        self._turns: deque[str] = deque()
        # Ended according to RQ at the last poll, with no event yet: reported at the next one.
        self._ended_in_rq: dict[str, str | None] = {}
        self._next_poll = time.monotonic() + POLL_INTERVAL_SECONDS
        self.follow(job_ids)
        self._pubsub = self.queue.connection.pubsub()
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

    def _any_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

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
        self.follow(job_ids)
        try:
            enqueue_jobs(self.queue, function_name, datas, job_ids, **options)
        except BaseException:
            self._forget(job_ids)
            raise
        return job_ids

    def follow(self, job_ids: Iterable[str]) -> None:
        """Watch these jobs too: their events go to ``on_event`` from now on."""
        with self._lock:
            for job_id in job_ids:
                self._pending[job_id] = None
                self._turns.append(job_id)

    def _forget(self, job_ids: Iterable[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                self._pending.pop(job_id, None)
                self._ended_in_rq.pop(job_id, None)

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
                self._handle_message(message)
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
        while self._any_pending():
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

    def _handle_message(self, message: dict) -> None:
        event = parse_event(message["data"]) if message.get("type") == "message" else None
        if event is None:
            ignore("a message that is not a job event", message.get("data"))
            return
        with self._lock:
            watched = event.job_id in self._pending
        if not watched:
            ignore("an event of a job this program did not create", message["data"])
        elif event.ended and not self._outcome_recorded(event):
            ignore("an event its job's state does not bear out", message["data"])
        else:
            self._handle(event)

    def _outcome_recorded(self, event: JobEvent) -> bool:
        """Whether the job's hash records the outcome ``event`` announces (its processor writes it first)."""
        recorded = self.queue.connection.hget(Job.key_for(event.job_id), OUTCOME_FIELD)
        return recorded is not None and text_of(recorded) == event.kind

    def _handle(self, event: JobEvent) -> None:
        with self._lock:
            if event.job_id not in self._pending:
                return
            if event.ended:
                del self._pending[event.job_id]
                self._ended_in_rq.pop(event.job_id, None)
        self.on_event(event)

    def check_rq_state(self) -> None:
        """Report, from RQ's state, the jobs that ended with no event; read a bounded batch of statuses.

        A job is reported one poll after RQ first showed it ended: its worker publishes the
        event *before* RQ saves the final status, and that second of grace lets a late event
        arrive first and keep its place in the job's order of events.
        """
        with self._lock:
            overdue = [item for item in self._ended_in_rq.items() if item[0] in self._pending]
            self._ended_in_rq = {}
            batch = self._poll_batch(exclude={job_id for job_id, _ in overdue})
        for job_id, status in overdue:
            self._handle(ended_event(self.queue.connection, job_id, status))
        if not batch:
            return
        statuses = self._statuses(batch)
        with self._lock:
            self._ended_in_rq = {
                job_id: status
                for job_id, status in statuses.items()
                if has_ended(status) and job_id in self._pending
            }

    def _poll_batch(self, exclude: set[str]) -> list[str]:
        """The pending jobs whose status this poll reads: the oldest few, and a few more in turn."""
        oldest = islice(self._pending, POLL_OLDEST)
        batch = dict.fromkeys(job_id for job_id in oldest if job_id not in exclude)
        wanted = len(batch) + POLL_IN_TURN
        for _ in range(len(self._turns)):
            if len(batch) >= wanted:
                break
            job_id = self._turns.popleft()
            if job_id not in self._pending:
                continue
            self._turns.append(job_id)
            if job_id not in exclude:
                batch[job_id] = None
        return list(batch)

    def _statuses(self, job_ids: list[str]) -> dict[str, str | None]:
        """Each job's raw RQ status (None for a job that no longer exists), in one round trip."""
        with self.queue.connection.pipeline(transaction=False) as pipeline:
            for job_id in job_ids:
                pipeline.hget(Job.key_for(job_id), "status")
            raw_statuses = pipeline.execute()
        pairs = zip(job_ids, raw_statuses, strict=True)
        return {job_id: text_of(raw) if raw else None for job_id, raw in pairs}

    def close(self) -> None:
        self._pubsub.close()

    def __enter__(self) -> JobWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def subscribe_to_job_events(
    queue: Queue, job_ids: Sequence[str], on_event: Callable[[JobEvent], None]
) -> JobWatch:
    """Kue's ``job.on('progress' | 'complete' | 'failed', handler)`` for the jobs ``job_ids`` will name.

    Subscribed, and the subscription confirmed, when it returns: call it before the jobs are
    enqueued, since pub/sub keeps nothing for a late subscriber. ``wait()`` on the watch it
    returns hands each event to ``on_event`` until every one of the jobs has ended.
    """
    return JobWatch(queue, on_event, job_ids=job_ids)


class JobListener:
    """A ``JobWatch`` kept dispatching by a daemon thread, for a long-running process.

    A web server creates one at start-up (in each of its processes: threads do not survive
    a fork), calls ``enqueue`` from its request handlers and gets ``on_event`` calls, from
    the listener's thread, for the jobs it enqueued. If Redis goes away, the thread retries
    every second; the watch's polling of RQ's state catches up on what was missed. Nothing
    read from Redis ends the thread.
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
            except Exception as error:
                # A listener that died would leave its process deaf to its jobs for good.
                log.warning("Job listener: %s", printable(f"{type(error).__name__}: {error}"))
                self._stopping.wait(LISTENER_RETRY_SECONDS)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self.watch.close()
