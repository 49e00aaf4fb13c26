"""What the course's two HTTP APIs share: a Flask app that answers JSON to everything, and its server.

Express's ``res.json`` sent compact JSON with keys in the order they were written and no
trailing newline, and the spec's bodies are those bytes. ``create_app`` makes Flask do the
same, and makes every error an answer in JSON too: an unknown path, a wrong method, Redis
down, a bug. Tracebacks go to the server's log, never to the client.

API, as ``9_stock.py`` uses it::

    app = create_app(__name__)            # a Flask app; add routes with @app.get(...)
    @action_route(app, "/reserve/<id>")   # a GET route that changes state: HEAD refused
    redis_client()                        # a client for REDIS_URL that fails fast
    json_response('{"status":"..."}')     # a prepared body, sent as application/json
    connect_at_launch()                   # in main(): say so while Redis is away at launch
    serve(__file__, listen_address())     # in main(): serve this file's ``app``

Errors become (status, body):
- any HTTP error (404, 405, ...): its status, ``{"error":"Not Found"}`` (the reason phrase);
- ``redis.ConnectionError`` or ``redis.TimeoutError``: 503, ``{"error":"Service Unavailable"}``;
- the API's state in Redis changed by hand so that it cannot be read (``SET item.1 abc``, a
  hash where a number belongs): 500, ``{"error":"..."}`` naming the key or Redis's refusal
  and ``make reset``, one line logged (``UnreadableStateError``, ``redis.ResponseError``);
- any other exception: 500, ``{"error":"Internal Server Error"}``, the traceback logged.

Two rules that the course's GET routes need, since some of them change state (a reservation
is a GET, as in the course):
- ``Host``: a web page can make its own name resolve to 127.0.0.1 (DNS rebinding) and then
  call the API as if it were its own site. ``refuse_foreign_hosts`` answers a JSON 400 to a
  request whose ``Host`` is not a name of the address the server listens on (a request
  with no ``Host`` at all included): bound to loopback (the default), ``127.0.0.1``,
  ``localhost`` or ``[::1]``, with or without a port; bound to another address, that
  address only; bound to every interface (``HOST=0.0.0.0`` or ``::``), any name, since the
  server is then meant to be reached by any name (behind a load balancer, say). The address
  is read from ``HOST``: ``flask run --host`` is not seen, so set ``HOST`` along with it.
  ``create_app`` applies it; any other Flask app can call it too.
- ``HEAD``: Flask answers HEAD with the GET route, which would reserve and book. A route
  registered with ``action_route`` answers HEAD with a JSON 405 and ``Allow: GET`` instead,
  and does nothing; a route that only reads answers HEAD with the headers of its GET.

``serve`` runs granian, a production WSGI server, with one worker process per CPU core and
two threads in each, on ``HOST`` (default 127.0.0.1) and ``PORT`` (default 1245). Ctrl-C
(to the terminal's whole process group, or to the main process alone) or SIGTERM stops the
workers, even ones still starting, and the server exits with status 0 and no traceback.
On Linux no worker outlives its main process, even one killed with SIGKILL. A malformed
``HOST`` or ``PORT`` is a one-line message and status 2 (``listen_address``), a busy port a
one-line message and status 1 (``CannotListenError``); ``course.connection.run``, around the
script's ``main()``, prints them and exits. ``flask --app NAME run`` still works,
for learners who want the development server and its reloader.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import ipaddress
import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from course.connection import CONNECTED, CannotStartError, client_from_env, not_connected_line
from course.keys import NOT_A_NUMBER, RESET_HINT, UnreadableStateError
from course.settings import DEFAULT_HOST, host_from_env, port_from_env, redis_url

import redis
from flask import Flask, Response, current_app, request
from flask.json.provider import DefaultJSONProvider
from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry
from werkzeug.exceptions import BadRequest, HTTPException, ServiceUnavailable

DEFAULT_PORT = 1245
JSON = "application/json"
COMPACT = (",", ":")

# Redis on loopback or a LAN answers in well under a millisecond; half a second means it is
# gone or stuck, and the client gets its 503 in about a second instead of waiting.
REDIS_TIMEOUT_SECONDS = 0.5

# What stops a server: Ctrl-C, or SIGTERM (from the main process, for a worker).
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})

# From <linux/prctl.h>: a signal for this process when its parent dies.
PR_SET_PDEATHSIG = 1

# Python threads per worker process. A request spends most of its time in Python, holding
# the GIL; a second thread keeps the core busy while the first waits for Redis. Granian's
# default (half its backpressure: 256 threads here) only adds switching: p99 latency was
# 2-3 times worse. Backpressure stays at granian's default, far above the connections a
# client opens: set below them, it left connections unserved (bench/README.md).
THREADS_PER_WORKER = 2

# The names a client on this machine uses for loopback, as a Host header carries them.
LOOPBACK_HOST_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
# Addresses that mean "every interface".
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]"})

# A server started while Redis is away tries again after 1 s, then 2, then every 4 s, printing
# the course's not-connected line each time, as the course's processors do.
LAUNCH_RETRY_FIRST_SECONDS = 1.0
LAUNCH_RETRY_MAX_SECONDS = 4.0


NUMBER_LUA_PATTERN = "^-?%d+$"


def read_number_lua(variable: str, default: str) -> str:
    """Lua that sets ``variable`` to the number ``KEYS[1]`` holds (``default``, a Lua expression, if absent).

    A value that is not a number (``NUMBER``) ends the script with an error reply that
    ``call_script`` makes an ``UnreadableStateError``.
    """
    return f"""local {variable} = redis.call('GET', KEYS[1]) or {default}
