"""What the course's HTTP APIs share: JSON for every answer, and granian's settings.

``json_api(Flask(...))``: compact JSON as Express's ``res.json``, every error as JSON (Redis
away: 503), a JSON 400 for a foreign ``Host``. ``launch(__doc__)``: granian's settings, once
the settings are checked and the port is free; the start line; Redis reached or said away.
Why each of granian's settings: docs/internals.md.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from course.connection import CONNECTED, CannotStartError, client_from_env, not_connected_line
from course.hosts import DEFAULT_HOST, allowed_host_names, host_from_env, host_name, port_from_env
from course.keys import NOT_A_NUMBER, RESET_HINT, UnreadableStateError
from course.settings import parse_command_line, redis_url

import redis
from flask import Flask, Response, current_app, request
from flask.json.provider import DefaultJSONProvider
from granian.http import HTTP1Settings
from granian.log import LogLevels
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.exceptions import BadRequest, HTTPException, ServiceUnavailable

DEFAULT_PORT = 1245
JSON = "application/json"
COMPACT = (",", ":")

REDIS_TIMEOUT_SECONDS = 0.5  # Redis answers in well under a millisecond: gone or stuck, a 503

# Granian's settings for every course server, in one place (why each value: docs/internals.md).
THREADS_PER_WORKER = 2  # a second thread keeps the core busy while the first waits for Redis
CONNECTIONS_PER_WORKER = 16_384  # idle ones included: granian's default let 1,100 idle ones stop a server
LISTEN_BACKLOG = 4096  # connections no worker has accepted yet (Linux caps it at somaxconn)
HEADER_READ_TIMEOUT_MS = 5_000  # a request head still incomplete this long: the connection is closed
WORKER_STOP_SECONDS = 3  # a worker not stopped this long after it was asked is killed (granian PR #435)

SERVER_LIMITS: dict[str, Any] = {
    "workers": os.cpu_count() or 1,
    "blocking_threads": THREADS_PER_WORKER,
    "backlog": LISTEN_BACKLOG,
    "backpressure": CONNECTIONS_PER_WORKER,
    "http1_settings": HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
    "workers_kill_timeout": WORKER_STOP_SECONDS,
    # Errors only, on stderr (granian's default is stdout, the course's lines only).
    "log_level": LogLevels.error,
    "log_dictconfig": {
        "handlers": {
            name: {"formatter": formatter, "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
            for name, formatter in (("console", "generic"), ("access", "access"))
        }
    },
}

LAUNCH_RETRY_SECONDS = 2.0  # a server started while Redis is away tries again this often


class CourseJSONProvider(DefaultJSONProvider):
    """Express's ``res.json``: compact, keys in insertion order, no trailing newline."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("separators", COMPACT)
        return super().dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        return Response(self.dumps(args[0] if len(args) == 1 else args or kwargs or None), mimetype=JSON)


def compact_json(value: object) -> str:
    """``value`` as Express's ``res.json`` wrote it."""
    return json.dumps(value, separators=COMPACT)


def json_error(error: HTTPException) -> Response:
    """Any HTTP error as JSON, keeping its status and headers (``Allow`` on a 405)."""
    response = error.get_response()
    response.data = compact_json({"error": error.name})
    response.content_type = JSON
    return response


def unreadable_state(error: UnreadableStateError | redis.ResponseError) -> Response:
    """A JSON 500 naming the key that holds no number, or Redis's refusal, with ``make reset`` where
    it helps; one line in the log, no traceback."""
    refusal = str(error).partition(" script: ")[0]
    if isinstance(error, UnreadableStateError) or refusal.endswith(NOT_A_NUMBER):
        message = f"{refusal} ({RESET_HINT})"
    else:
        hint = f" ({RESET_HINT})" if refusal.startswith("WRONGTYPE") else ""
        message = f"Redis refused a command: {refusal}{hint}"
    current_app.logger.error("%s %s: %s", request.method, request.path, message)
    return Response(compact_json({"error": message}), status=500, mimetype=JSON)


def refuse_foreign_hosts(app: Flask) -> None:
    """Answer a JSON 400 to any request whose ``Host`` does not name the address ``HOST`` says."""
    allowed = allowed_host_names(os.environ.get("HOST") or DEFAULT_HOST)
    if allowed is None:
        return

    def check_host() -> Response | None:
        return None if host_name(request.host) in allowed else json_error(BadRequest())

    # First of all the hooks: no other code of the app runs for a foreign Host.
    app.before_request_funcs.setdefault(None, []).insert(0, check_host)


