"""One way into Redis for every script: the URL from ``REDIS_URL``, the course's lines.

redis-py connects at the first command, where node_redis announced itself with events:
``announce_connection`` sends PING and prints the course's connected line, or a failed line
per failed try. ``run()`` makes each expected end one line and an exit status, no traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable

from course.keys import RESET_HINT, UnreadableStateError
from course.settings import USAGE_ERROR, SettingError, redis_url

import redis
import redis.asyncio

CONNECTED = "Redis client connected to the server"
NOT_CONNECTED = "Redis client not connected to the server: "

BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a program whose reader went away

CONNECT_ATTEMPTS = 3
RETRY_DELAY_SECONDS = 0.5
TEXT_ERRORS = "replace"  # bytes that are not UTF-8 read as U+FFFD rather than raise
SOCKET_CONNECT_TIMEOUT_SECONDS = 2.0  # three tries at an unroutable host end well within 10 s


class NotConnectedError(redis.ConnectionError):
    """Redis did not answer any of ``announce_connection()``'s tries; the message is the last try's error."""


class CannotStartError(Exception):
    """A program that cannot start (a server whose port is taken, say); the message says why, in one line."""


def client_from_env(*, decode_responses: bool = True, **options) -> redis.Redis:
    """A client for ``REDIS_URL``, not connected yet (RQ needs ``decode_responses=False``)."""
    options.setdefault("socket_connect_timeout", SOCKET_CONNECT_TIMEOUT_SECONDS)
    return redis.Redis.from_url(
        redis_url(), decode_responses=decode_responses, encoding_errors=TEXT_ERRORS, **options
    )


def not_connected_line(error: BaseException) -> str:
    return f"{NOT_CONNECTED}{error}"


def say(line: str, stream=None) -> None:
    """One line, one write: unbuffered, ``print`` writes the newline apart; another process's got between."""
    stream = stream or sys.stdout
    stream.write(f"{line}\n")
    stream.flush()


def failed_try(error: redis.RedisError, last: bool) -> None:
    """The failed-connection line for a try that failed, or ``NotConnectedError`` for the last one."""
    if last:
        raise NotConnectedError(str(error)) from error
    print(not_connected_line(error), flush=True)


def announce_connection(client: redis.Redis) -> None:
    """PING as node_redis connected: the connected line once Redis answers, a failure line per failed try."""
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            client.ping()
        except redis.RedisError as error:
            failed_try(error, last=attempt == CONNECT_ATTEMPTS)
            time.sleep(RETRY_DELAY_SECONDS)
            continue
        print(CONNECTED, flush=True)
        return


async def announce_connection_async(client: redis.asyncio.Redis) -> None:
    """``announce_connection`` for ``redis.asyncio``: same lines, same ``NotConnectedError``."""
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            await client.ping()
        except redis.RedisError as error:
            failed_try(error, last=attempt == CONNECT_ATTEMPTS)
            await asyncio.sleep(RETRY_DELAY_SECONDS)
            continue
        print(CONNECTED, flush=True)
        return


def run(main: Callable[[], object]) -> None:
    """Run a lesson's ``main()``: each expected end is one line and the SPEC's status, never a traceback.

    A bad setting: status 2. Redis away or lost: the failed-connection line, 1. State that
    holds what it cannot read, another Redis error, a server that cannot start: 1. Ctrl-C:
    130, quietly; a reader of the output gone (``| head``): 141, a shell's SIGPIPE.
    """
    try:
        main()
    except SettingError as error:
        say(str(error), sys.stderr)
        sys.exit(USAGE_ERROR)
    except CannotStartError as error:
        say(str(error), sys.stderr)
        sys.exit(1)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        say(not_connected_line(error))
        sys.exit(1)
    except UnreadableStateError as error:
        say(f"{error} ({RESET_HINT})", sys.stderr)
        sys.exit(1)
    except redis.RedisError as error:
        say(f"Redis error: {error}", sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # Python's own flush of stdout at exit would fail the same way: point it at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(BROKEN_PIPE)
