"""The creator's side of Kue's job events: subscribe, enqueue, then hear about those jobs.

A ``JobWatch`` subscribes to its queue's events before the jobs exist, reserves their
Kue-style ids (``course.ids``), hands each event of its own jobs to a handler in the order
the processor sent them, and reads RQ's state of a few pending jobs every second
(``course.outcomes``), so that a lost event never leaves it waiting. A message is an event
only once ``parse_event`` says so: anyone may publish on a channel.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from course.events import (
    COMPLETE,
    FAILED,
    OUTCOME_FIELD,
    PROGRESS,
    JobEvent,
    events_channel,
    publish_completed,
    publish_failed,
)
from course.ids import next_job_ids
from course.outcomes import OutcomePoll
from course.text import printable, text_of

import redis
from rq import Callback, Queue
from rq.job import Job

POLL_INTERVAL_SECONDS = 1.0
POLL_BATCH = 16  # statuses read per poll, in turn: a lost event is noticed within pending / 16 s
SUBSCRIBE_TIMEOUT_SECONDS = 10.0
RECONNECT_SECONDS = 10.0  # a restarted Redis is away a second or two: a creator rides out this long
RECONNECT_RETRY_SECONDS = 0.5

log = logging.getLogger(__name__)
# Nothing of the course's own log lines reaches the terminal unless asked for (--verbose).
logging.getLogger("course").addHandler(logging.NullHandler())


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


def ignore(reason: str, what: object) -> None:
    """A message the watch does not act on: one line on stderr with --verbose, nothing otherwise."""
    log.info("Ignored %s: %s", reason, printable(repr(what))[:200])


class JobWatch:
    """The creator's end of Kue's job events, subscribed once made: ``new_job_ids`` watches jobs before
    they exist, ``on_event`` gets each of their events in order, the last one ``complete`` or
    ``failed`` (believed only for a job whose hash records it); anything else is ignored."""

    def __init__(self, queue: Queue, on_event: Callable[[JobEvent], None]) -> None:
        self.queue = queue
        self.connection = queue.connection
        self.on_event = on_event
        self.outcomes = OutcomePoll(self.connection, POLL_BATCH)
        self.next_poll = time.monotonic() + POLL_INTERVAL_SECONDS
        self.pubsub = self.connection.pubsub()
        self.subscribe()

    def subscribe(self) -> None:
        """Subscribe and wait for the server's confirmation: only then may jobs be enqueued."""
        self.pubsub.subscribe(events_channel(self.queue.name))
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=deadline - time.monotonic())
            if message is not None and message["type"] == "subscribe":
                return
        raise redis.ConnectionError(f"no confirmation of SUBSCRIBE within {SUBSCRIBE_TIMEOUT_SECONDS:.0f} s")

    @property
    def pending(self) -> dict[str, None]:
        """The jobs watched, not ended yet, in id order."""
        return self.outcomes.pending

    def new_job_ids(self, count: int = 1, polled: bool = True) -> list[str]:
        """Kue-style ids for jobs about to be enqueued, watched from now on (``polled``: jobs exist)."""
        job_ids = next_job_ids(self.connection, count)
        self.outcomes.add(job_ids, polled)
        return job_ids

    def enqueue_many(self, function_name: str, datas: Sequence[dict], **options: Any) -> list[str]:
        """One RQ job per data dict (its only argument), with the event callbacks and RQ's ``options``,
        enqueued in one round trip and watched; their ids."""
        job_ids = self.new_job_ids(len(datas), polled=False)
        jobs = [
            Queue.prepare_data(
                function_name,
                args=(data,),
                job_id=job_id,
                on_success=Callback(publish_completed),
                on_failure=Callback(publish_failed),
                **options,
            )
            for data, job_id in zip(datas, job_ids, strict=True)
        ]
        try:
            self.queue.enqueue_many(jobs)
        except BaseException:
            for job_id in job_ids:
                self.outcomes.end(job_id)
            raise
        self.outcomes.start_polling(job_ids)
        return job_ids

    def is_pending(self) -> bool:
        return bool(self.pending)

    def listen(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for events, hand on those that arrived; poll RQ's state when due."""
        deadline = time.monotonic() + timeout
        while True:
            wait = max(0.0, min(deadline, self.next_poll) - time.monotonic())
            message = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            if message is not None:
                self.handle_message(message)
            if time.monotonic() >= self.next_poll:
                self.check_rq_state()
                self.next_poll = time.monotonic() + POLL_INTERVAL_SECONDS
            if message is not None or time.monotonic() >= deadline:
                return

    def wait(self, timeout: float | None = None) -> bool:
        """Listen until every watched job has ended, False if ``timeout`` ran out first; a Redis away
        up to ``RECONNECT_SECONDS`` is waited for (redis-py subscribes again, the polls catch up)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        lost_since = None
        while self.is_pending():
            left = POLL_INTERVAL_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self.listen(min(left, POLL_INTERVAL_SECONDS))
                lost_since = None
            except (redis.ConnectionError, redis.TimeoutError):
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > RECONNECT_SECONDS:
                    raise
                time.sleep(RECONNECT_RETRY_SECONDS)
        return True

    def handle_message(self, message: dict) -> None:
        event = parse_event(message["data"]) if message.get("type") == "message" else None
        if event is None:
            ignore("a message that is not a job event", message.get("data"))
        elif event.job_id not in self.pending:
            ignore("an event of a job this program did not create", message["data"])
        elif event.ended and self.recorded_outcome(event.job_id) != event.kind:
            ignore("an event its job's state does not bear out", message["data"])
        else:
            self.handle(event)

    def recorded_outcome(self, job_id: str) -> str:
        """The outcome the job's hash records (its processor writes it before it publishes it)."""
        return text_of(self.connection.hget(Job.key_for(job_id), OUTCOME_FIELD) or "")

    def handle(self, event: JobEvent) -> None:
        if event.ended and not self.outcomes.end(event.job_id):
            return
        self.on_event(event)

    def check_rq_state(self) -> None:
        """Report the jobs whose end RQ's state shows and no event told (a lost event)."""
        for job_id, error in self.outcomes.poll():
            self.on_event(JobEvent(job_id, FAILED, error=error) if error else JobEvent(job_id, COMPLETE))

    def close(self) -> None:
        self.pubsub.close()

    def __enter__(self) -> JobWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
