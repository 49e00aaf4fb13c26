"""Shared fixtures: a real redis-server per test session, fakeredis, a URL where nothing listens,
and the stock and seat APIs bound to fakeredis in Flask's test client.

The server binary comes from ``REDIS_BIN_DIR`` (``make test`` sets it from
``./redis_setup.sh build``), else from running ``./redis_setup.sh build`` here.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack

from course import web_jobs
from course.jobs import SERIALIZER

import fakeredis
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from pytest_redis import factories
from rq import Queue, SimpleWorker

from checker.lessons import script_env
from tests.support import (
    PROCESSORS,
    REDIS_BIN,
    SLOW_PROCESSOR,
    OwnRedis,
    Server,
    clear_stock_caches,
    descendants,
    end_for_good,
    fill_like_a_learner,
    free_port,
    kill_every,
    project_redis_files_held,
    serve_own_redis,
    serving,
    start_program,
    stock,
    wait_for_workers,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "long: one test runs for tens of seconds (whole tours of the course); started first"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fault tests, then the long ones, first; the rest in their order.

    Under xdist each worker takes the next test when it is nearly done: the longest tests,
    started last, would run on alone and set the suite's time.
    """
    items.sort(
        key=lambda item: (
            0 if item.get_closest_marker("faults") else 1 if item.get_closest_marker("long") else 2
        )
    )


# tests/solutions holds other people's course folders, which the checker's tests run as
# programs: their own test files are not this project's tests.
collect_ignore = ["solutions"]


@pytest.fixture(autouse=True)
def nothing_left_running() -> Iterator[None]:
    """Whatever a test started and left running (it failed half-way) is killed, with all it started.

    Left, a processor would go on, forking new workers, through every later test on the machine.
    The session's own servers were started before (higher-scoped fixtures first).
    """
    before = set(descendants(os.getpid()))
    yield
    kill_every([pid for pid in descendants(os.getpid()) if pid not in before])


redis_proc = factories.redis_proc(executable=str(REDIS_BIN / "redis-server"), port=None)


@pytest.fixture
def redis_url(redis_proc) -> Iterator[str]:
    """A URL to the session's real server, with database 0 emptied for each test."""
    url = f"redis://{redis_proc.host}:{redis_proc.port}/0"
    with redis.Redis.from_url(url) as client:
        client.flushall()
    yield url


@pytest.fixture
def real_redis(redis_url) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client


@pytest.fixture
def dead_redis_url() -> str:
    """A URL where nothing listens: the lessons must say so and exit, not crash."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def rq_redis(redis_url) -> Iterator[redis.Redis]:
    """A client as RQ needs it (bytes, not decoded strings)."""
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def launch(redis_url) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``python SCRIPT [ARGS]`` in a session of its own, as a terminal does, on the test's Redis.

    ``slow_jobs``: through tests/slow_processor.py, which lets a processor run ``time.sleep``
    jobs too; other keywords go into its environment. Whatever still runs at the end (a test
    that failed half-way) is killed, with every process it started.
    """
    started: list[subprocess.Popen[str]] = []

    def start(script: str, *args: str, slow_jobs: bool = False, **extra_env: str) -> subprocess.Popen[str]:
        launcher = [SLOW_PROCESSOR] if slow_jobs else []
        process = start_program(
            [sys.executable, *launcher, script, *args], script_env(redis_url, **extra_env), own_session=True
        )
        started.append(process)
        return process

    yield start
    for process in started:
        end_for_good(process, own_session=True)


@pytest.fixture
def processors(launch, rq_redis) -> Callable[..., subprocess.Popen[str]]:
    """Start a processor (``launch``'s arguments); wait until its workers, and those of the
    processors started before it, wait for jobs."""
    expected_workers: list[int] = []

    def start(script: str, *args: str, **options) -> subprocess.Popen[str]:
        process = launch(script, *args, **options)
        expected_workers.append(PROCESSORS[script][1])
        workers = wait_for_workers(rq_redis, sum(expected_workers))
        assert len(workers) == sum(expected_workers), f"{script} did not start its workers"
        return process

    return start


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """``start_server(script, url, ...)``: a ``support.Server`` (the same arguments), killed after
    the test if it still runs, with every process it started."""
    with ExitStack() as started:
        yield lambda script, url, **options: started.enter_context(serving(script, url, **options))


