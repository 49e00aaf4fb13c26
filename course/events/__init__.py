"""Kue's job events on ordinary RQ jobs: the event, and the processor's side of it.

RQ publishes no job events; Kue told a job's creator about its progress, completion and
failure over pub/sub. Here a ``JobEvent`` is JSON on the job's queue channel
(``events_channel``), published by the processor: ``report_progress`` inside a job,
``publish_completed`` and ``publish_failed`` as RQ's ``on_success``/``on_failure``
callbacks. Each writes what it announces on the job's hash and publishes it in one round
trip. The creator's side, which subscribes and waits, is ``course.events.watch``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from course.jobs import ERROR_META_KEY, SERIALIZER
from course.text import printable

import redis
from rq.exceptions import AbandonedJobError
from rq.job import Job, get_current_job

EVENTS_CHANNEL_PREFIX = "course:job-events:"

# Kue's event names.
PROGRESS = "progress"
COMPLETE = "complete"
FAILED = "failed"

PROGRESS_META_KEY = "progress"
# A field of the job's hash, set to COMPLETE or FAILED by whoever publishes that outcome.
OUTCOME_FIELD = "course_outcome"
# RQ names an abandoned job's error AbandonedJobError and gives it no message.
ABANDONED_MESSAGE = "Job abandoned: its processor stopped while running it"


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

    def line(self, subject: str) -> str:
        """The course's line, e.g. ``Notification job 7 50% complete`` for subject ``Notification job``."""
        job_id = printable(self.job_id)
        if self.kind == PROGRESS:
            return f"{subject} {job_id} {self.percent}% complete"
        if self.kind == COMPLETE:
            return f"{subject} {job_id} completed"
        return f"{subject} {job_id} failed: {printable(self.error or '')}"

    def to_json(self) -> str:
        fields = {"id": self.job_id, "event": self.kind, "percent": self.percent, "error": self.error}
        return json.dumps({key: value for key, value in fields.items() if value is not None})


def events_channel(queue_name: str) -> str:
    return f"{EVENTS_CHANNEL_PREFIX}{queue_name}"


def publish_event(connection: redis.Redis, queue_name: str, event: JobEvent) -> None:
    """Publish ``event`` on its queue's channel; ``connection`` may be a pipeline."""
    connection.publish(events_channel(queue_name), event.to_json())


def write_and_publish(connection: redis.Redis, job: Job, fields: dict[str, Any], event: JobEvent) -> None:
    """Write ``fields`` on the job's hash, then publish ``event``, in one transaction (one round trip):
    a creator that hears the event finds the fields written, and a write Redis refused (full)
    takes the publish with it, so a retry publishes the event once."""
    with connection.pipeline(transaction=True) as pipeline:
        pipeline.hset(job.key, mapping=fields)
        publish_event(pipeline, job.origin, event)
        pipeline.execute()


def course_meta(job: Job) -> dict:
    """The job's meta, or a fresh one for meta the course did not write (RQ keeps non-JSON as bytes)."""
    meta = job.meta
    if not isinstance(meta, dict) or isinstance(meta.get("unserialized"), bytes):
        meta = job.meta = {}
    return meta


def report_progress(percent: int, job: Job | None = None) -> None:
    """Kue's ``job.progress()``: RQ's job meta (as ``save_meta`` writes it) and a ``progress`` event."""
    job = job or get_current_job()
    course_meta(job)[PROGRESS_META_KEY] = percent
    event = JobEvent(job.id, PROGRESS, percent=percent)
    write_and_publish(job.connection, job, {"meta": job.serializer.dumps(job.meta)}, event)


def publish_completed(job: Job, connection: redis.Redis, result: object) -> None:
    """RQ's success callback: Kue's ``complete`` event."""
    write_and_publish(connection, job, {OUTCOME_FIELD: COMPLETE}, JobEvent(job.id, COMPLETE))


def failure_message(error: BaseException) -> str:
    """Kue showed the error's message; an error without one is named by its type."""
    if isinstance(error, AbandonedJobError):
        return ABANDONED_MESSAGE
    return str(error) or type(error).__name__


def publish_failed(job: Job, connection: redis.Redis, kind: type, error: BaseException, traceback: object):
    """RQ's failure callback (an abandoned job's too): Kue's ``failed`` event once no ``Retry`` is left."""
    if not job.retries_left:
        publish_failure(connection, job, failure_message(error))


def publish_failure(connection: redis.Redis, job: Job, message: str) -> None:
    """Record the failure and its message on the job (for a creator that missed the event); publish it."""
    meta = course_meta(job)
    meta[ERROR_META_KEY] = message
    fields = {OUTCOME_FIELD: FAILED, "meta": SERIALIZER.dumps(meta)}
    write_and_publish(connection, job, fields, JobEvent(job.id, FAILED, error=message))
