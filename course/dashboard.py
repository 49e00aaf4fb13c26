"""``make dashboard``: rq-dashboard, RQ's web UI, watching the course's queues and workers.

Kue shipped a web UI for its queues; RQ's counterpart is rq-dashboard, an optional extra
(``pip install -e '.[dashboard]'``). It reads the Redis server from ``REDIS_URL`` like every
lesson, masks any password in what it shows, and is served like the course's APIs: granian,
on 127.0.0.1 unless ``HOST`` says otherwise, on ``PORT`` (default 9181, rq-dashboard's own).
"""

from __future__ import annotations

import os

import rq_dashboard
from flask import Flask

from course.connection import redis_url
from course.web import serve

DEFAULT_PORT = 9181


def create_dashboard() -> Flask:
    app = Flask(__name__)
    app.config.from_object(rq_dashboard.default_settings)
    # rq-dashboard reads this setting as a list of servers: a bare string breaks every page.
    app.config["RQ_DASHBOARD_REDIS_URL"] = [redis_url()]
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/")
    return app


app = create_dashboard()


def main() -> None:
    os.environ.setdefault("PORT", str(DEFAULT_PORT))
    serve(__file__)


if __name__ == "__main__":
    main()
