"""Shared fixtures: a real redis-server per test session, fakeredis, a URL where nothing listens,
and the stock and seat APIs bound to fakeredis in Flask's test client.

The server binary comes from ``REDIS_BIN_DIR`` (``make test`` sets it from
``./redis_setup.sh build``), else from running ``./redis_setup.sh build`` here.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from learner_redis import fill_like_a_learner
from pytest_redis import factories
from rq import Queue, SimpleWorker, Worker
from rq.worker import WorkerStatus

from course.jobs import SERIALIZER
from course.lessons import ROOT, lines, script_env


def redis_bin_dir() -> Path:
    """REDIS_BIN_DIR, else the directory ``./redis_setup.sh build`` prints last (building once if needed).

    Only the script knows which build it made (its cache directory names the version and any
    Debian revision), so the path is never guessed here.
    """
    if os.environ.get("REDIS_BIN_DIR"):
        return Path(os.environ["REDIS_BIN_DIR"])
    built = subprocess.run(
        [str(ROOT / "redis_setup.sh"), "build"], capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        raise RuntimeError(f"./redis_setup.sh build failed:\n{built.stdout}{built.stderr}")
    return Path(built.stdout.splitlines()[-1])


REDIS_BIN = redis_bin_dir()

redis_proc = factories.redis_proc(executable=str(REDIS_BIN / "redis-server"), port=None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


# Processor script -> (its queue, how many workers it registers).
PROCESSORS = {
    "6_job_processor.py": ("push_notification_code", 1),
    "7_job_processor.py": ("push_notification_code_2", 2),
}
# Bounds for a broken run, not expectations of speed.
STARTUP_TIMEOUT_SECONDS = 30
SLOW_PROCESSOR = str(Path(__file__).with_name("slow_processor.py"))


@pytest.fixture
def rq_redis(redis_url) -> Iterator[redis.Redis]:
    """A client as RQ needs it (bytes, not decoded strings)."""
    with redis.Redis.from_url(redis_url) as client:
        yield client


def wait_for_workers(connection: redis.Redis, count: int) -> list[Worker]:
    """The registered workers, once ``count`` of them wait for jobs (or the start-up time is over).

    A worker registers itself a moment before it installs its signal handlers; once it
    waits for jobs, a signal gets RQ's handling and not Python's default.
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        workers = Worker.all(connection=connection)
        if len(workers) >= count and all(worker.get_state() == WorkerStatus.IDLE for worker in workers):
            break
        time.sleep(0.05)
    return workers


@pytest.fixture
def processors(redis_url, rq_redis):
    """Start a processor in its own process group, as a terminal runs it; wait until it is listening."""
    started: list[subprocess.Popen[str]] = []
    expected_workers: list[int] = []

    def start(script: str, *args: str, slow_jobs: bool = False) -> subprocess.Popen[str]:
        """``slow_jobs``: through tests/slow_processor.py, which lets it run ``time.sleep`` jobs too."""
        launcher = [SLOW_PROCESSOR] if slow_jobs else []
        process = subprocess.Popen(
            [sys.executable, *launcher, script, *args],
            cwd=ROOT,
            env=script_env(redis_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        expected_workers.append(PROCESSORS[script][1])
        workers = wait_for_workers(rq_redis, sum(expected_workers))
        assert len(workers) == sum(expected_workers), f"{script} did not start its workers"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def ctrl_c(process: subprocess.Popen[str]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to every process of the foreground group."""
    os.killpg(process.pid, signal.SIGINT)


def stopped_output(process: subprocess.Popen[str], stop=ctrl_c) -> tuple[list[str], str]:
    stop(process)
    output, errors = process.communicate(timeout=30)
    return lines(output), errors


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


# Persistence as redis_setup.sh configures it: a restart keeps the data (AOF and RDB).
PERSISTENCE = ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "3600 1 300 100 60 10000"]
NO_PERSISTENCE = ["--appendonly", "no", "--save", ""]
OWN_REDIS_READY_SECONDS = 20


class OwnRedis:
    """A redis-server of one test's own, on a free port and loopback, that it may stop and start again."""

    def __init__(self, directory: Path, *, persistent: bool) -> None:
        self.port = free_port()
        self.directory = directory
        self.persistence = PERSISTENCE if persistent else NO_PERSISTENCE
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it on its port and directory (loading what it saved there, if anything); wait for PONG."""
        self.process = subprocess.Popen(
            [str(REDIS_BIN / "redis-server"), "--bind", "127.0.0.1", "--port", str(self.port)]
            + ["--dir", str(self.directory), "--protected-mode", "yes", *self.persistence],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + OWN_REDIS_READY_SECONDS
        with redis.Redis.from_url(self.url) as client:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def stop(self) -> None:
        """Stop it with SIGTERM (resuming it first, in case a test paused it)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
        self.process.wait(timeout=OWN_REDIS_READY_SECONDS)

    def shut_down(self) -> None:
        """Stop it as ``./redis_setup.sh stop`` does: SHUTDOWN, which saves the data first."""
        with redis.Redis.from_url(self.url) as client:
            client.shutdown()
        self.process.wait(timeout=OWN_REDIS_READY_SECONDS)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    """A server that keeps nothing across a restart; a test that needs persistence overrides this."""
    server = OwnRedis(tmp_path, persistent=False)
    server.start()
    yield server
    server.stop()


# The stock and seat APIs in Flask's test client, on fakeredis ---------------------------------

stock = importlib.import_module("9_stock")
seat = importlib.import_module("100_seat")


def clear_stock_caches() -> None:
    stock.stock_db.cache_clear()
    stock.reserve_one_unit_script.cache_clear()


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
    clear_seat_caches()
    listener = seat.job_listener
    yield server
    listener.stop()
    clear_seat_caches()


@pytest.fixture
def seat_db(seat_server) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=seat_server, decode_responses=True)


@pytest.fixture
def seat_processors_started(monkeypatch) -> list[bool]:
    """A record of the processors /process starts, instead of real processes (those need a real Redis)."""
    started: list[bool] = []
    monkeypatch.setattr(seat.processor, "ensure_started", lambda: started.append(True))
    return started


@pytest.fixture
def seat_client(seat_server, seat_processors_started) -> FlaskClient:
    """The API just launched: 50 seats, reservations enabled."""
    seat.set_up_seats()
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
