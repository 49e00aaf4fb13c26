"""What both ends of a course job share: the job format in Redis and Kue's job events.

Everything here is read back from Redis by another process, so it is data, never code:

- ``SERIALIZER``: job data, meta and results are JSON (RQ's ``JSONSerializer``), in every
  program. RQ's default, pickle, runs whatever a payload says when it is read, so anyone
  able to write a job's hash would run code in every processor and creator.
- ``CourseJob``: an RQ job that imports no callback but the course's own two, posts to no
  webhook, and says what is wrong with a job hash it cannot read (``UnreadableJobError``)
  instead of failing somewhere inside RQ.
- events: JSON messages on one channel per queue (``events_channel``), published from the
  processor: ``report_progress`` inside a job, ``publish_completed`` and ``publish_failed``
  as RQ's success and failure callbacks. Each records its outcome on the job's hash
  (``OUTCOME_FIELD``) before it publishes it, so a creator believes a ``complete`` or
  ``failed`` message only for a job whose hash says so. ``parse_event`` turns a message
  into a ``JobEvent``, or into None for anything that is not one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from course.text import printable, text_of

import redis
from rq.exceptions import AbandonedJobError
from rq.job import Job, JobStatus, get_current_job
from rq.serializers import JSONSerializer
from rq.utils import decode_redis_hash

SERIALIZER = JSONSerializer

EVENTS_CHANNEL_PREFIX = "course:job-events:"

# Kue's event names.
PROGRESS = "progress"
COMPLETE = "complete"
FAILED = "failed"
ENDING_KINDS = (COMPLETE, FAILED)

PROGRESS_META_KEY = "progress"
ERROR_META_KEY = "error"
# A field of the job's hash, set to COMPLETE or FAILED by whoever publishes that outcome.
OUTCOME_FIELD = "course_outcome"

# A notification takes milliseconds; a short timeout also bounds how long RQ waits before it
# may declare a job of a dead worker abandoned (its started entry lasts timeout + ABANDONED_GRACE_SECONDS).
JOB_TIMEOUT_SECONDS = 10
# Long enough to look at jobs with `rq info` after a lesson, short enough not to pile up
# (RQ keeps a failed job, and its result stream without any expiry, for a year by default).
RESULT_TTL_SECONDS = 60 * 60
FAILURE_TTL_SECONDS = 24 * 60 * 60

# RQ names an abandoned job's error AbandonedJobError and gives it no message.
ABANDONED_MESSAGE = "Job abandoned: its processor stopped while running it"

KNOWN_STATUSES = frozenset(status.value for status in JobStatus)


@dataclass(frozen=True)
class JobEvent:
    """One of Kue's job events: ``progress`` (with a percent), ``complete`` or ``failed`` (with an error)."""

    job_id: str
    kind: str
    percent: int | None = None
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.kind in ENDING_KINDS

    def to_json(self) -> str:
        fields = {"id": self.job_id, "event": self.kind, "percent": self.percent, "error": self.error}
        return json.dumps({key: value for key, value in fields.items() if value is not None})

    @classmethod
    def from_json(cls, raw: str | bytes) -> JobEvent:
        """The event ``raw`` carries; ValueError if it carries none (see ``parse_event``)."""
        event = parse_event(raw)
        if event is None:
            raise ValueError(f"not a job event: {printable(repr(raw))[:200]}")
        return event


def parse_event(raw: str | bytes) -> JobEvent | None:
    """The event a pub/sub message carries, or None for anything else (a message is anyone's input)."""
    try:
        fields = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(fields, dict):
        return None
    job_id, kind = fields.get("id"), fields.get("event")
    if not isinstance(job_id, str) or kind not in (PROGRESS, COMPLETE, FAILED):
        return None
    if kind == PROGRESS:
        percent = fields.get("percent")
        valid = type(percent) is int and 0 <= percent <= 100
        return JobEvent(job_id, kind, percent=percent) if valid else None
    if kind == FAILED:
        error = fields.get("error")
        return JobEvent(job_id, kind, error=error) if isinstance(error, str) else None
    return JobEvent(job_id, kind)


def event_line(subject: str, event: JobEvent) -> str:
    """The line the course prints for an event, e.g. ``Notification job 7 50% complete``."""
    job_id = printable(event.job_id)
    if event.kind == PROGRESS:
        return f"{subject} {job_id} {event.percent}% complete"
    if event.kind == COMPLETE:
        return f"{subject} {job_id} completed"
    return f"{subject} {job_id} failed: {printable(event.error or '')}"


# The job format ----------------------------------------------------------------------------


class UnreadableJobError(Exception):
    """A job hash RQ cannot make a job of: its message says why, fit to show a learner."""