if not string.match({variable}, '{NUMBER_LUA_PATTERN}') then
    return redis.error_reply(KEYS[1] .. ' {NOT_A_NUMBER}')
end
{variable} = tonumber({variable})"""


def call_script(script: Script, keys: list[str], args: list[object]) -> Any:
    """A Lua script's answer; its refusal of a ``KEYS[1]`` that holds no number: ``UnreadableStateError``.

    A script refuses so with ``read_number_lua``; any other refusal by Redis stays a
    ``redis.ResponseError`` (out of memory, say).
    """
    try:
        return script(keys=keys, args=args)
    except redis.ResponseError as error:
        if str(error) == f"{keys[0]} {NOT_A_NUMBER}":
            raise UnreadableStateError(keys[0]) from None
        raise


class CourseJSONProvider(DefaultJSONProvider):
    """Express's ``res.json``: compact, keys in insertion order, no trailing newline."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("separators", COMPACT)
        return super().dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        body = self.dumps(self._prepare_response_obj(args, kwargs))
        return self._app.response_class(body, mimetype=JSON)


def compact_json(value: object) -> str:
    """``value`` as Express's ``res.json`` wrote it, for a body prepared once."""
    return json.dumps(value, separators=COMPACT)


def json_response(body: str, status: int = 200) -> Response:
    """A response for a body that is JSON already (prepared once, not serialised per request)."""
    return Response(body, status=status, mimetype=JSON)


def json_error(error: HTTPException) -> Response:
    """Any HTTP error as JSON, keeping its status and headers (``Allow`` on a 405)."""
    response = error.get_response()
    response.data = compact_json({"error": error.name})
    response.content_type = JSON
    return response


def redis_unavailable(error: redis.RedisError) -> Response:
    return json_error(ServiceUnavailable())


def unreadable_state(error: UnreadableStateError | redis.ResponseError) -> Response:
    """A 500 that says what Redis refused or holds, and one line in the log, no traceback.

    Redis's refusal is given without a script's hash. ``make reset`` is named where it helps:
    for a key that holds no number, or one of another type (WRONGTYPE), not for a Redis out
    of memory, say.
    """
    if isinstance(error, UnreadableStateError):
        message = f"{error} ({RESET_HINT})"
    else:
        refusal = str(error).partition(" script: ")[0]
        hint = f" ({RESET_HINT})" if refusal.startswith("WRONGTYPE") else ""
        message = f"Redis refused a command: {refusal}{hint}"
    current_app.logger.error("%s %s: %s", request.method, request.path, message)
    return json_response(compact_json({"error": message}), status=500)


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
    """Answer a JSON 400 to any request whose ``Host`` does not name ``bind_host`` (see the module doc).

    ``bind_host`` defaults to ``HOST``, the address ``serve`` listens on (127.0.0.1 unless set).
    """
    allowed = allowed_host_names(bind_host or os.environ.get("HOST") or DEFAULT_HOST)
    if allowed is None:
        return

    def check_host() -> Response | None:
        if host_name(request.host) in allowed:
            return None
        return json_error(BadRequest())

    # First of all the hooks: no other code of the app runs for a foreign Host.
    app.before_request_funcs.setdefault(None, []).insert(0, check_host)