@pytest.fixture
def project_redis_files(tmp_path_factory) -> Iterator[None]:
    """For a test that checks the project's .redis/ and dump.rdb are left as they were: no test
    that starts redis_setup.sh's servers runs meanwhile."""
    with project_redis_files_held(tmp_path_factory, changing=False):
        yield


@pytest.fixture
def changing_project_redis_files(tmp_path_factory) -> Iterator[None]:
    """For a test that starts redis_setup.sh's servers, which keep their data in the project."""
    with project_redis_files_held(tmp_path_factory, changing=True):
        yield


@pytest.fixture
def run_worker_here():
    """Run a queue's jobs in this process with a burst SimpleWorker, as a plain `rq worker --serializer
    rq.serializers.JSONSerializer` would; put back the signal handlers it sets."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def run(queue: Queue) -> None:
        SimpleWorker([queue.name], connection=queue.connection, serializer=SERIALIZER).work(burst=True)

    yield run
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    """A server that keeps nothing across a restart; a test that needs persistence overrides this."""
    yield from serve_own_redis(tmp_path, persistent=False)


# The stock and seat APIs in Flask's test client, on fakeredis ---------------------------------

seat = importlib.import_module("100_seat")


@pytest.fixture
def stock_db(monkeypatch) -> Iterator[fakeredis.FakeRedis]:
    """The fake Redis that the module's client is made for, as the test sees it."""
    server = fakeredis.FakeServer()
    monkeypatch.setattr(stock, "redis_client", lambda: fakeredis.FakeRedis(server=server))
    clear_stock_caches()
    yield fakeredis.FakeRedis(server=server, decode_responses=True)
    clear_stock_caches()


@pytest.fixture
def stock_app(stock_db) -> Flask:
    return stock.app


@pytest.fixture
def stock_client(stock_app) -> FlaskClient:
    return stock_app.test_client()


def clear_seat_caches() -> None:
    for cached in (
        seat.seats_db,
        seat.take_seat_script,
        seat.seats_script,
        seat.admit_script,
    ):
        cached.cache_clear()


@pytest.fixture
def seat_server(monkeypatch) -> Iterator[fakeredis.FakeServer]:
    """One fake Redis for the module's clients, its job listener, and the test's own clients."""
    server = fakeredis.FakeServer()

    def fake_client(**options: object) -> fakeredis.FakeRedis:
        return fakeredis.FakeRedis(server=server, decode_responses=options.get("decode_responses", True))

    monkeypatch.setattr(seat, "redis_client", fake_client)
    monkeypatch.setattr(web_jobs, "redis_client", fake_client)
    clear_seat_caches()
    yield server
    seat.jobs.stop_printing()
    clear_seat_caches()


@pytest.fixture
def seat_db(seat_server) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=seat_server, decode_responses=True)


@pytest.fixture
def seat_processors_started(monkeypatch) -> list[bool]:
    """A record of the processors /process starts, instead of real processes (those need a real Redis)."""
    started: list[bool] = []
    monkeypatch.setattr(seat.jobs, "start_processor", lambda: started.append(True))
    return started


@pytest.fixture
def seat_client(seat_server, seat_processors_started) -> FlaskClient:
    """The API just launched: 50 seats, reservations enabled."""
    seat.get_current_available_seats()
    return seat.app.test_client()


@pytest.fixture
def learner_redis(tmp_path) -> Iterator[OwnRedis]:
    """A server standing for the learner's own, holding a learner's keys and queued jobs."""
    directory = tmp_path / "learner-redis"
    directory.mkdir()
    server = OwnRedis(directory, persistent=False)
    server.start()
    fill_like_a_learner(server.url)
    yield server
    server.stop()
