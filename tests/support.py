"""What several test modules share: helpers, not fixtures (those are in conftest.py).

- Processes and servers: ``REDIS_BIN``, ``free_port``, ``OwnRedis`` (a redis-server of one
  test's own), ``wait_for_workers``, ``ctrl_c`` and ``stopped_output`` (a terminal's Ctrl-C).
- A learner's own Redis, as the course leaves it, and a snapshot to prove nothing in it changed:
  the tour, the check and ``make reset`` must leave a learner's server alone (or, for reset,
  touch only the course's keys); they must also leave no Redis or program of theirs running.
- The dashboard served as ``make dashboard`` serves it (``served_dashboard(url, **env)`` yields
  its free ``DASHBOARD_PORT``).
- HTTP, in one way for every test: ``request``, one request made the way curl would (method,
  headers exactly as given, a foreign ``Host`` or ``Origin`` included, a raw target byte for
  byte), its ``Answer``; ``Server`` (and ``serving``, or conftest's ``start_server``), a course
  server started as a learner starts it, on a free port, once it answers; ``running``, the
  stock API that must stop cleanly.
- The stock API's bad requests, for its Flask client tests and its real server tests.
"""

from __future__ import annotations

import base64
import fcntl
import http.client
import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from course import expected
from course.events import JobEvent
from course.events.watch import POLL_INTERVAL_SECONDS, JobWatch
from course.ids import next_job_ids
from course.jobs import course_queue

import pytest
import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.results import Result
from rq.worker import WorkerStatus

from checker.lessons import ROOT, lines, redis_bin_dir, script_env, wait_for_line
from checker.tasks import free_port

REDIS_BIN = redis_bin_dir()
# How long a failed job made by hand is kept: a day, as long as a test may look at it.
FAILED_JOB_TTL_SECONDS = 24 * 60 * 60


# Processor script -> (its queue, how many workers it registers).
PROCESSORS = {
    "6_job_processor.py": ("push_notification_code", 1),
    "7_job_processor.py": ("push_notification_code_2", 2),
}
# Bounds for a broken run, not expectations of speed.
STARTUP_TIMEOUT_SECONDS = 30
SLOW_PROCESSOR = str(Path(__file__).with_name("slow_processor.py"))


def wait_for_workers(connection: redis.Redis, count: int, queue: str | None = None) -> list[Worker]:
    """The registered workers (of ``queue`` only, if given), once ``count`` of them wait for jobs
    (or the start-up time is over).

    A worker registers itself a moment before it installs its signal handlers; once it
    waits for jobs, a signal gets RQ's handling and not Python's default (which would end
    it with no time to unregister).
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if queue is None:
            workers = Worker.all(connection=connection)
        else:
            workers = Worker.all(queue=Queue(queue, connection=connection))
        if len(workers) >= count and all(worker.get_state() == WorkerStatus.IDLE for worker in workers):
            break
        time.sleep(0.05)
    return workers


def ctrl_c(process: subprocess.Popen[str]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to every process of the foreground group."""
    os.killpg(process.pid, signal.SIGINT)


def stopped_output(process: subprocess.Popen[str], stop=ctrl_c) -> tuple[list[str], str]:
    stop(process)
    output, errors = process.communicate(timeout=30)
    return lines(output), errors


@contextmanager
def project_redis_files_held(tmp_path_factory: pytest.TempPathFactory, *, changing: bool) -> Iterator[None]:
    """Held by the tests that start redis_setup.sh's servers (``changing``: they write the project's
    .redis/ and dump.rdb, side by side, each on its port), or that check those are left as they
    were (one at a time, none of the others meanwhile).

    Under xdist the tests run side by side, and xdist_group cannot keep them apart (pytest 9.2
    no longer lets xdist 3.8 tag a test's id with its group): a lock file, shared by the ones
    that change the files, in the directory all workers' temporary directories share.
    """
    with open(tmp_path_factory.getbasetemp().parent / "project-redis-files.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH if changing else fcntl.LOCK_EX)
        yield


# Persistence as redis_setup.sh configures it: a restart keeps the data (AOF and RDB).
PERSISTENCE = ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "3600 1 300 100 60 10000"]
NO_PERSISTENCE = ["--appendonly", "no", "--save", ""]
OWN_REDIS_READY_SECONDS = 20


