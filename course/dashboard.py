"""``make dashboard``: rq-dashboard, RQ's web UI, watching the course's queues and workers.

Kue shipped a web UI for its queues; RQ's counterpart is rq-dashboard, an optional extra
(``pip install -e '.[dashboard]'``). It reads the Redis server from ``REDIS_URL`` like every
lesson and is served like the course's APIs: granian, on 127.0.0.1 unless ``HOST`` says
otherwise, on ``DASHBOARD_PORT`` (default 9181, rq-dashboard's own; ``PORT`` is the APIs').

rq-dashboard 0.9 trusts whoever reaches it; this wrapper does not:
- its pages and JSON data are open, but its actions (delete, requeue, empty, compact and any
  route it may add) need credentials: ``DASHBOARD_USER`` and ``DASHBOARD_PASSWORD`` turn on
  HTTP basic auth for the whole dashboard; without them every action is refused, and every
  page says so at its top, with how to enable them;
- a refused action is shown on the page (rq-dashboard's own scripts ignore a failed POST);
- a failed login is logged on stderr (time, client address, the user name tried, never the
  password) and answered late: a delay per client address that doubles with each failure, up
  to a bound; the right credentials are never delayed;
- an action is a POST from the dashboard's own pages: another origin (any web page the
  learner visits) is refused, and so is a request for another ``Host`` (DNS rebinding);
- jobs are read as JSON (RQ's ``JSONSerializer``), never unpickled: what is in Redis is data;
- its pages run only the scripts they were served with: markup in a job's data or error
  message stays inert (rq-dashboard writes those into the job page as HTML), and no other
  site may frame them;
- the Redis password is masked, whatever characters it holds;
- every error, Redis away included, is a JSON answer.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from course.connection import not_connected_line, redis_url, run
from course.hosts import host_from_env, port_from_env
from course.jobs import SERIALIZER
from course.settings import SettingError, parse_command_line
from course.web import json_api, server_settings, write_line

import redis
import rq_dashboard
import rq_dashboard.web
from flask import Flask, Response, current_app, jsonify, request
from granian import Granian
from granian.constants import Interfaces
from rq import Worker
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job
from werkzeug.exceptions import MethodNotAllowed

DEFAULT_PORT = 9181
PORT_VARIABLE = "DASHBOARD_PORT"
USER_VARIABLE = "DASHBOARD_USER"
PASSWORD_VARIABLE = "DASHBOARD_PASSWORD"
REALM = "RQ Dashboard"

# rq-dashboard's templates link its CSS and JS with url_for('rq_dashboard.static') and its icon
# with url_for('static'): the app's own static route must exist, and as it shadows the
# blueprint's (both are /static), it must serve the blueprint's files.
STATIC_FOLDER = Path(rq_dashboard.__file__).parent / "static"

# rq-dashboard 0.9's routes that only read. Every other endpoint, including any route a later
# version adds, is an action: POST only, same origin only, credentials required.
READ_ONLY_ENDPOINTS = frozenset(
    {
        "static",
        "rq_dashboard.static",
        "rq_dashboard.favicon",
        "rq_dashboard.queues_overview",
        "rq_dashboard.workers_overview",
        "rq_dashboard.jobs_overview",
        "rq_dashboard.job_view",
        "rq_dashboard.list_queues",
        "rq_dashboard.list_jobs",
        "rq_dashboard.job_info",
        "rq_dashboard.list_workers",
    }
)
ACTION_METHOD = "POST"
# What a browser says of a request made by a page of the dashboard itself ("none": typed by the user).
OWN_FETCH_SITES = frozenset({"same-origin", "none"})

# Between "scheme://" and the last "@": user and password, whatever they hold (an unencoded
# "@", ":" or "/" included), as long as the URL has an "@" at all.
USERINFO = re.compile(r"(?<=://).*@")
MASKED_USERINFO = "***:***@"

# rq-dashboard's job page puts a job's description, meta and error message into the page as
# HTML: a job failing with "<img src=x onerror=...>" would run that script in the dashboard's
# origin, with its credentials. This policy lets only the page's own scripts run (its files,
# and its inline scripts by hash); Underscore's templates compile with ``new Function``
# ('unsafe-eval'), which runs no markup. It also keeps other sites from framing the page.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-eval' {inline_scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)

ACTIONS_DISABLED = (
    f"Dashboard actions are disabled: set {USER_VARIABLE} and {PASSWORD_VARIABLE} to enable them"
)
LOG_IN = f"Log in with the {USER_VARIABLE} and {PASSWORD_VARIABLE} the dashboard was started with"
CROSS_ORIGIN = "Cross-origin request refused: actions come from the dashboard's own pages"
UNREADABLE_JOB = "A job in Redis is not JSON: the dashboard reads jobs as JSON and never unpickles them"

# What each page says at its top while actions are refused for want of credentials.
ACTIONS_DISABLED_NOTICE = (
    '<div id="actions-disabled" class="alert alert-warning mb-0" role="alert">'
    "Actions (Requeue, Delete, Empty, Compact) are disabled: restart the dashboard with "
    f"{USER_VARIABLE} and {PASSWORD_VARIABLE} set to enable them, e.g. "
    f"<code>{USER_VARIABLE}=me {PASSWORD_VARIABLE}='a long secret' make dashboard</code></div>"
)
# Where a refused action is shown: hidden until then.
ACTION_REFUSED_NOTICE = (
    '<div id="action-refused" class="alert alert-danger sticky-top mb-0" role="alert" hidden></div>'
)
# An action the server refused (403, 409, 503...), shown on the page: jQuery's global ajaxError
# event sees every failed request of rq-dashboard's scripts; only actions are POSTs.
ACTION_REFUSED_SCRIPT = """
$(document).ajaxError(function (event, answer, settings) {
    if (settings.type !== "POST") { return; }
    var reason = (answer.responseJSON && answer.responseJSON.error) || answer.statusText || "no answer";
    $("#action-refused").text("Refused (HTTP " + answer.status + "): " + reason).prop("hidden", false);
    window.scrollTo(0, 0);
});
"""
BODY_START = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
BODY_END = "</body>"

# Failed logins: the first is answered after FIRST_DELAY_SECONDS, each next one from the same
# address after twice the last, up to MAX_DELAY_SECONDS. An address is forgotten after
# FORGET_SECONDS without a failure; at most MAX_ADDRESSES are remembered (the oldest go first).
# Success does not reset the count: on loopback every local user shares 127.0.0.1, and the
# learner's open page, logged in, would otherwise clear an attacker's delay at every refresh.
FIRST_DELAY_SECONDS = 0.25
MAX_DELAY_SECONDS = 4.0
FORGET_SECONDS = 600.0
MAX_ADDRESSES = 10_000
# A user name is logged as Python writes a string (quoted, newlines escaped), cut to this length;
# one that holds the dashboard's password (typed in the wrong field) is not logged at all.
LOGGED_NAME_CHARS = 64
PASSWORD_AS_NAME = "(not logged: it holds the dashboard's password)"


# Settings -----------------------------------------------------------------------------------


def credentials_from_env() -> tuple[str, str] | None:
    """``(user, password)`` from the environment, or ``None`` when neither is set.

    One without the other is a mistake worth one line and status 2, not a dashboard with
    its actions silently disabled.
    """
    user, password = os.environ.get(USER_VARIABLE) or "", os.environ.get(PASSWORD_VARIABLE) or ""
    if not user and not password:
        return None
    if not (user and password):
        raise SettingError(f"{USER_VARIABLE} and {PASSWORD_VARIABLE} must be set together")
    if ":" in user:
        raise SettingError(
            f"{USER_VARIABLE} cannot contain ':' (HTTP basic auth separates it from the password)"
        )
    return user, password


def dashboard_addresses(host: str, port: int) -> frozenset[str]:
    """The ``Host`` headers a browser sends for this dashboard: loopback by name and number, and ``HOST``."""
    names = {"127.0.0.1", "localhost", host.lower()}
    bracketed = {f"[{name}]" if ":" in name else name for name in names}
    addresses = {f"{name}:{port}" for name in bracketed}
    # A browser leaves the port out when it is the scheme's default.
    return frozenset(addresses | bracketed if port == 80 else addresses)


def masked_url(url: str) -> str:
    """The URL with its whole userinfo (user and password) replaced by ``***:***``."""
    return USERINFO.sub(MASKED_USERINFO, url, count=1)


def masked_urls(urls: str | Iterable[str]) -> list[str]:
    return [masked_url(urls)] if isinstance(urls, str) else [masked_url(url) for url in urls]


# Reading jobs as JSON -----------------------------------------------------------------------


class JobReadAsJSON(Job):
    """RQ's ``Job``, read with ``SERIALIZER`` unless a serializer is given."""

    def __init__(self, id: str | None = None, connection: redis.Redis | None = None, serializer=None):
        super().__init__(id, connection, serializer or SERIALIZER)


