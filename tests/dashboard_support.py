"""What the dashboard's tests share: the dashboard served as ``make dashboard`` serves it, raw requests.

``served_dashboard(url, **env)`` runs ``python course/dashboard.py`` on a free
``DASHBOARD_PORT`` and yields that port; ``send`` makes one HTTP request the way curl would,
headers exactly as given (a foreign ``Host`` or ``Origin`` included).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

from conftest import free_port

from course.lessons import start_script, stop_script

READY_TIMEOUT_SECONDS = 30
REQUEST_TIMEOUT_SECONDS = 10

LOOPBACK = "127.0.0.1"
USER = "learner"
PASSWORD = "dashboard-secret"


@dataclass
class Answer:
    status: int
    content_type: str
    body: str
    headers: http.client.HTTPMessage

    def json(self) -> object:
        assert self.content_type == "application/json", (self.status, self.content_type, self.body[:300])
        return json.loads(self.body)


def basic_auth(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def send(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, host: str = LOOPBACK
) -> Answer:
    """One request to HOST:PORT; http.client adds ``Host: HOST:PORT`` unless ``headers`` has one."""
    connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
    finally:
        connection.close()
    content_type = (response.headers.get("Content-Type") or "").split(";")[0]
    return Answer(response.status, content_type, body, response.headers)


def wait_until_answering(port: int, host: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        try:
            send(port, "GET", "/favicon.ico", basic_auth(), host=host)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def served_dashboard(redis_url: str, **env: str) -> Iterator[int]:
    """The dashboard on a free port of its own, as ``make dashboard`` runs it; no traceback when stopped."""
    port = free_port()
    process = start_script("course/dashboard.py", redis_url, **{"DASHBOARD_PORT": str(port), **env})
    try:
        wait_until_answering(port, env.get("HOST", LOOPBACK))
        yield port
    finally:
        stdout, stderr = stop_script(process)
    assert "Traceback" not in stdout + stderr, stdout + stderr
