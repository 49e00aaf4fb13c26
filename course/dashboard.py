"""``make dashboard``: rq-dashboard, RQ's web UI, watching the course's queues and workers.

Kue shipped a web UI for its queues; RQ's counterpart is rq-dashboard, an optional extra
(``pip install -e '.[dashboard]'``). It reads the Redis server from ``REDIS_URL`` like every
lesson, masks any password in what it shows, and is served like the course's APIs: granian,
on 127.0.0.1 unless ``HOST`` says otherwise, on ``DASHBOARD_PORT`` (default 9181, rq-dashboard's
own; not ``PORT``, which an API started in the same shell may use).
"""

from __future__ import annotations

import redis
import rq_dashboard
from flask import Flask

from course.connection import not_connected_line, redis_url, run
from course.settings import parse_command_line
from course.web import listen_address, serve

DEFAULT_PORT = 9181


def redis_unreachable(error: redis.RedisError) -> tuple[str, int, dict[str, str]]:
    """Redis down, or the password refused: the course's failed-connection line, not a traceback."""
    return not_connected_line(error), 503, {"Content-Type": "text/plain; charset=utf-8"}


def create_dashboard() -> Flask:
    app = Flask(__name__)
    app.config.from_object(rq_dashboard.default_settings)
    # rq-dashboard reads this setting as a list of servers: a bare string breaks every page.
    app.config["RQ_DASHBOARD_REDIS_URL"] = [redis_url()]
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/")
    # Its data pages let these through, to a 500 and a traceback in the server's terminal.
    app.register_error_handler(redis.ConnectionError, redis_unreachable)
    app.register_error_handler(redis.TimeoutError, redis_unreachable)
    return app


def main() -> None:
    serve(__file__, listen_address("DASHBOARD_PORT", DEFAULT_PORT))


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
else:
    # Made where a server worker imports this module; run as a program, main() first checks
    # the command line and the settings, which the app would read before any check.
    app = create_dashboard()