class WorkerReadAsJSON(Worker):
    """RQ's ``Worker``, whose ``all()`` gives workers that read their current job with ``SERIALIZER``."""

    @classmethod
    def all(cls, connection=None, job_class=None, queue_class=None, queue=None, serializer=None):
        return super().all(connection, job_class, queue_class, queue, serializer or SERIALIZER)


def requeue_readable_job(job_id: str, connection: redis.Redis) -> Job:
    """RQ's ``requeue_job``, reading the job as JSON, for a job whose meta is JSON.

    RQ keeps a meta it could not read as raw bytes, and takes the job out of the failed
    registry before it saves it again: such a job would be lost on the way, so it stays put
    (``get_meta`` raises, the answer is a 422).
    """
    job = JobReadAsJSON.fetch(job_id, connection=connection)
    job.get_meta()
    return job.requeue()


def adapt_rq_dashboard() -> None:
    """Make rq-dashboard 0.9 read every job with ``SERIALIZER`` and mask passwords whole.

    Its own setting, ``rq_dashboard.web.config.serializer``, reaches only the routes that
    pass it on. The job page, the workers' data, delete and requeue call ``Job.fetch``,
    ``Worker.all`` and ``requeue_job`` without a serializer, which means pickle: a job's
    meta would be unpickled, running whatever code it names. Those names are bound here to
    versions that read JSON. Its masking stops at the first "@" of a password.
    """
    rq_dashboard.web.config.serializer = SERIALIZER
    rq_dashboard.web.Job = JobReadAsJSON
    rq_dashboard.web.Worker = WorkerReadAsJSON
    rq_dashboard.web.requeue_job = requeue_readable_job
    rq_dashboard.web.escape_format_instance_list = masked_urls


