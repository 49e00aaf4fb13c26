"""``make dashboard``: rq-dashboard served against REDIS_URL shows the course's queues and jobs."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
import redis
from conftest import free_port
from rq import Queue

from course.jobs import next_job_ids
from course.lessons import start_script, stop_script

READY_TIMEOUT_SECONDS = 20


def fetch(port: int, path: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


def wait_until_answering(port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        try:
            fetch(port, "/")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def dashboard_port(redis_url):
    port = free_port()
    process = start_script("course/dashboard.py", redis_url, DASHBOARD_PORT=str(port))
    try:
        wait_until_answering(port)
        yield port
    finally:
        stdout, stderr = stop_script(process)
    assert "Traceback" not in stdout + stderr


def test_pages_show_the_course_queues_and_jobs(redis_url, dashboard_port):
    with redis.Redis.from_url(redis_url) as client:
        queue = Queue("push_notification_code", connection=client)
        (job_id,) = next_job_ids(client)
        queue.enqueue("6_job_processor.send_notification_job", {"phoneNumber": "4153518780"}, job_id=job_id)

    status, content_type, page = fetch(dashboard_port, "/")
    assert (status, content_type.split(";")[0]) == (200, "text/html")
    assert "RQ" in page

    _, content_type, body = fetch(dashboard_port, "/0/data/queues.json")
    queues = {queue["name"]: queue["count"] for queue in json.loads(body)["queues"]}
    assert content_type == "application/json"
    assert queues["push_notification_code"] == 1

    _, _, job_page = fetch(dashboard_port, f"/0/view/job/{job_id}")
    assert job_id in job_page
