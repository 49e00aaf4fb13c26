"""What the course's two HTTP APIs share: a Flask app that answers JSON to everything, and its server.

Express's ``res.json`` sent compact JSON with keys in the order they were written and no
trailing newline, and the spec's bodies are those bytes. ``create_app`` makes Flask do the
same, and makes every error an answer in JSON too: an unknown path, a wrong method, Redis
down, a bug. Tracebacks go to the server's log, never to the client.

API, as ``9_stock.py`` uses it::

    app = create_app(__name__)            # a Flask app; add routes with @app.get(...)
    redis_client()                        # a client for REDIS_URL that fails fast
    json_response('{"status":"..."}')     # a prepared body, sent as application/json
    serve(__file__)                       # in main(): serve this file's ``app``

Errors become (status, body):
- any HTTP error (404, 405, ...): its status, ``{"error":"Not Found"}`` (the reason phrase);
- ``redis.ConnectionError`` or ``redis.TimeoutError``: 503, ``{"error":"Service Unavailable"}``;
- any other exception: 500, ``{"error":"Internal Server Error"}``, the traceback logged.

``serve`` runs granian, a production WSGI server, with one worker process per CPU core and
two threads in each, on ``HOST`` (default 127.0.0.1) and ``PORT`` (default 1245). Ctrl-C
(to the terminal's whole process group, or to the main process alone) or SIGTERM stops the
workers, even ones still starting, and the server exits with status 0 and no traceback.
On Linux no worker outlives its main process, even one killed with SIGKILL. A busy port or
a bad ``PORT`` is a one-line message and status 1. ``flask --app NAME run`` still works,
for learners who want the development server and its reloader.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import multiprocessing
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import redis
from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider
from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from course.connection import client_from_env

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1245
JSON = "application/json"
COMPACT = (",", ":")

# Redis on loopback or a LAN answers in well under a millisecond; half a second means it is
# gone or stuck, and the client gets its 503 in about a second instead of waiting.
REDIS_TIMEOUT_SECONDS = 0.5

# From <linux/prctl.h>: a signal for this process when its parent dies.
PR_SET_PDEATHSIG = 1

# Python threads per worker process. A request spends most of its time in Python, holding
# the GIL; a second thread keeps the core busy while the first waits for Redis. Granian's
# default (half its backpressure: 256 threads here) only adds switching: p99 latency was
# 2-3 times worse. Backpressure stays at granian's default, far above the connections a
# client opens: set below them, it left connections unserved (bench/README.md).
THREADS_PER_WORKER = 2


class CourseJSONProvider(DefaultJSONProvider):
    """Express's ``res.json``: compact, keys in insertion order, no trailing newline."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("separators", COMPACT)
        return super().dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        body = self.dumps(self._prepare_response_obj(args, kwargs))
        return self._app.response_class(body, mimetype=JSON)


def json_response(body: str, status: int = 200) -> Response:
    """A response for a body that is JSON already (prepared once, not serialised per request)."""
    return Response(body, status=status, mimetype=JSON)


def json_error(error: HTTPException) -> Response:
    """Any HTTP error as JSON, keeping its status and headers (``Allow`` on a 405)."""
    response = error.get_response()
    response.data = json.dumps({"error": error.name}, separators=COMPACT)
    response.content_type = JSON
    return response


def redis_unavailable(error: redis.RedisError) -> Response:
    return json_error(ServiceUnavailable())


def create_app(import_name: str) -> Flask:
    """A Flask app that speaks JSON only, like the course's Express apps (see the module doc)."""
    # No static folder: the APIs serve no files, so no /static/<path> route answering outside JSON.
    app = Flask(import_name, static_folder=None)
    app.json = CourseJSONProvider(app)
    # Unhandled errors reach the JSON handler even under ``flask run --debug`` or in tests,
    # instead of the debugger's HTML page or the test client.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    # An automatic OPTIONS answer has an empty HTML body; a 405 in JSON is more honest here.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    # A doubled slash (/list_products//1) would get Werkzeug's redirect, an HTML page that no
    # error handler sees; as in Express, it is an unknown path: a JSON 404.
    app.url_map.merge_slashes = False
    app.register_error_handler(HTTPException, json_error)
    app.register_error_handler(redis.ConnectionError, redis_unavailable)
    app.register_error_handler(redis.TimeoutError, redis_unavailable)
    return app