# Answers ------------------------------------------------------------------------------------


def json_answer(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def redis_unreachable(error: redis.RedisError) -> Response:
    """Redis down, or the password refused: the course's failed-connection line, in JSON."""
    return json_answer(not_connected_line(error), 503)


def unreadable_job(error: Exception) -> Response:
    return json_answer(UNREADABLE_JOB, 422)


def no_such_job(error: NoSuchJobError) -> Response:
    return json_answer(str(error) or "No such job", 404)


def invalid_job_operation(error: InvalidJobOperation) -> Response:
    # RQ raises it without a message when the job to requeue is not in the failed registry.
    return json_answer(str(error) or "Not possible for this job in its current state", 409)


# Who may do what ----------------------------------------------------------------------------


def is_action() -> bool:
    """Whether the request reached a route that changes something (not a 404 or 405 of routing)."""
    return request.routing_exception is None and request.endpoint not in READ_ONLY_ENDPOINTS


def refuse_other_methods() -> None:
    """An action by any method but POST is a 405 with ``Allow: POST`` (rq-dashboard lets GET requeue)."""
    error = request.routing_exception
    action_route = isinstance(error, MethodNotAllowed) and ACTION_METHOD in (error.valid_methods or ())
    if action_route or (is_action() and request.method != ACTION_METHOD):
        raise MethodNotAllowed([ACTION_METHOD])


def from_own_page(addresses: frozenset[str]) -> bool:
    origin = request.headers.get("Origin")
    if origin is not None and origin not in {f"http://{address}" for address in addresses}:
        return False
    fetch_site = request.headers.get("Sec-Fetch-Site")
    return fetch_site is None or fetch_site in OWN_FETCH_SITES


def has_credentials(credentials: tuple[str, str]) -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    given = f"{auth.username}:{auth.password}".encode()
    return hmac.compare_digest(given, ":".join(credentials).encode())


class FailedLogins:
    """Failed logins by client address, in this server process, and the delay each one gets.

    Granian's worker processes share nothing: each counts the failures it answered, so a client
    that spreads its tries over new connections (served by any worker) is delayed per worker.
    """

    def __init__(self) -> None:
        self.by_address: OrderedDict[str, tuple[int, float]] = OrderedDict()  # failures, last one's time
        self.lock = threading.Lock()

    def record(self, address: str) -> tuple[int, float]:
        """Count one more failure from ``address``: (failures so far, seconds to wait before answering)."""
        now = time.monotonic()
        with self.lock:
            failures, last = self.by_address.pop(address, (0, now))
            failures = 1 if now - last > FORGET_SECONDS else failures + 1
            self.by_address[address] = (failures, now)
            while len(self.by_address) > MAX_ADDRESSES:
                self.by_address.popitem(last=False)
        return failures, min(FIRST_DELAY_SECONDS * 2 ** (failures - 1), MAX_DELAY_SECONDS)


def failed_login_line(address: str, user: str, failures: int, delay: float) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return (
        f"{when} dashboard: failed login from {address} as user {user} "
        f"(failure {failures} from this address, answered after {delay:g} s)"
    )


def logged_name(tried: str, password: str) -> str:
    return PASSWORD_AS_NAME if password in tried else repr(tried[:LOGGED_NAME_CHARS])


def refuse_login(failed_logins: FailedLogins, password: str) -> Response:
    """A 401; a try with credentials (not a browser's first request, which has none) is a failure:
    logged (never a password) and answered late."""
    auth = request.authorization
    if auth is not None:
        address = request.remote_addr or "unknown address"
        failures, delay = failed_logins.record(address)
        user = logged_name(auth.username or "", password)
        write_line(failed_login_line(address, user, failures, delay), sys.stderr)
        time.sleep(delay)
    return json_answer(LOG_IN, 401, {"WWW-Authenticate": f'Basic realm="{REALM}"'})


def guard(addresses: frozenset[str], credentials: tuple[str, str] | None) -> Callable[[], Response | None]:
    """The check every request passes before rq-dashboard sees it."""
    failed_logins = FailedLogins()

    def check_request() -> Response | None:
        host = (request.headers.get("Host") or "").lower()
        if host not in addresses:
            return json_answer(
                f"Unknown Host {host!r}: this dashboard answers at {', '.join(sorted(addresses))}", 400
            )
        if credentials is not None and not has_credentials(credentials):
            return refuse_login(failed_logins, credentials[1])
        refuse_other_methods()
        if not is_action():
            return None
        if not from_own_page(addresses):
            return json_answer(CROSS_ORIGIN, 403)
        if credentials is None:
            return json_answer(ACTIONS_DISABLED, 403)
        return None

    return check_request


def script_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def only_own_scripts(response: Response) -> Response:
    """An HTML page gets a policy that runs the scripts it was served with, and nothing added later."""
    if response.mimetype == "text/html":
        hashes = {script_hash(source) for source in INLINE_SCRIPT.findall(response.get_data(as_text=True))}
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.format(
            inline_scripts=" ".join(sorted(hashes))
        )
    return response


def with_notices(response: Response, actions_disabled: bool) -> Response:
    """An HTML page with, at its top, the place where a refused action is shown and, while actions
    are disabled, a notice that says how to enable them; the script that shows refusals at its end.

    rq-dashboard's templates are its own: the page is changed as it leaves, not copied.
    """
    page = response.get_data(as_text=True)
    notices = ACTION_REFUSED_NOTICE + (ACTIONS_DISABLED_NOTICE if actions_disabled else "")
    page = BODY_START.sub(lambda start: start.group(0) + notices, page, count=1)
    before, end, after = page.rpartition(BODY_END)
    if end:  # after jQuery, which the page loads at the end of its body
        page = f"{before}<script>{ACTION_REFUSED_SCRIPT}</script>{end}{after}"
    response.set_data(page)
    return response


def finished_page(actions_disabled: bool) -> Callable[[Response], Response]:
    """The last step of every answer: an HTML page gets its notices, then the policy that lets its
    scripts (the notices' one included) run."""

    def finish(response: Response) -> Response:
        if response.mimetype == "text/html":
            response = with_notices(response, actions_disabled)
        return only_own_scripts(response)

    return finish


def needing_redis(view: Callable[..., Response]) -> Callable[..., Response]:
    """rq-dashboard's queues page answers its own HTML "Connection Error" with status 200; check first."""

    @functools.wraps(view)
    def checked(**kwargs: object) -> Response:
        current_app.redis_conn.ping()
        return view(**kwargs)

    return checked


# The app --------------------------------------------------------------------------------------


def create_dashboard() -> Flask:
    credentials = credentials_from_env()
    host, port = host_from_env(), port_from_env(PORT_VARIABLE, DEFAULT_PORT)
    adapt_rq_dashboard()
    app = json_api(Flask(__name__, static_folder=None))
    app.static_folder = STATIC_FOLDER
    app.add_url_rule(
        f"{app.static_url_path}/<path:filename>", endpoint="static", view_func=app.send_static_file
    )
    # rq-dashboard reads this setting as a list of servers: a bare string breaks every page.
    app.config["RQ_DASHBOARD_REDIS_URL"] = [redis_url()]
    # Its pages then leave out the delete buttons that would be refused anyway.
    app.config["RQ_DASHBOARD_DISABLE_DELETE"] = credentials is None
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/")
    # Its routes without a server number (the actions) use the connection this makes; it
    # would otherwise exist only once a page had been served, and an action fail before that.
    rq_dashboard.web.setup_rq_connection(app)
    app.before_request(guard(dashboard_addresses(host, port), credentials))
    app.after_request(finished_page(actions_disabled=credentials is None))
    app.view_functions["rq_dashboard.queues_overview"] = needing_redis(
        app.view_functions["rq_dashboard.queues_overview"]
    )
    app.register_error_handler(redis.ConnectionError, redis_unreachable)
    app.register_error_handler(redis.TimeoutError, redis_unreachable)
    for error in (DeserializationError, json.JSONDecodeError, UnicodeDecodeError):
        app.register_error_handler(error, unreadable_job)
    app.register_error_handler(NoSuchJobError, no_such_job)
    app.register_error_handler(InvalidJobOperation, invalid_job_operation)
    return app


def main() -> None:
    credentials_from_env()  # checked, like every setting, before anything starts
    settings = server_settings(__doc__, PORT_VARIABLE, DEFAULT_PORT)
    Granian("course.dashboard:app", interface=Interfaces.WSGI, **settings).serve()


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
else:
    # Made where a server worker imports this module; run as a program, main() first checks
    # the command line and the settings, which the app would read before any check.
    app = create_dashboard()
