"""What is in Redis is data: the dashboard reads jobs as JSON and never unpickles them.

A job whose data, meta and result hold a pickle that would create a file if it were loaded
is written straight into Redis; every page, JSON endpoint and action that touches it is
requested. The file never appears, and every answer is the page, or JSON.
"""

from __future__ import annotations

import pickle
import zlib
from pathlib import Path

import pytest
from rq import Queue, Worker
from rq.job import JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from tests.support import PASSWORD, USER, basic_auth, request, served_dashboard

pytestmark = pytest.mark.timeout(180)

QUEUE = "push_notification_code_2"
QUEUED, FAILED, FINISHED = "1", "2", "3"
# 422: rq-dashboard read the job and found it is not JSON.
JSON_STATUSES = {200, 404, 409, 422}


class CreatesAFile:
    """Pickled, it names ``open(PATH, "w")``: loading the pickle would create the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def poison(rq_redis, job_id: str, payload: bytes) -> None:
    """Overwrite what RQ would deserialize: the job's data (zlib-compressed, as RQ stores it) and meta."""
    rq_redis.hset(f"rq:job:{job_id}", mapping={"data": zlib.compress(payload), "meta": payload})


@pytest.fixture
def poisoned_jobs(rq_redis, tmp_path) -> Path:
    """A queued, a failed and a finished job of task 7's queue, each a pickle that creates ``marker``.

    A worker is busy with the queued one, so the workers' page reads it too.
    """
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(CreatesAFile(marker))
    queue = Queue(QUEUE, connection=rq_redis, serializer=JSONSerializer)
    for job_id in (QUEUED, FAILED, FINISHED):
        queue.enqueue("7_job_processor.send_notification_job", {"phoneNumber": "4153518780"}, job_id=job_id)
        poison(rq_redis, job_id, payload)
    for job_id in (FAILED, FINISHED):
        queue.remove(job_id)
    FailedJobRegistry(QUEUE, connection=rq_redis).add(queue.fetch_job(FAILED), exc_string="boom")
    rq_redis.hset(f"rq:job:{FAILED}", "status", JobStatus.FAILED.value)
    FinishedJobRegistry(QUEUE, connection=rq_redis).add(queue.fetch_job(FINISHED), ttl=3600)
    rq_redis.hset(f"rq:job:{FINISHED}", "status", JobStatus.FINISHED.value)
    Result(FINISHED, Result.Type.SUCCESSFUL, rq_redis, return_value=CreatesAFile(marker)).save(ttl=3600)

    worker = Worker([QUEUE], connection=rq_redis, name="busy-with-a-pickle")
    worker.register_birth()
    worker.set_current_job_id(QUEUED)
    yield marker
    worker.register_death()


def reading_paths() -> list[str]:
    registries = [(QUEUED, "queued"), (FAILED, "failed"), (FINISHED, "finished")]
    paths = ["/", "/0/view/workers", "/0/data/workers.json", "/0/data/queues.json"]
    for job_id, registry in registries:
        paths += [
            f"/0/view/jobs/{QUEUE}/{registry}/8/asc/1",
            f"/0/data/jobs/{QUEUE}/{registry}/8/asc/1.json",
            f"/0/view/job/{job_id}",
            f"/0/data/job/{job_id}.json",
        ]
    return paths


ACTION_PATHS = [
    f"/job/{FAILED}/requeue",
    f"/job/{QUEUED}/requeue",
    f"/requeue/{QUEUE}",
    f"/queue/{QUEUE}/compact",
    f"/job/{FINISHED}/delete",
    f"/queue/{QUEUE}/failed/empty",
    f"/queue/{QUEUE}/queued/empty",
]


def test_no_page_endpoint_or_action_unpickles_a_job(redis_url, poisoned_jobs):
    with served_dashboard(redis_url, DASHBOARD_USER=USER, DASHBOARD_PASSWORD=PASSWORD) as port:
        own_page = {**basic_auth(), "Origin": f"http://127.0.0.1:{port}"}
        answers = {path: request(port, path, headers=basic_auth()) for path in reading_paths()}
        answers |= {path: request(port, path, "POST", own_page) for path in ACTION_PATHS}
        assert not poisoned_jobs.exists()

    statuses = {path: answer.status for path, answer in answers.items()}
    assert set(statuses.values()) <= JSON_STATUSES, statuses
    for path, answer in answers.items():
        if answer.status != 200:
            assert "error" in answer.json(), path
    assert answers[f"/0/data/job/{QUEUED}.json"].json() == {
        "error": "A job in Redis is not JSON: the dashboard reads jobs as JSON and never unpickles them"
    }
