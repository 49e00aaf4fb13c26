"""One way into Redis for every script: the URL from ``REDIS_URL``, the course's lines.

node_redis announced itself with ``connect`` and ``error`` events; redis-py connects at the
first command, so ``announce_connection(client)`` sends one, PING, and prints the course's
connected line, or the failed-connection line for each failed try but the last, then raises
``NotConnectedError``. The entry point,
``run()``, turns that into the last line and status 1 (never a traceback: an unreachable
server is an expected situation for a learner, not a bug), as it does for the program's
other expected ends: a malformed setting (``SettingError``, status 2) and a server that
cannot start (``CannotStartError``, status 1).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator

from course.keys import RESET_HINT, UnreadableStateError
from course.settings import USAGE_ERROR, SettingError, redis_url

import redis
import redis.asyncio

CONNECTED = "Redis client connected to the server"
NOT_CONNECTED = "Redis client not connected to the server: "

# 128 + SIGPIPE: what a shell reports for a program whose reader went away.
BROKEN_PIPE = 141

CONNECT_ATTEMPTS = 3
RETRY_DELAY_SECONDS = 0.5
# Bytes that are not UTF-8, in a value someone else wrote, read as U+FFFD rather than raise.
TEXT_ERRORS = "replace"
# Short enough that three tries against an unroutable host still end well within 10 s.
SOCKET_CONNECT_TIMEOUT_SECONDS = 2.0


class NotConnectedError(redis.ConnectionError):
    """Redis did not answer any of ``connect()``'s tries; the message is the last try's error."""


class CannotStartError(Exception):
    """A program that cannot start (a server whose port is taken, say); the message says why, in one line."""


def client_from_env(*, decode_responses: bool = True, **options) -> redis.Redis:
    """A client for ``REDIS_URL`` that has not talked to the server yet.

    RQ needs ``decode_responses=False``; the lessons read strings, decoded whatever the bytes.
    """
    options.setdefault("socket_connect_timeout", SOCKET_CONNECT_TIMEOUT_SECONDS)
    return redis.Redis.from_url(
        redis_url(), decode_responses=decode_responses, encoding_errors=TEXT_ERRORS, **options
    )


def not_connected_line(error: BaseException) -> str:
    return f"{NOT_CONNECTED}{error}"


class ConnectionTry:
    """One of the course's tries at reaching Redis: the ``with`` block that pings the server.

    A block that ends prints the connected line. A Redis error ends the try: the
    failed-connection line, and the caller tries again; after the last try
    ``NotConnectedError`` instead (``run()`` prints its line). A client whose tries all failed
    holds no open connection (redis-py closes a socket that failed), so nothing needs closing.
    """

    def __init__(self, last: bool) -> None:
        self.last = last

    def __enter__(self) -> ConnectionTry:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None:
            print(CONNECTED, flush=True)
            return False
        if not isinstance(error, redis.RedisError):
            return False
        if self.last:
            raise NotConnectedError(str(error)) from error
        print(not_connected_line(error), flush=True)
        return True


def connection_tries() -> Iterator[ConnectionTry]:
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        yield ConnectionTry(last=attempt == CONNECT_ATTEMPTS)


def announce_connection(client: redis.Redis) -> None:
    """PING as node_redis connected: the connected line once Redis answers, a failure line per failed try.

    Raises ``NotConnectedError`` once every try failed (``run()`` prints its line).
    """
    for connection_try in connection_tries():
        with connection_try:
            client.ping()
            return
        time.sleep(RETRY_DELAY_SECONDS)


async def announce_connection_async(client: redis.asyncio.Redis) -> None:
    """``announce_connection`` for ``redis.asyncio``: same lines, same ``NotConnectedError``."""
    for connection_try in connection_tries():
        with connection_try:
            await client.ping()
            return
        await asyncio.sleep(RETRY_DELAY_SECONDS)


def run(main: Callable[[], object]) -> None:
    """Run a lesson's ``main()`` the way a learner expects it to end.

    A malformed setting (``REDIS_URL``, ``HOST``, ``PORT``) is one line on stderr and status 2,
    before anything started. A server that cannot start is one line on stderr and status 1.
    A server never reached (``connect()``), lost or timing out mid-lesson gets the course's
    failed-connection line and status 1; a key of the course's state holding what it cannot
    read (``UnreadableStateError``) one line naming it and what restores it, status 1; any
    other Redis error its message on stderr and
    status 1; Ctrl-C ends quietly with status 130, as a shell expects, and so does a reader of
    the output that went away (``| head``), with status 141 (a shell's SIGPIPE). None shows a
    traceback.
    """
    try:
        main()
    except SettingError as error:
        print(error, file=sys.stderr, flush=True)
        sys.exit(USAGE_ERROR)
    except CannotStartError as error:
        print(error, file=sys.stderr, flush=True)
        sys.exit(1)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        print(not_connected_line(error), flush=True)
        sys.exit(1)
    except UnreadableStateError as error:
        print(f"{error} ({RESET_HINT})", file=sys.stderr, flush=True)
        sys.exit(1)
    except redis.RedisError as error:
        print(f"Redis error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # Python's own flush of stdout at exit would fail the same way: point it at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(BROKEN_PIPE)
