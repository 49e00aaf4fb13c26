"""The course's job format: JSON jobs, read so that nothing in a job's hash runs code.

RQ's default serializer, pickle, runs what a payload says, so every course queue is made with
``SERIALIZER`` (``course_queue``). RQ imports a job's callbacks by the names its hash holds and
posts its end to the URLs it lists; a ``CourseJob`` calls the course's two callbacks only and
posts nowhere. A hash RQ cannot read at all is ``UnreadableJobError``: to RQ, no job.
"""

from __future__ import annotations

from course.text import printable, text_of

import redis
from rq import Queue
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

SERIALIZER = JSONSerializer
KNOWN_STATUSES = frozenset(status.value for status in JobStatus)
ERROR_META_KEY = "error"  # where a failed job's meta records its error (course/events/__init__.py)
# The callbacks a course job may name (course/events/__init__.py), as RQ stores them: import paths.
COMPLETED_CALLBACK = "course.events.publish_completed"
FAILED_CALLBACK = "course.events.publish_failed"
COURSE_CALLBACK_NAMES = frozenset({COMPLETED_CALLBACK, FAILED_CALLBACK})
CALLBACK_FIELDS = ("success_callback_name", "failure_callback_name", "stopped_callback_name")


class UnreadableJobError(NoSuchJobError):
    """A job hash RQ cannot make a job of (its message says why): to RQ, no job at all."""


class CourseJob(Job):
    """RQ's Job, calling no callback but the course's own (names read through ``to_dict()``), no webhook."""

    @classmethod
    def fetch(cls, id: str, connection: redis.Redis | None = None, serializer=None) -> CourseJob:
        try:
            return super().fetch(id, connection=connection, serializer=serializer)
        except (ValueError, TypeError, KeyError, AttributeError, DeserializationError) as error:
            status = text_of(connection.hget(cls.key_for(id), "status") or "") if connection else ""
            if status and status not in KNOWN_STATUSES:
                raise UnreadableJobError(f"Job status {printable(status)}") from error
            raise UnreadableJobError(f"Job could not be read: {printable(str(error))}") from error

    def callback_names(self) -> list[str]:
        """The callbacks the job names, as stored in its hash."""
        fields = self.to_dict(include_meta=False)
        return [text_of(fields[name]) for name in CALLBACK_FIELDS if fields.get(name)]

    def allows(self, field: str) -> bool:
        return text_of(self.to_dict(include_meta=False).get(field) or "") in COURSE_CALLBACK_NAMES

    @property
    def success_callback(self):
        return super().success_callback if self.allows("success_callback_name") else None

    @property
    def failure_callback(self):
        return super().failure_callback if self.allows("failure_callback_name") else None

    @property
    def stopped_callback(self):
        return None

    def send_webhooks(self, *args, **kwargs) -> None:
        """No request goes wherever a job hash says: the course's jobs have no webhooks."""


def course_queue(name: str, connection: redis.Redis) -> Queue:
    """RQ's Queue as every course program makes it: JSON jobs, read as ``CourseJob``s."""
    return Queue(name, connection=connection, serializer=SERIALIZER, job_class=CourseJob)
