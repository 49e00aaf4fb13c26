"""The processors' Redis client: it rides out a restart or a full Redis, and says so once.

redis-py's client with a ``Retry`` (about 11.5 s of tries) that prints the course's lines when
Redis first fails a command and when it answers again: once for the whole processor.
"""

from __future__ import annotations

import multiprocessing
import socket
import time

from course.connection import CONNECTED, client_from_env, not_connected_line, say

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ExecAbortError
from redis.retry import Retry

# A command is tried again after 0.1, 0.2, 0.4, 0.8 s, then every second: about 11.5 s.
RETRY_BASE_SECONDS = 0.05
RETRY_CAP_SECONDS = 1.0
RETRIES = 14
RETRY_SECONDS = 11.5
REFUSAL_REPEAT_SECONDS = 60.0
WRITES_REFUSED = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)
RETRIED_ERRORS = (redis.ConnectionError, redis.TimeoutError, socket.timeout, *WRITES_REFUSED, ExecAbortError)
REFUSED_TRANSACTION = "Transaction discarded because of: "
REFUSAL_CODES = ("OOM", "READONLY")  # a transaction discarded at EXEC for these is retried too
RQ_SCHEDULER_PROCESS = "Scheduler"  # RQ's name for its scheduler's process


class RedisPresence:
    """Whether the processor last found Redis there, shared by its processes: a line when that changes
    (refused writes: once a minute at most). Back: a failed command went through, or any did after an
    outage longer than a command retries (a closing server may answer one); loading is not lost."""

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
                    say(f"Redis refuses writes: {refused}")
            elif refused is None and self.state.value == self.HERE and type(error) is not BusyLoadingError:
                self.state.value = self.AWAY
                self.since.value = time.monotonic()
                say(not_connected_line(error))

    def back(self, failed_first: bool) -> None:
        # Read the wrapped value, without the lock (``.value`` takes it): this runs after every
        # command, and a worker stopped while holding the lock would wait for ever on RQ's
        # scheduler, itself waiting for the lock.
        if self.state.get_obj().value == self.HERE:
            return
        with self.state.get_lock():
            long_away = time.monotonic() - self.since.value > RETRY_SECONDS
            if self.state.value == self.AWAY and (failed_first or long_away):
                self.state.value = self.HERE
                say(CONNECTED)


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
    """A Redis client for RQ (bytes) that retries for about 11.5 s and prints the course's lines."""
    backoff = ExponentialBackoff(cap=RETRY_CAP_SECONDS, base=RETRY_BASE_SECONDS)
    retry = ReportingRetry(backoff, RETRIES, supported_errors=RETRIED_ERRORS)
    return client_from_env(decode_responses=False, retry=retry)
