"""A learner's own Redis, as the course leaves it, and a snapshot to prove nothing in it changed.

The tour, the check and ``make reset`` must leave a learner's server alone (or, for reset,
touch only the course's keys). Tests fill a server of their own the way a learner's shell
session would, then compare every key's DUMP and expiry time, and the queues, before and after.
They also check that the run's own Redis, and every program it started, are gone afterwards.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
import redis
from rq import Queue

from course import expected
from course.jobs import next_job_ids

# Keys a learner has after a while with the course, beside the course's own.
LEARNER_STRINGS = {"Holberton": "School", "HolbertonSanFrancisco": "100", "my:notes": "not the course's"}
EXPIRING_KEY = "my:session"
# The state the defect report showed: stock used up, seats taken, task 4's hash there.
LEARNER_COURSE_STATE = {
    expected.stock_key(1): "0",
    expected.stock_key(2): "7",
    expected.AVAILABLE_SEATS_KEY: "12",
    expected.RESERVATION_ENABLED_KEY: "false",
}
LEARNER_SCHOOLS = {"Portland": "50", "Seattle": "80", "Lyon": "3"}
# Jobs queued with no processor running: 11 of task 7, one of task 6, two seat reservations.
QUEUED = {
    expected.TASK7_QUEUE: ("7_job_processor.send_notification_job", expected.TASK7_JOBS),
    expected.TASK6_QUEUE: ("6_job_processor.send_notification_job", [expected.TASK6_JOB]),
    expected.SEAT_QUEUE: ("100_seat.reserve_seat_job", [{}, {}]),
}
OTHER_DATABASE = 3


def fill_like_a_learner(url: str) -> None:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        client.mset({**LEARNER_STRINGS, **LEARNER_COURSE_STATE})
        client.set(EXPIRING_KEY, "token", ex=3600)
        client.hset(expected.SCHOOLS_HASH_KEY, mapping=LEARNER_SCHOOLS)
    with redis.Redis.from_url(url) as client:
        for queue_name, (function, datas) in QUEUED.items():
            queue = Queue(queue_name, connection=client)
            for job_id, data in zip(next_job_ids(client, len(datas)), datas, strict=True):
                queue.enqueue(function, data, job_id=job_id)
    with redis.Redis.from_url(url.rsplit("/", 1)[0] + f"/{OTHER_DATABASE}") as client:
        client.set("another:database", "kept")


def snapshot(url: str) -> dict:
    """Every key of every database (its DUMP and absolute expiry), and the job ids in each queue."""
    keys = {}
    base = url.rsplit("/", 1)[0]
    with redis.Redis.from_url(url) as client:
        databases = [int(name[2:]) for name in client.info("keyspace")]
        queues = {name: Queue(name, connection=client).job_ids for name in QUEUED}
    for database in databases:
        with redis.Redis.from_url(f"{base}/{database}") as client:
            for key in client.scan_iter(count=1000):
                # EXPIRETIME (Redis 7) is a fixed instant, where TTL would shrink while the test runs.
                keys[(database, key)] = (client.dump(key), client.expiretime(key))
    return {"keys": keys, "queues": queues}


def learner_env(url: str, port: int) -> dict[str, str]:
    """The environment of a learner's shell pointed at their own server."""
    return {**os.environ, "REDIS_URL": url, "REDIS_PORT": str(port)}


# The first line of ``make tour`` and ``make check``: where the run's own Redis is.
RUN_REDIS_LINE = re.compile(
    r"The (tour|check) runs on a Redis of its own, 127\.0\.0\.1:(\d+): yours is not touched\."
)


def run_port(stdout: str) -> int:
    match = RUN_REDIS_LINE.fullmatch(stdout.splitlines()[0])
    assert match, stdout[:500]
    return int(match[2])


def processes_using(redis_url: str) -> list[int]:
    """Pids of the processes whose environment points them at ``redis_url``."""
    marker = f"REDIS_URL={redis_url}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return pids


def assert_nothing_left_running(port: int) -> None:
    """The run's Redis is stopped and no lesson it started still runs."""
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert processes_using(f"redis://127.0.0.1:{port}/0") == []
