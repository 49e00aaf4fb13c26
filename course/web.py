"""What the course's HTTP APIs share: JSON for every answer, and how granian serves them.

An API lesson is a plain Flask app with one line more::

    app = json_api(Flask(__name__, static_folder=None))  # JSON errors, the Host check (below)
    @action_route(app, "/reserve/<id>")         # a GET route that changes state: HEAD refused
    redis_client()                              # a client for REDIS_URL that fails fast
    Granian("9_stock:app", interface=Interfaces.WSGI, **launch(__doc__)).serve()

``json_api`` makes Flask answer as Express's ``res.json`` did (compact JSON, keys in the
order written, no trailing newline) and turns every error into JSON:
- any HTTP error (404, 405, ...): its status, ``{"error":"Not Found"}`` (the reason phrase);
- ``redis.ConnectionError`` or ``redis.TimeoutError``: 503, ``{"error":"Service Unavailable"}``;
- a key of the API's state that holds no number (``SET item.1 abc``: ``UnreadableStateError``,
  or a Lua script's refusal saying the same), or any other refusal by Redis: 500, the key or
  Redis's refusal named, ``make reset`` where it helps, one line in the log, no traceback;
- any other exception: 500, ``{"error":"Internal Server Error"}``, the traceback logged.
It also refuses, with a JSON 400, a request whose ``Host`` is not a name of the address the
server listens on (a web page can make its own name resolve to 127.0.0.1, DNS rebinding, and
call the API as its own site): on loopback, ``127.0.0.1``, ``localhost`` or ``[::1]``; on another
address, that address only; on every interface (``HOST=0.0.0.0``), any name.

``launch`` readies a server: ``--help``; ``HOST``, ``PORT`` and ``REDIS_URL`` checked (a bad one is
one line, status 2); the port free (else one line, status 1); the open-file limit raised; the
start line on stderr (``Serving on http://127.0.0.1:1245``, as ``flask run`` says it: stdout
keeps the course's lines); Redis reached, or the course's not-connected line and a retry in
the background. It returns granian's keyword arguments: the address, the port, ``SERVER_LIMITS``.
Granian then runs a worker process per core and handles Ctrl-C and SIGTERM itself.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from course.connection import CONNECTED, CannotStartError, client_from_env, not_connected_line
from course.keys import NOT_A_NUMBER, RESET_HINT, UnreadableStateError
from course.settings import DEFAULT_HOST, host_from_env, parse_command_line, port_from_env, redis_url

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

# Redis on loopback or a LAN answers in well under a millisecond; half a second means it is
# gone or stuck, and the client gets its 503 in about a second instead of waiting.
REDIS_TIMEOUT_SECONDS = 0.5

# Python threads per worker process. A request spends most of its time in Python, holding
# the GIL; a second thread keeps the core busy while the first waits for Redis. Granian's
# default (half its backpressure) only adds switching: p99 latency was 2-3 times worse.
THREADS_PER_WORKER = 2
# Connections one worker holds open at once, idle ones included. Once a worker holds this
# many it accepts no more, and new clients wait in the listen queue: granian's default
# (backlog / workers, 512 here) let 1,100 idle connections stop every server. An idle
# connection costs granian a few kilobytes and no Python thread, so the bound is high.
CONNECTIONS_PER_WORKER = 16_384
# The kernel's queue of connections no worker has accepted yet (Linux caps it at somaxconn).
LISTEN_BACKLOG = 4096
# A connection that has not sent a whole request head this long after it opened, or after
# its last answer (a keep-alive connection left idle), is closed: an idle or half-sent
# connection holds nothing for long. Node's http server closes an idle keep-alive after 5 s.
HEADER_READ_TIMEOUT_MS = 5_000
# The longest request head granian reads (the request line and headers). hyper, under granian,
# answers a bare 414 to a request line over 64 KiB whatever this says (course/web.py's test).
MAX_HEAD_BYTES = 8192 + 4096 * 100

# How long a worker may take to stop: it finishes the requests in hand, which take milliseconds.
WORKER_STOP_SECONDS = 3

# Granian's settings for every course server, in one place (the APIs and the dashboard).
SERVER_LIMITS: dict[str, Any] = {
    "workers": os.cpu_count() or 1,
    "blocking_threads": THREADS_PER_WORKER,
    "backlog": LISTEN_BACKLOG,
    "backpressure": CONNECTIONS_PER_WORKER,
    "http1_settings": HTTP1Settings(
        header_read_timeout=HEADER_READ_TIMEOUT_MS, keep_alive=True, max_buffer_size=MAX_HEAD_BYTES
    ),
    # The course's servers print nothing of their own; warnings and errors still show.
    "log_level": LogLevels.warning,
    # A worker that has not stopped this long after the main process asked is killed (granian
    # PR #435: without it the main process waits for such a worker for ever).
    "workers_kill_timeout": WORKER_STOP_SECONDS,
    # Granian logs on stdout by default; stdout is the course's lines only.
    "log_dictconfig": {
        "handlers": {
            name: {"formatter": name, "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
            for name in ("generic", "access")
        },
        "loggers": {
            "_granian": {"handlers": ["generic"], "propagate": False},
            "granian.access": {"handlers": ["access"], "propagate": False},
        },
    },
}

# The names a client on this machine uses for loopback, as a Host header carries them.
LOOPBACK_HOST_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
# Addresses that mean "every interface".
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]"})

# A server started while Redis is away tries again after 1 s, then 2, then every 4 s, printing
# the course's not-connected line each time, as the course's processors do.
LAUNCH_RETRY_FIRST_SECONDS = 1.0
LAUNCH_RETRY_MAX_SECONDS = 4.0


# JSON for everything ------------------------------------------------------------------------


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


def redis_unavailable(error: redis.RedisError) -> Response:
    return json_error(ServiceUnavailable())


def refusal_message(error: UnreadableStateError | redis.ResponseError) -> str:
    """What a 500 says: the key that holds no number, or what Redis refused (without a script's hash).

    ``make reset`` is named where it helps: a key that holds no number (a Lua script of the
    lesson says so with ``redis.error_reply``), or one of another type; not a Redis out of memory.
    """
    refusal = str(error).partition(" script: ")[0]
    if isinstance(error, UnreadableStateError) or refusal.endswith(NOT_A_NUMBER):
        return f"{refusal} ({RESET_HINT})"
    hint = f" ({RESET_HINT})" if refusal.startswith("WRONGTYPE") else ""
    return f"Redis refused a command: {refusal}{hint}"


def unreadable_state(error: UnreadableStateError | redis.ResponseError) -> Response:
    """A JSON 500 saying what Redis refused or holds, and one line in the log, no traceback."""
    message = refusal_message(error)
    current_app.logger.error("%s %s: %s", request.method, request.path, message)
    return Response(compact_json({"error": message}), status=500, mimetype=JSON)


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without its port, in lower case: ``localhost``, ``[::1]``."""
    if host.startswith("["):
        return host.partition("]")[0].lower() + "]"
    return host.partition(":")[0].lower()


def allowed_host_names(bind_host: str) -> frozenset[str] | None:
    """The ``Host`` names a server listening on ``bind_host`` answers; None: any name."""
    if bind_host in WILDCARD_HOSTS:
        return None
    name = host_name(f"[{bind_host}]" if ":" in bind_host and not bind_host.startswith("[") else bind_host)
    try:
        loopback = name == "localhost" or ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:  # a name, not an address
        loopback = False
    return LOOPBACK_HOST_NAMES | {name} if loopback else frozenset({name})


def refuse_foreign_hosts(app: Flask, bind_host: str | None = None) -> None:
    """Answer a JSON 400 to any request whose ``Host`` does not name ``bind_host`` (default: ``HOST``)."""
    allowed = allowed_host_names(bind_host or os.environ.get("HOST") or DEFAULT_HOST)
    if allowed is None:
        return

    def check_host() -> Response | None:
        return None if host_name(request.host) in allowed else json_error(BadRequest())

    # First of all the hooks: no other code of the app runs for a foreign Host.
    app.before_request_funcs.setdefault(None, []).insert(0, check_host)


def action_route(app: Flask, rule: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """``@app.get(rule)`` for a route that changes state: a HEAD gets a JSON 405 (``Allow: GET``).

    Werkzeug adds HEAD to every GET rule and Flask runs the GET view for it (``curl -I`` would
    reserve); taken out of the rule's methods, HEAD is refused like any method not allowed.
    """

    def register(view: Callable[..., Response]) -> Callable[..., Response]:
        app.get(rule)(view)
        for url_rule in app.url_map.iter_rules(view.__name__):
            url_rule.methods.discard("HEAD")
        return view

    return register


def json_api(app: Flask) -> Flask:
    """``app``, answering JSON to everything, like the course's Express apps (see the module doc)."""
    app.json = CourseJSONProvider(app)
    # Unhandled errors reach the JSON handler even under ``flask run --debug`` or in tests.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    # An automatic OPTIONS answer has an empty HTML body; a 405 in JSON is more honest here.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    # A doubled slash (/list_products//1) would get Werkzeug's HTML redirect: here, a JSON 404.
    app.url_map.merge_slashes = False
    app.register_error_handler(HTTPException, json_error)
    app.register_error_handler(redis.ConnectionError, redis_unavailable)
    app.register_error_handler(redis.TimeoutError, redis_unavailable)
    app.register_error_handler(UnreadableStateError, unreadable_state)
    app.register_error_handler(redis.ResponseError, unreadable_state)
    refuse_foreign_hosts(app)
    return app


def redis_client(**options: Any) -> redis.Redis:
    """A client for ``REDIS_URL`` that fails fast, for one process: make it in the worker.

    No retries: a reservation that failed on the wire is reported (503), never run twice.
    A connection broken by a Redis restart is reconnected when the pool next hands it out.
    """
    options.setdefault("socket_connect_timeout", REDIS_TIMEOUT_SECONDS)
    options.setdefault("socket_timeout", REDIS_TIMEOUT_SECONDS)
    options.setdefault("retry", Retry(NoBackoff(), 0))
    return client_from_env(**options)


# Starting a server --------------------------------------------------------------------------


def write_line(line: str, stream: Any = None) -> None:
    """Write a whole line in one system call, taking no lock of Python's.

    ``connect_at_launch``'s thread writes while granian forks its workers: a child forked while
    that thread held ``sys.stdout``'s lock would inherit it held, and hang at its first print.
    """
    os.write((stream or sys.stdout).fileno(), f"{line}\n".encode())


def connect_at_launch(first_contact: Callable[[], object]) -> None:
    """Reach Redis with ``first_contact``; while it is away, say so and try again in the background.

    Nothing is printed if Redis answers. Otherwise the course's not-connected line, and a thread
    tries again (1 s, 2 s, then every 4 s, a line each time) until the connected line. The server
    serves meanwhile: its routes answer 503 until Redis is back.
    """
    if try_contact(first_contact, announce_success=False):
        return
    threading.Thread(target=keep_trying, args=(first_contact,), name="Redis at launch", daemon=True).start()


def try_contact(contact: Callable[[], object], *, announce_success: bool) -> bool:
    """One try: True once it is done with (Redis answered, or refused for good)."""
    try:
        contact()
    except (redis.ConnectionError, redis.TimeoutError) as error:
        write_line(not_connected_line(error))
        return False
    except redis.RedisError as error:
        write_line(f"Redis error: {error}", sys.stderr)
        return True
    if announce_success:
        write_line(CONNECTED)
    return True


def keep_trying(contact: Callable[[], object]) -> None:
    delay = LAUNCH_RETRY_FIRST_SECONDS
    time.sleep(delay)
    while not try_contact(contact, announce_success=True):
        delay = min(delay * 2, LAUNCH_RETRY_MAX_SECONDS)
        time.sleep(delay)


class CannotListenError(CannotStartError):
    """The server's address is taken, or not this machine's."""


def check_port_free(host: str, port: int) -> None:
    """Raise ``CannotListenError`` if the port cannot be listened on, or something listens there.

    Granian's workers share their port (SO_REUSEPORT): a second server on a busy port would
    start silently and take a share of the first one's requests.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family):
            pass
    except OSError as error:
        hint = " (is another server running?)" if error.errno == errno.EADDRINUSE else ""
        raise CannotListenError(f"Cannot listen on {host}:{port}: {os.strerror(error.errno)}{hint}") from None


def raise_open_file_limit() -> None:
    """Let this process (and the workers it starts) open as many files as the system allows.

    Each connection is a file descriptor; the usual soft limit, 1,024, would stop a worker
    accepting connections long before ``CONNECTIONS_PER_WORKER``.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker_apart_from_the_terminal() -> None:
    """Run in each worker as granian forks it: a workaround of two of granian's defects (2.8.9).

    - A worker signalled twice, by the terminal's Ctrl-C (sent to its whole process group) and
      by the main process's SIGTERM, hung in its shutdown in 4 of 5 tries; the main process
      then waited for it (granian PR #435 added ``workers_kill_timeout`` for workers that do not
      stop). Out of the terminal's process group, a worker gets one signal: the main process's.
    - A worker sets its signal handlers only after importing the app; a SIGTERM meanwhile ran
      the handler inherited from the main process, and was lost. Until granian's handlers are
      set, SIGTERM ends the worker, which serves nothing yet.
    ``workers_kill_timeout`` (``SERVER_LIMITS``) covers the instant between the fork and this.
    """
    os.setpgrp()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def server_settings(doc: str | None, port_variable: str = "PORT", default_port: int = DEFAULT_PORT) -> dict:
    """Granian's keyword arguments for a server of the course, once everything it needs is checked.

    The command line (``--help``), ``HOST``, the port in ``port_variable``, ``REDIS_URL`` (which
    workers would read only at their first request) and a free port; then the start line.
    """
    parse_command_line(doc)
    redis_url()
    host, port = host_from_env(), port_from_env(port_variable, default_port)
    check_port_free(host, port)
    raise_open_file_limit()
    os.register_at_fork(after_in_child=worker_apart_from_the_terminal)
    # Flask turns debug mode on when FLASK_DEBUG=1 is set as the app is made: it is for the
    # development server (``flask run --debug``), never for this one, whose workers make it.
    os.environ.pop("FLASK_DEBUG", None)
    shown_host = f"[{host}]" if ":" in host else host
    write_line(f"Serving on http://{shown_host}:{port}", sys.stderr)
    return {"address": host, "port": port, **SERVER_LIMITS}


def launch(doc: str | None, first_contact: Callable[[], object] | None = None) -> dict:
    """``server_settings`` for an API on ``PORT``, then Redis reached with ``first_contact`` (a PING)."""
    settings = server_settings(doc)
    connect_at_launch(first_contact or redis_client().ping)
    return settings