def action_route(app: Flask, rule: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """``@app.get(rule)`` for a route that changes state: a HEAD (``curl -I``) gets a JSON 405."""

    def register(view: Callable[..., Response]) -> Callable[..., Response]:
        app.get(rule)(view)
        for url_rule in app.url_map.iter_rules(view.__name__):
            url_rule.methods.discard("HEAD")
        return view

    return register


def json_api(app: Flask) -> Flask:
    """``app``, answering JSON to everything, like the course's Express apps (see the module doc)."""
    app.json = CourseJSONProvider(app)
    # Errors reach the JSON handlers under ``flask run --debug`` too; OPTIONS is a JSON 405 (Flask's
    # answer has an empty body); a doubled slash a JSON 404, not a redirect.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.url_map.merge_slashes = False
    app.register_error_handler(HTTPException, json_error)
    for unavailable in (redis.ConnectionError, redis.TimeoutError):
        app.register_error_handler(unavailable, lambda error: json_error(ServiceUnavailable()))
    app.register_error_handler(UnreadableStateError, unreadable_state)
    app.register_error_handler(redis.ResponseError, unreadable_state)
    refuse_foreign_hosts(app)
    return app


def redis_client(**options: Any) -> redis.Redis:
    """A client for ``REDIS_URL`` that fails fast, with no retries: a reservation that failed on the
    wire is a 503, never run twice."""
    options.setdefault("socket_connect_timeout", REDIS_TIMEOUT_SECONDS)
    options.setdefault("socket_timeout", REDIS_TIMEOUT_SECONDS)
    options.setdefault("retry", Retry(NoBackoff(), 0))
    return client_from_env(**options)


def write_line(line: str, stream: Any = None) -> None:
    """A whole line in one system call, taking no lock of Python's that a worker forked meanwhile
    would inherit held (and hang at its first print)."""
    os.write((stream or sys.stdout).fileno(), f"{line}\n".encode())


def connect_at_launch(first_contact: Callable[[], object]) -> None:
    """Reach Redis with ``first_contact``, silent if it answers; while Redis is away a thread tries
    again, a not-connected line each time, until the connected line (the routes answer 503)."""
    if try_contact(first_contact):
        return
    threading.Thread(target=keep_trying, args=(first_contact,), name="Redis at launch", daemon=True).start()


def try_contact(contact: Callable[[], object]) -> bool:
    """One try: True once it is done with (Redis answered, or refused for good: said on stderr)."""
    try:
        contact()
    except (redis.ConnectionError, redis.TimeoutError) as error:
        write_line(not_connected_line(error))
        return False
    except redis.RedisError as error:
        write_line(f"Redis error: {error}", sys.stderr)
    return True


def keep_trying(contact: Callable[[], object]) -> None:
    time.sleep(LAUNCH_RETRY_SECONDS)
    while not try_contact(contact):
        time.sleep(LAUNCH_RETRY_SECONDS)
    write_line(CONNECTED)


class CannotListenError(CannotStartError):
    """The server's address is taken, or not this machine's."""


def check_port_free(host: str, port: int) -> None:
    """Raise ``CannotListenError`` if the port is taken or not this machine's: one line, where
    granian 2.8 would fail with a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family):
            pass
    except OSError as error:
        hint = " (is another server running?)" if error.errno == errno.EADDRINUSE else ""
        raise CannotListenError(f"Cannot listen on {host}:{port}: {os.strerror(error.errno)}{hint}") from None


def raise_open_file_limit() -> None:
    """As many open files as the system allows: each connection is one (the usual soft limit: 1,024)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker_apart_from_the_terminal() -> None:
    """In each worker as granian (2.8.9) forks it, the workaround of two defects (docs/internals.md):
    out of the terminal's process group, one signal per stop; SIGTERM ends it until its handlers."""
    os.setpgrp()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def server_settings(doc: str | None, port_variable: str = "PORT", default_port: int = DEFAULT_PORT) -> dict:
    """Granian's keyword arguments (``address``, ``port``, ``SERVER_LIMITS``), once the command line,
    ``HOST``, the port, ``REDIS_URL`` and a free port are checked; then the start line."""
    parse_command_line(doc)
    redis_url()
    host, port = host_from_env(), port_from_env(port_variable, default_port)
    check_port_free(host, port)
    raise_open_file_limit()
    os.register_at_fork(
        before=partial(signal.pthread_sigmask, signal.SIG_BLOCK, {signal.SIGTERM}),
        after_in_parent=partial(signal.pthread_sigmask, signal.SIG_UNBLOCK, {signal.SIGTERM}),
        after_in_child=worker_apart_from_the_terminal,
    )
    # FLASK_DEBUG=1 is for the development server (``flask run --debug``), never for this one.
    os.environ.pop("FLASK_DEBUG", None)
    shown_host = f"[{host}]" if ":" in host else host
    write_line(f"Serving on http://{shown_host}:{port}", sys.stderr)
    return {"address": host, "port": port, **SERVER_LIMITS}


def launch(doc: str | None, first_contact: Callable[[], object] | None = None) -> dict:
    """``server_settings`` for an API on ``PORT``, then Redis reached with ``first_contact`` (a PING)."""
    settings = server_settings(doc)
    connect_at_launch(first_contact or redis_client().ping)
    return settings
