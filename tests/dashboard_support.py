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

import redis
from conftest import free_port
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.results import Result

from course.jobs import FAILURE_TTL_SECONDS, next_job_ids
from course.lessons import start_script, stop_script

READY_TIMEOUT_SECONDS = 30
REQUEST_TIMEOUT_SECONDS = 10

TASK7_QUEUE = "push_notification_code_2"
BLACKLISTED_ERROR = "Phone number 4153518780 is blacklisted"
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


def failed_task7_job(connection: redis.Redis, exc_string: str = BLACKLISTED_ERROR, **job_options) -> Job:
    """A job of task 7's queue that failed with ``exc_string``, as its processor leaves one."""
    (job_id,) = next_job_ids(connection)
    queue = Queue(TASK7_QUEUE, connection=connection, **job_options)
    job = queue.enqueue("7_job_processor.send_notification_job", {"phoneNumber": "4153518780"}, job_id=job_id)
    queue.remove(job)
    FailedJobRegistry(TASK7_QUEUE, connection=connection).add(job, exc_string=exc_string)
    Result.create_failure(job, ttl=FAILURE_TTL_SECONDS, exc_string=exc_string)
    job.set_status(JobStatus.FAILED)
    return job
