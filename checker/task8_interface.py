"""The check's test of task 8: ``create_push_notifications_jobs(jobs, queue)`` as the course describes it.

It depends on the task's interface alone, never on how a solution is built: the
``Jobs is not an array`` error (nothing queued), each job queued on ``push_notification_code_3``
of the given queue's Redis with its data, and a ``Notification job created: ID`` line per job
with the id the queue gave it. Jobs are queued on fakeredis and never processed (Kue's test
mode). The check runs it with pytest, ``TASK8_MODULE`` naming the folder's 8_job.py, which is
imported by its path (this file is not collected by the project's own test run).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import zlib
from pathlib import Path

import fakeredis
import pytest
from rq import Queue
from rq.job import Job

QUEUE = "push_notification_code_3"
JOBS = [
    {"phoneNumber": "4153518780", "message": "This is the code 1234 to verify your account"},
    {"phoneNumber": "4153518781", "message": "This is the code 4562 to verify your account"},
]
NOT_LISTS = ["4153518780", {"phoneNumber": "4153518780", "message": "a job, not a list of jobs"}, 42, None]


@pytest.fixture(scope="module")
def create_push_notifications_jobs():
    """The folder's function, its module imported by path as ``8_job`` (its folder first on sys.path,
    as when the learner runs a script there, so its own helper modules import)."""
    path = Path(os.environ["TASK8_MODULE"])
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("8_job", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["8_job"] = module
    spec.loader.exec_module(module)
    return module.create_push_notifications_jobs


@pytest.fixture
def queue() -> Queue:
    return Queue(QUEUE, connection=fakeredis.FakeRedis())


def queued(queue: Queue) -> list[str]:
    """The ids of the jobs waiting on push_notification_code_3 of the queue's Redis."""
    return Queue(QUEUE, connection=queue.connection).job_ids


def stored_data(queue: Queue, job_id: str) -> bytes:
    """What RQ stored of a job's call (function, arguments), whatever its serializer (pickle, JSON...).

    Read raw rather than through ``Job.fetch``, which needs the solution's serializer.
    """
    data = queue.connection.hget(Job.key_for(job_id), "data") or b""
    try:
        return zlib.decompress(data)
    except zlib.error:  # stored uncompressed
        return data


@pytest.mark.parametrize("not_a_list", NOT_LISTS, ids=repr)
def test_jobs_that_are_not_a_list_raise_jobs_is_not_an_array(
    create_push_notifications_jobs, queue, not_a_list
):
    with pytest.raises(Exception, match=r"\AJobs is not an array\Z"):
        create_push_notifications_jobs(not_a_list, queue)
    assert queued(queue) == []


def test_each_job_is_queued_on_push_notification_code_3_with_its_data(create_push_notifications_jobs, queue):
    create_push_notifications_jobs(JOBS, queue)

    job_ids = queued(queue)
    assert len(job_ids) == len(JOBS)
    for job_id, data in zip(job_ids, JOBS, strict=True):
        call = stored_data(queue, job_id)
        assert data["phoneNumber"].encode() in call
        assert data["message"].encode() in call


def test_each_job_prints_its_created_line_with_its_id(create_push_notifications_jobs, queue, capsys):
    create_push_notifications_jobs(JOBS, queue)

    printed = capsys.readouterr().out.splitlines()
    created = [line for line in printed if line.startswith("Notification job created: ")]
    assert created == [f"Notification job created: {job_id}" for job_id in queued(queue)]