def action_route(app: Flask, rule: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """``@app.get(rule)`` for a route that changes state: a HEAD gets a JSON 405 (``Allow: GET``).

    Werkzeug adds HEAD to every GET rule, and Flask runs the GET view for it, dropping only
    the body; taking it out of the rule's methods makes the router refuse HEAD like any
    other method it does not allow.
    """

    def register(view: Callable[..., Response]) -> Callable[..., Response]:
        app.get(rule)(view)
        for url_rule in app.url_map.iter_rules(view.__name__):
            url_rule.methods.discard("HEAD")
        return view

    return register


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
    app.register_error_handler(UnreadableStateError, unreadable_state)
    app.register_error_handler(redis.ResponseError, unreadable_state)
    refuse_foreign_hosts(app)
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


def write_line(line: str, stream: Any = None) -> None:
    """Write one line straight to the file descriptor, taking no lock of Python's.

    ``connect_at_launch`` writes from a thread of the main process while granian forks its
    workers: a child forked while that thread held ``sys.stdout``'s lock would inherit it
    held, and hang at its first print.
    """
    os.write((stream or sys.stdout).fileno(), f"{line}\n".encode())


def connect_at_launch(first_contact: Callable[[], object] | None = None) -> None:
    """At launch, reach Redis with ``first_contact`` (default: a PING), and say so if it is away.

    If Redis answers, nothing is printed. If not, the course's not-connected line is printed,
    and a background thread tries again (1 s, 2 s, then every 4 s, a line each time) until
    Redis answers, then prints the connected line. The server starts serving meanwhile; its
    routes answer their 503 until Redis is back. ``first_contact`` also sets up what the
    API needs on a fresh Redis (the seats); another Redis error there is printed on stderr.
    """
    contact = first_contact or redis_client().ping
    if try_contact(contact, announce_success=False):
        return
    threading.Thread(target=keep_trying, args=(contact,), name="Redis at launch", daemon=True).start()


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
    while True:
        time.sleep(delay)
        if try_contact(contact, announce_success=True):
            return
        delay = min(delay * 2, LAUNCH_RETRY_MAX_SECONDS)


class CannotListenError(CannotStartError):
    """The server's address is taken, or not this machine's."""


def check_port_free(host: str, port: int) -> None:
    """Raise ``CannotListenError`` if the port cannot be listened on, or something listens there already.

    Granian's workers share their port (SO_REUSEPORT), so without this check a second server
    on a busy port would start silently and take a share of the first one's requests.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family):
            pass
    except OSError as error:
        hint = " (is another server running?)" if error.errno == errno.EADDRINUSE else ""
        raise CannotListenError(f"Cannot listen on {host}:{port}: {os.strerror(error.errno)}{hint}") from None


def listen_address(port_variable: str = "PORT", default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """Where to serve: ``HOST`` and the port in ``port_variable``.

    Every setting a server reads is checked here, before it starts (``SettingError``, status
    2): ``REDIS_URL`` too, which its workers would otherwise only read at their first request.
    """
    redis_url()
    return host_from_env(), port_from_env(port_variable, default_port)


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


def hold_stop_signals() -> None:
    """Before a fork: SIGINT and SIGTERM wait (blocked, kept pending by the kernel)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def release_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def stop_signals_end_this_worker() -> None:
    """Right after a worker's fork: a stop request ends it, one that came during the fork included.

    CPython drops a signal that reaches a forked process before it resets its signal state,
    and the main process stops a worker with one SIGTERM, maybe an instant after forking it:
    held during the fork, that signal is delivered here instead. Until granian sets the
    worker's own handlers, a stop ends it: it would otherwise run the main process's handler,
    which ignores the request in a worker.
    """
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_DFL)
    release_stop_signals()


def load_app_in_worker(script: str) -> Flask:
    """Granian calls this in each worker process: import the script as a module, take its ``app``.

    The worker first leaves the terminal's process group, so that Ctrl-C reaches only the
    main process, which then stops each worker with one SIGTERM. (A worker that gets the
    terminal's SIGINT and the main process's SIGTERM together can miss both and hang.)
    """
    os.setpgrp()
    stop_with_main_process()
    path = Path(script)
    sys.path.insert(0, str(path.parent))
    app = importlib.import_module(path.stem).app
    # Flask turns debug mode on when FLASK_DEBUG=1 is in the environment as the app is made.
    # It is for the development server (``flask run --debug``), never for this one.
    app.debug = False
    return app


def serve(script: str, address: tuple[str, int]) -> None:
    """Serve the ``app`` defined in ``script`` (pass ``__file__``) on ``address`` until Ctrl-C or SIGTERM.

    Each worker imports the script as a module of its own, so whatever the module makes at
    import (the app, Redis clients made on first use) belongs to that worker.
    Returns once stopped; raises ``CannotListenError`` (``run()``: its line and status 1) if
    the port is taken or the address is not this machine's.
    """
    host, port = address
    check_port_free(host, port)
    os.register_at_fork(
        before=hold_stop_signals,
        after_in_parent=release_stop_signals,
        after_in_child=stop_signals_end_this_worker,
    )
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