class RedisDidNotStart(Exception):
    """The redis-server exited, or never answered; its message is what the server printed."""


class OwnRedis:
    """A redis-server of one test's own, on loopback and a free port, that it may stop and start again.

    ``options``: more redis-server settings, after these (a password, TLS: a later ``--port``
    wins); ``url``: how to reach it when it is not redis://127.0.0.1:PORT/0 (with a password, say),
    for which ``port`` can be chosen first. What the server prints goes to a log in ``directory``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        persistent: bool,
        port: int | None = None,
        url: str | None = None,
        options: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.port = port or free_port()
        self.directory = directory
        self.persistence = PERSISTENCE if persistent else NO_PERSISTENCE
        self.options = list(options)
        self.url = url or f"redis://127.0.0.1:{self.port}/0"
        self.log = directory / "redis-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it on its port and directory (loading what it saved there, if anything); wait for PONG."""
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [str(REDIS_BIN / "redis-server"), "--bind", "127.0.0.1", "--port", str(self.port)]
                + ["--dir", str(self.directory), "--protected-mode", "yes", *self.persistence, *self.options],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + OWN_REDIS_READY_SECONDS
        with redis.Redis.from_url(self.url, socket_connect_timeout=1) as client:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        self.process.kill()
                        self.process.wait()
                        raise RedisDidNotStart(self.log.read_text()) from None
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


def serve_own_redis(directory: Path, *, persistent: bool) -> Iterator[OwnRedis]:
    """An ``OwnRedis`` started for a fixture to yield, and stopped after the test."""
    server = OwnRedis(directory, persistent=persistent)
    server.start()
    yield server
    server.stop()


# The stock API in this process -------------------------------------------------------------

stock = importlib.import_module("9_stock")


def clear_stock_caches() -> None:
    stock.stock_db.cache_clear()
    stock.reserve_one_unit_script.cache_clear()


# A learner's own Redis ----------------------------------------------------------------------

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


# The dashboard ------------------------------------------------------------------------------

TASK7_QUEUE = "push_notification_code_2"
BLACKLISTED_ERROR = "Phone number 4153518780 is blacklisted"
USER = "learner"
PASSWORD = "dashboard-secret"