def redis_client(**options: Any) -> redis.Redis:
    """A client for ``REDIS_URL`` that fails fast, for one process: make it after the fork.

    No retries: a reservation that failed on the wire is reported (503), never run twice.
    A connection broken by a Redis restart is noticed when the pool hands it out and is
    reconnected then, so the API recovers by itself once Redis is back.
    """
    options.setdefault("socket_connect_timeout", REDIS_TIMEOUT_SECONDS)
    options.setdefault("socket_timeout", REDIS_TIMEOUT_SECONDS)
    options.setdefault("retry", Retry(NoBackoff(), 0))
    return client_from_env(**options)


def port_from_env(port_variable: str = "PORT", default_port: int = DEFAULT_PORT) -> int:
    value = os.environ.get(port_variable) or str(default_port)
    if not (value.isascii() and value.isdigit() and 0 < int(value) < 65536):
        sys.exit(f"{port_variable} must be a TCP port number (1-65535), not {value!r}")
    return int(value)


def check_port_free(host: str, port: int) -> None:
    """Exit with a message if something listens on the port already.

    Granian's workers share their port (SO_REUSEPORT), so without this check a second server
    on a busy port would start silently and take a share of the first one's requests.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family):
            pass
    except OSError as error:
        sys.exit(f"Cannot listen on {host}:{port}: {os.strerror(error.errno)} (is another server running?)")


def stop_with_main_process() -> None:
    """On Linux, have this worker sent SIGTERM when the main process dies, even by SIGKILL.

    Out of the terminal's process group, a worker would otherwise outlive a killed main
    process and go on serving, alone, on the port.
    """
    if sys.platform != "linux":
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != multiprocessing.parent_process().pid:  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def load_app_in_worker(script: str) -> Flask:
    """Granian calls this in each worker process: import the script as a module, take its ``app``.

    The worker first leaves the terminal's process group, so that Ctrl-C reaches only the
    main process, which then stops each worker with one SIGTERM. (A worker that gets the
    terminal's SIGINT and the main process's SIGTERM together can miss both and hang.)
    Until granian sets the worker's own handlers, a stop request simply ends it: a forked
    worker would otherwise run the main process's handler, which ignores the request there.
    """
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    stop_with_main_process()
    path = Path(script)
    sys.path.insert(0, str(path.parent))
    app = importlib.import_module(path.stem).app
    # Flask turns debug mode on when FLASK_DEBUG=1 is in the environment as the app is made.
    # It is for the development server (``flask run --debug``), never for this one.
    app.debug = False
    return app


def serve(script: str, *, port_variable: str = "PORT", default_port: int = DEFAULT_PORT) -> None:
    """Serve the ``app`` defined in ``script`` (pass ``__file__``) until Ctrl-C or SIGTERM.

    Each worker imports the script as a module of its own, so whatever the module makes at
    import (the app, Redis clients made on first use) belongs to that worker.
    Exits with status 0 once stopped; with a one-line message and status 1 if ``PORT`` is
    not a port number or the port is taken.
    """
    host, port = os.environ.get("HOST") or DEFAULT_HOST, port_from_env(port_variable, default_port)
    check_port_free(host, port)
    server = Granian(
        script,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=os.cpu_count() or 1,
        blocking_threads=THREADS_PER_WORKER,
        # The course's servers print nothing of their own; warnings and errors still show.
        log_level=LogLevels.warning,
    )
    server.serve(target_loader=load_app_in_worker)
