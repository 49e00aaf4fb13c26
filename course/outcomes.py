"""How jobs ended, as RQ's state says: the status, and the error a processor recorded in the meta.

Kue told a creator at once (``course.events``); RQ's job hash tells it a moment later. A web
server learns its jobs' ends this way only (``course.web_jobs``); a creator that hears events,
when one went missing (``course.events.watch``).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable

from course.jobs import ERROR_META_KEY, KNOWN_STATUSES
from course.text import text_of

import redis
from rq.job import Job, JobStatus

ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)
RUNNABLE_STATUSES = KNOWN_STATUSES - {status.value for status in ENDED}  # any other: ended, or gone


def failure(status: str | None, raw_meta: bytes | None) -> str | None:
    """What an ended job's state says went wrong (the meta is anyone's input), or None: it completed."""
    if status == JobStatus.FINISHED.value:
        return None
    if status is None:
        return "Job was deleted"
    if status not in KNOWN_STATUSES:
        return f"Job status {status}"
    try:
        meta = json.loads(text_of(raw_meta or b"{}"))
    except (ValueError, RecursionError):
        meta = None
    error = meta.get(ERROR_META_KEY) if isinstance(meta, dict) else None
    return error if isinstance(error, str) and error else f"Job {status}"


class OutcomePoll:
    """Jobs watched until RQ's state says they ended, ``batch`` read per ``poll()`` in turn; one found
    ended is reported at the next poll (a processor may record a failure's error just after)."""

    def __init__(self, connection: redis.Redis, batch: int) -> None:
        self.connection = connection
        self.batch = batch
        self.lock = threading.Lock()
        self.pending: dict[str, None] = {}  # in id order
        self.turns: deque[str] = deque()  # in the order polls read them
        self.ended_before: set[str] = set()

    def add(self, job_ids: list[str], polled: bool = True) -> None:
        """Watch ``job_ids``, read by polls only once ``polled`` (or ``start_polling``): once they exist."""
        with self.lock:
            self.pending.update(dict.fromkeys(job_ids))
            if polled:
                self.turns.extend(job_ids)

    def start_polling(self, job_ids: Iterable[str]) -> None:
        with self.lock:
            self.turns.extend(job_ids)

    def end(self, job_id: str) -> bool:
        """Stop watching ``job_id``; False if it was not watched (any more)."""
        with self.lock:
            self.ended_before.discard(job_id)
            if job_id not in self.pending:
                return False
            del self.pending[job_id]
            return True

    def poll(self) -> list[tuple[str, str | None]]:
        """The jobs found ended, no longer watched, each with its ``failure``."""
        with self.lock:
            batch = self.next_batch()
        with self.connection.pipeline(transaction=False) as pipeline:
            for job_id in batch:
                pipeline.hmget(Job.key_for(job_id), "status", "meta")
            states = pipeline.execute()
        ended = []
        with self.lock:
            for job_id, (raw_status, raw_meta) in zip(batch, states, strict=True):
                status = text_of(raw_status) if raw_status else None
                if job_id not in self.pending or status in RUNNABLE_STATUSES:
                    self.ended_before.discard(job_id)
                elif job_id not in self.ended_before:
                    self.ended_before.add(job_id)
                else:
                    self.ended_before.discard(job_id)
                    del self.pending[job_id]
                    ended.append((job_id, failure(status, raw_meta)))
        return ended

    def next_batch(self) -> list[str]:
        """Those found ended at their last read, then the next pending jobs in turn, ``batch`` at most
        (ids that ended drop out of the turns here)."""
        batch = [job_id for job_id in self.ended_before if job_id in self.pending][: self.batch]
        for _ in range(len(self.turns)):
            if len(batch) == self.batch:
                break
            job_id = self.turns.popleft()
            if job_id in self.pending:
                self.turns.append(job_id)
                if job_id not in self.ended_before:
                    batch.append(job_id)
        return batch