def basic_auth(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@contextmanager
def served_dashboard(redis_url: str, host: str | None = None, **env: str) -> Iterator[int]:
    """The dashboard on a free port of its own, as ``make dashboard`` runs it; no traceback when stopped."""
    with serving("course/dashboard.py", redis_url, host=host, **env) as server:
        yield server.port
        _, stdout, stderr = server.stop()
        assert "Traceback" not in stdout + stderr, stdout + stderr


def failed_task7_job(connection: redis.Redis, exc_string: str = BLACKLISTED_ERROR, **job_options) -> Job:
    """A job of task 7's queue that failed with ``exc_string``, as its processor leaves one."""
    (job_id,) = next_job_ids(connection)
    queue = Queue(TASK7_QUEUE, connection=connection, **job_options)
    job = queue.enqueue("7_job_processor.send_notification_job", {"phoneNumber": "4153518780"}, job_id=job_id)
    queue.remove(job)
    FailedJobRegistry(TASK7_QUEUE, connection=connection).add(job, exc_string=exc_string)
    Result.create_failure(job, ttl=FAILED_JOB_TTL_SECONDS, exc_string=exc_string)
    job.set_status(JobStatus.FAILED)
    return job


# The stock API's bad requests ------------------------------------------------------------

MALFORMED_IDS = [
    "abc",
    "-1",
    "+1",
    "1.0",
    "1.5",
    "1e3",
    "0x1",
    "1abc",
    "%201",  # " 1"
    "1%20",
    "%00",
    "%FF",  # not UTF-8
    "%F0%9F%98%80",  # an emoji
    "%EF%BC%91",  # a fullwidth digit one
    "%D9%A1",  # an Arabic-Indic digit one
]
# Runs of digits that name no product: the course's "Product not found", never a 404.
NOT_PRODUCT_IDS = ["0", "00", "5", "12", "0012", "999999999", "1000000000", "9" * 40, "1" + "0" * 5000]
UNKNOWN_PATHS = [
    "/",
    "/list_products/",
    "/list_products/1/",
    "/list_products/1/2",
    "/reserve_product",
    "/nope",
    "/list_products//1",
]
OTHER_METHODS = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


# HTTP: one request, and the course's servers as a learner starts them -------------------------

LOOPBACK = "127.0.0.1"
# Bounds for a broken run, not expectations of speed.
REQUEST_SECONDS = 10
SERVER_READY_SECONDS = 30
SERVER_STOP_SECONDS = 20
OUTPUT_SECONDS = 60
# Asked until a server answers: a path none of them gives a meaning to (the dashboard's icon, a
# JSON 404 from the APIs), so that asking changes nothing; any status will do.
READY_PATH = "/favicon.ico"


class Answer(tuple):
    """An HTTP answer, equal to ``(status, Content-Type, body)`` as the tests write one.

    ``content_type`` is the header as sent (None without one), ``media_type`` the same without
    its parameters; ``body`` is the text (bytes that are not UTF-8, a font's say, shown as U+FFFD),
    ``raw`` the bytes as they came; ``headers`` all of them.
    """

    raw: bytes
    headers: http.client.HTTPMessage

    def __new__(cls, status: int, content_type: str | None, raw: bytes, headers: http.client.HTTPMessage):
        answer = super().__new__(cls, (status, content_type, raw.decode(errors="replace")))
        answer.raw, answer.headers = raw, headers
        return answer

    @property
    def status(self) -> int:
        return self[0]

    @property
    def content_type(self) -> str | None:
        return self[1]

    @property
    def body(self) -> str:
        return self[2]

    @property
    def media_type(self) -> str:
        return (self.content_type or "").split(";")[0]

    def json(self) -> object:
        assert self.media_type == "application/json", (self.status, self.content_type, self.body[:300])
        return json.loads(self.raw)


def request(
    port: int,
    target: str | bytes = "/",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    host: str = LOOPBACK,
) -> Answer:
    """One HTTP/1.1 request to HOST:PORT, made the way curl makes it, on a connection of its own.

    ``target`` goes into the request line byte for byte (text as UTF-8, as curl sends it):
    http.client would refuse or re-encode some that the sweeps send. ``Host`` is HOST:PORT
    unless ``headers`` has one (a foreign Host, say); the other headers go exactly as given.
    """
    wire_target = target if isinstance(target, bytes) else target.encode()
    fields = {"Host": f"{host}:{port}", **(headers or {}), "Connection": "close"}
    head = b"%s %s HTTP/1.1\r\n" % (method.encode(), wire_target)
    head += b"".join(f"{name}: {value}\r\n".encode() for name, value in fields.items())
    with socket.create_connection((host, port), timeout=REQUEST_SECONDS) as sock:
        sock.sendall(head + b"\r\n")
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        with response:
            raw = response.read()
    return Answer(response.status, response.getheader("Content-Type"), raw, response.headers)


def read_until(process: subprocess.Popen[str], pattern: re.Pattern[str], count: int) -> list[str]:
    """A running program's output, read until ``count`` lines matched ``pattern`` (or time ran out)."""
    seen: list[str] = []
    deadline = time.monotonic() + OUTPUT_SECONDS
    while sum(1 for line in seen if pattern.fullmatch(line)) < count:
        more = wait_for_line(process, pattern, timeout=max(0.0, deadline - time.monotonic()))
        seen += more
        if not more or not pattern.fullmatch(more[-1]):
            break
    return seen


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a server's workers, their processors), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, parent, ...), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


TASK7_FUNCTION = "7_job_processor.send_notification_job"
FEED_EVERY_SECONDS = 0.1


class Task7Feeder(threading.Thread):
    """A creator's steady supply: ``batch`` task-7 jobs (some blacklisted) ten times a second, until
    ``stop()``; ``sent`` maps each job id to its data. A batch Redis refuses (``refused``) is skipped."""

    def __init__(self, watch: JobWatch, batch: int, refused: tuple[type[Exception], ...] = ()) -> None:
        super().__init__(daemon=True)
        self.watch, self.batch, self.refused = watch, batch, refused
        self.sent: dict[str, dict] = {}
        self.feeding = threading.Event()
        self.feeding.set()

    def run(self) -> None:
        turn = 0
        while self.feeding.is_set():
            datas = [
                expected.TASK7_JOBS[(turn + number) % len(expected.TASK7_JOBS)]
                for number in range(self.batch)
            ]
            with suppress(*self.refused):
                self.sent.update(zip(self.watch.enqueue_many(TASK7_FUNCTION, datas), datas, strict=True))
            turn += self.batch
            time.sleep(FEED_EVERY_SECONDS)

    def stop(self) -> None:
        self.feeding.clear()
        if self.is_alive():
            self.join()


def printed_lines(capsys: pytest.CaptureFixture[str], count: int, timeout: float = 60) -> list[str]:
    """What a thread of this process printed, once it printed ``count`` lines (or time is up)."""
    printed: list[str] = []
    deadline = time.monotonic() + timeout
    while len(printed) < count and time.monotonic() < deadline:
        time.sleep(0.01)
        printed += capsys.readouterr().out.splitlines()
    return printed


class JobListener:
    """A ``JobWatch`` of a queue kept listening by a thread while the test enqueues from another (a
    ``Task7Feeder``); after a Redis error it listens again, and the watch's polls catch up."""

    def __init__(self, queue: Queue, on_event: Callable[[JobEvent], None]) -> None:
        self.watch = JobWatch(course_queue(queue.name, queue.connection), on_event)
        self.listening = threading.Event()
        self.thread = threading.Thread(target=self.listen, name=f"events of {queue.name}", daemon=True)

    def start(self) -> JobListener:
        self.listening.set()
        self.thread.start()
        return self

    def listen(self) -> None:
        while self.listening.is_set():
            try:
                self.watch.listen(POLL_INTERVAL_SECONDS)
            except redis.RedisError:
                time.sleep(POLL_INTERVAL_SECONDS)

    def stop(self) -> None:
        self.listening.clear()
        self.thread.join()
        self.watch.close()


def defunct_below(pid: int) -> list[int]:
    """The processes below ``pid`` that ended and were never reaped."""
    return [child for child in descendants(pid) if (proc_stat(child) or ["Z"])[0] == "Z"]


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for_exit(
    process: subprocess.Popen[str], workers: list[int], timeout: float = SERVER_STOP_SECONDS
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a signalled server; one that hangs is killed, and fails."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in (process.pid, *workers):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the server did not stop: {process.communicate()}")
    return process.returncode, stdout, stderr


def run_python(program: str, *, timeout: float = 30, **options) -> subprocess.CompletedProcess[str]:
    """``python -c PROGRAM`` from the project root, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=timeout, **options
    )


def start_program(command: list[str], env: dict[str, str], *, own_session: bool) -> subprocess.Popen[str]:
    """``command`` run from the project root, its output read as text; ``own_session``: in a
    session (a process group) of its own, as a terminal runs a program."""
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=own_session,
    )


class Server:
    """``python SCRIPT`` serving HTTP on a free port (PORT, and DASHBOARD_PORT for the dashboard).

    ``host``: its HOST (None: no HOST at all, whatever the tests' own environment holds), and
    where requests go (loopback for 0.0.0.0). ``own_session``: a process group of its own, as a
    terminal gives a program. ``command(port)``: another command line for it. It is started
    once it answers a request; ``workers`` are its child processes then, ``printed`` the lines
    of its output read so far, ``start_line`` the first line it wrote on stderr (a course
    server's ``Serving on http://HOST:PORT``), read once it answers.
    """

    def __init__(
        self,
        script: str,
        url: str,
        *,
        host: str | None = None,
        own_session: bool = False,
        command: Callable[[int], list[str]] | None = None,
        **env: str,
    ) -> None:
        self.script = script
        self.port = free_port()
        self.host = LOOPBACK if host in (None, "0.0.0.0") else host
        environment = script_env(url, **{"PORT": str(self.port), "DASHBOARD_PORT": str(self.port), **env})
        environment.pop("HOST", None)
        if host is not None:
            environment["HOST"] = host
        self.process = start_program(
            command(self.port) if command else [sys.executable, script], environment, own_session=own_session
        )
        self.own_session = own_session
        self.printed: list[str] = []
        self.wait_until_answering()
        # Written before the server listens: there once it answers.
        self.start_line = self.process.stderr.readline().rstrip("\n")
        self.workers = children(self.process.pid)

    def wait_until_answering(self) -> None:
        deadline = time.monotonic() + SERVER_READY_SECONDS
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"{self.script} exited ({self.process.returncode}): {self.process.communicate()}")
            try:
                self.request(READY_PATH)
                return
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    self.close()
                    pytest.fail(
                        f"{self.script} did not answer on port {self.port}: {self.process.communicate()}"
                    )
                time.sleep(0.05)

    def request(
        self, target: str | bytes = "/", method: str = "GET", headers: dict[str, str] | None = None
    ) -> Answer:
        return request(self.port, target, method, headers, host=self.host)

    def wait_for(self, wanted: str | re.Pattern[str]) -> bool:
        """Read its output up to the line ``wanted`` (text or pattern); False if it never came."""
        seen = wait_for_line(self.process, wanted, timeout=OUTPUT_SECONDS)
        self.printed += seen
        return bool(seen) and (
            seen[-1] == wanted if isinstance(wanted, str) else bool(wanted.fullmatch(seen[-1]))
        )

    def read_until(self, pattern: re.Pattern[str], count: int) -> list[str]:
        """Its output read until it printed ``count`` lines matching ``pattern`` in all: those lines."""
        printed = [line for line in self.printed if pattern.fullmatch(line)]
        self.printed += read_until(self.process, pattern, count - len(printed))
        return [line for line in self.printed if pattern.fullmatch(line)]

    def stop(self, sig: int = signal.SIGINT, *, group: bool = False) -> tuple[int, str, str]:
        """Signal it as ``kill`` does (``group``: every process of its group, as Ctrl-C in its
        terminal does) and wait: (exit status, stdout, stderr). One still running
        SERVER_STOP_SECONDS later is killed, with every process it started: its status is -9."""
        if group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        try:
            stdout, stderr = self.process.communicate(timeout=SERVER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            kill_all(self.process, own_session=self.own_session)
            stdout, stderr = self.process.communicate()
        self.printed += lines(stdout)
        return self.process.returncode, stdout, stderr

    def close(self) -> None:
        """Kill it, and every process it started, if it still runs (a test that failed half-way)."""
        end_for_good(self.process, own_session=self.own_session)


def kill_every(pids: list[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_all(process: subprocess.Popen[str], *, own_session: bool) -> None:
    """Kill a program that still runs, every process it started and, if it has one of its own,
    its process group."""
    if process.poll() is None:
        kill_every([process.pid, *descendants(process.pid)])
        if own_session:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def end_for_good(process: subprocess.Popen[str], *, own_session: bool) -> None:
    """``kill_all``, then read what is left of its output."""
    kill_all(process, own_session=own_session)
    with suppress(subprocess.TimeoutExpired):
        process.communicate(timeout=SERVER_STOP_SECONDS)


@contextmanager
def serving(script: str, url: str, **options) -> Iterator[Server]:
    """A ``Server`` (the same arguments), killed at the end if it still runs."""
    server = Server(script, url, **options)
    try:
        yield server
    finally:
        server.close()


@contextmanager
def running(url: str) -> Iterator[Server]:
    """``python 9_stock.py``, which must stop cleanly on Ctrl-C, having printed nothing, its workers gone."""
    with serving("9_stock.py", url) as server:
        yield server
        assert server.stop() == (0, "", "")
        assert not any(is_running(worker) for worker in server.workers)