class CourseJob(Job):
    """An RQ job read safely: the course's callbacks or none, a status RQ knows, meta a dict.

    RQ imports a callback by the name stored in the job's hash when it is about to call it,
    even for a job it fails as abandoned; a name other than the course's callbacks is never
    imported here (the worker refuses to run such a job at all).
    """

    def restore(self, raw_data: dict) -> None:
        status = text_of(decode_redis_hash(raw_data).get("status") or b"")
        if status and status not in KNOWN_STATUSES:
            raise UnreadableJobError(f"Job status {printable(status)}")
        try:
            super().restore(raw_data)
        except Exception as error:
            raise UnreadableJobError(f"Job could not be read: {printable(str(error))}") from error
        # Meta that is not a JSON object, or not JSON at all (RQ then keeps the raw bytes under
        # "unserialized"), is no meta the course wrote: start afresh rather than carry it.
        if not isinstance(self.meta, dict) or isinstance(self.meta.get("unserialized"), bytes):
            self.meta = {}
        # RQ posts a job's result to the URLs its hash lists when it ends: the course's jobs
        # have none, and a worker must not send requests wherever a job hash says.
        self.webhooks = []

    @property
    def success_callback(self):
        return COURSE_CALLBACKS.get(self._success_callback_name)

    @property
    def failure_callback(self):
        return COURSE_CALLBACKS.get(self._failure_callback_name)

    @property
    def stopped_callback(self):
        return None

    def callback_names(self) -> list[str]:
        """The callbacks the job's hash names (RQ keeps the names until it calls them)."""
        names = [self._success_callback_name, self._failure_callback_name, self._stopped_callback_name]
        return [name for name in names if isinstance(name, str)]


# The processor side ------------------------------------------------------------------------


def events_channel(queue_name: str) -> str:
    return f"{EVENTS_CHANNEL_PREFIX}{queue_name}"


def publish_event(connection: redis.Redis, queue_name: str, event: JobEvent) -> None:
    """Publish ``event`` on its queue's channel; ``connection`` may be a pipeline."""
    connection.publish(events_channel(queue_name), event.to_json())


def write_and_publish(connection: redis.Redis, job: Job, fields: dict[str, Any], event: JobEvent) -> None:
    """Write ``fields`` on the job's hash, then publish ``event``: one round trip.

    Redis runs one connection's commands in order, so a creator that hears the event finds
    the fields written. No MULTI: nothing else needs to be kept from seeing the write alone.
    """
    with connection.pipeline(transaction=False) as pipeline:
        pipeline.hset(job.key, mapping=fields)
        publish_event(pipeline, job.origin, event)
        pipeline.execute()


def report_progress(percent: int, job: Job | None = None) -> None:
    """Kue's ``job.progress()``: record the percent on the job and tell its creator.

    Called from inside a job function; ``job`` defaults to the job being run. The meta is
    written as RQ's ``save_meta`` writes it.
    """
    job = job or get_current_job()
    job.meta[PROGRESS_META_KEY] = percent
    event = JobEvent(job.id, PROGRESS, percent=percent)
    write_and_publish(job.connection, job, {"meta": job.serializer.dumps(job.meta)}, event)


def record_outcome(connection: redis.Redis, job: Job, event: JobEvent, meta: dict[str, Any] | None = None):
    """Write the outcome (and the meta, if given) on the job's hash, where a creator checks it; publish it."""
    fields: dict[str, Any] = {OUTCOME_FIELD: event.kind}
    if meta is not None:
        fields["meta"] = SERIALIZER.dumps(meta)
    write_and_publish(connection, job, fields, event)


def publish_completed(job: Job, connection: redis.Redis, result: object) -> None:
    """RQ's success callback: Kue's ``complete`` event."""
    record_outcome(connection, job, JobEvent(job.id, COMPLETE))


def failure_message(error: BaseException) -> str:
    """Kue showed the error's message; an error without one is named by its type."""
    if isinstance(error, AbandonedJobError):
        return ABANDONED_MESSAGE
    return str(error) or type(error).__name__


def publish_failed(
    job: Job, connection: redis.Redis, error_type: type, error: BaseException, traceback: object
) -> None:
    """RQ's failure callback, also run for an abandoned job: Kue's ``failed`` event.

    The message is kept on the job too, so a creator that missed this event reads it there.
    """
    message = failure_message(error)
    meta = job.meta if isinstance(job.meta, dict) else {}
    meta[ERROR_META_KEY] = message
    job.meta = meta
    record_outcome(connection, job, JobEvent(job.id, FAILED, error=message), meta)


def callback_name(function: object) -> str:
    return f"{function.__module__}.{function.__qualname__}"


COURSE_CALLBACKS = {callback_name(function): function for function in (publish_completed, publish_failed)}
