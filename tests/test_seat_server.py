"""Task 10 as a learner runs it: ``python 100_seat.py`` on a real Redis, one or two of them at once.

The course's session gives the course's bodies; 120 simultaneous reservations book exactly
the 50 seats whether one server or two serve them and however often /process is called
(the Node original booked up to 100); every server then answers that reservations are
blocked; stopping a server stops the processor it started, with no traceback.

The outcome is read from what the servers print, waiting for each line up to a bound:
no assertion depends on how fast anything is.
"""

from __future__ import annotations

import http.client
import importlib
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import redis
from rq import Queue, Worker
from rq.worker import WorkerStatus

from course import expected
from course.lessons import ROOT, lines, script_env, start_script, stop_script, wait_for_line
from course.tour import free_port, get, wait_until_serving

seat = importlib.import_module("100_seat")

pytestmark = pytest.mark.timeout(180)

RESERVATIONS = 120
JOB_LINE = re.compile(r"Seat reservation job (\d+) (completed|failed: .+)")
FAILED_FOR_LACK_OF_SEATS = f"failed: {expected.NOT_ENOUGH_SEATS}"
# Bounds for a broken run, not expectations of speed.
EVENTS_TIMEOUT_SECONDS = 60
STARTUP_TIMEOUT_SECONDS = 30
# Enough requests that each of a server's web processes very likely answers some.
CHECKS_PER_SERVER = 8


@dataclass
class Server:
    """One ``python 100_seat.py``, and the lines it printed so far."""

    process: subprocess.Popen[str]
    port: int
    printed: list[str] = field(default_factory=list)

    def get(self, path: str) -> tuple[int, str]:
        status, _, body = get(self.port, path)
        return status, body

    def job_lines(self, count: int) -> list[str]:
        """Read its output until it printed ``count`` job lines in all (or the time is up)."""
        deadline = time.monotonic() + EVENTS_TIMEOUT_SECONDS
        while len(job_lines(self.printed)) < count and (left := deadline - time.monotonic()) > 0:
            seen = wait_for_line(self.process, JOB_LINE, timeout=left)
            self.printed += seen
            if not seen or not JOB_LINE.fullmatch(seen[-1]):
                break
        return job_lines(self.printed)

    def stop(self, stop: Callable[[subprocess.Popen[str]], None] | None = None) -> str:
        """Stop it (SIGINT to it alone, unless ``stop`` says otherwise); returns what it wrote to stderr."""
        if stop is None:
            stdout, stderr = stop_script(self.process)
        else:
            stop(self.process)
            stdout, stderr = self.process.communicate(timeout=STARTUP_TIMEOUT_SECONDS)
        self.printed += lines(stdout)
        return stderr


def job_lines(printed: list[str]) -> list[str]:
    return [line for line in printed if JOB_LINE.fullmatch(line)]


@pytest.fixture
def start_server(redis_url) -> Iterator[Callable[[], Server]]:
    """Start ``python 100_seat.py`` on a free port as a shell does (a process group of its own)."""
    started: list[subprocess.Popen[str]] = []

    def start() -> Server:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "100_seat.py"],
            cwd=ROOT,
            env=script_env(redis_url, PORT=str(port)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        assert wait_until_serving(process, port), (
            f"100_seat.py did not serve on {port}: {stop_script(process)}"
        )
        return Server(process, port)

    yield start
    for process in started:
        if process.returncode is None:
            stop_script(process)


def processors(rq_redis: redis.Redis) -> list[Worker]:
    return Worker.all(queue=Queue(seat.QUEUE_NAME, connection=rq_redis))


def wait_for_processors(rq_redis: redis.Redis, count: int) -> list[Worker]:
    """The processors, once ``count`` of them wait for jobs (or the start-up time is over).

    RQ registers a worker a moment before it installs its signal handlers: a stop sent in
    between would end it the default way, leaving it registered. Waiting for idle avoids that.
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        workers = processors(rq_redis)
        if len(workers) >= count and all(worker.get_state() == WorkerStatus.IDLE for worker in workers):
            break
        time.sleep(0.05)
    return workers


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, parent, ...), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def running(pid: int) -> bool:
    """Alive: a zombie has ended, whoever is left to reap it."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def reserve_at_once(servers: list[Server], count: int) -> dict[int, Counter[str]]:
    """``count`` GET /reserve_seat sent at the same moment, spread over the servers; bodies by port."""
    ready = threading.Barrier(count, timeout=STARTUP_TIMEOUT_SECONDS)

    def reserve(number: int) -> tuple[int, str]:
        server = servers[number % len(servers)]
        ready.wait()
        status, body = server.get("/reserve_seat")
        assert status == 200, body
        return server.port, body

    with ThreadPoolExecutor(max_workers=count) as pool:
        answers = list(pool.map(reserve, range(count)))
    bodies: dict[int, Counter[str]] = {server.port: Counter() for server in servers}
    for port, body in answers:
        bodies[port][body] += 1
    return bodies


def assert_every_seat_booked_once(servers: list[Server], queued: dict[int, int]) -> None:
    """Each server printed one line per job it queued; together exactly the seats there were."""
    printed = {server.port: server.job_lines(queued[server.port]) for server in servers}
    for server in servers:
        assert len(printed[server.port]) == queued[server.port], f"server on {server.port}: {server.printed}"
    every_line = [line for lines_of_one in printed.values() for line in lines_of_one]
    outcomes = Counter(JOB_LINE.fullmatch(line)[2] for line in every_line)
    assert outcomes == Counter(
        {
            "completed": expected.INITIAL_SEATS,
            FAILED_FOR_LACK_OF_SEATS: sum(queued.values()) - expected.INITIAL_SEATS,
        }
    )
    job_ids = [JOB_LINE.fullmatch(line)[1] for line in every_line]
    assert len(set(job_ids)) == len(job_ids)


def assert_blocked_everywhere(servers: list[Server], real_redis: redis.Redis) -> None:
    assert (real_redis.get("available_seats"), real_redis.get("reservation_enabled")) == ("0", "false")
    for server in servers:
        for _ in range(CHECKS_PER_SERVER):
            assert server.get("/available_seats") == (200, expected.available_seats_body(0))
            assert server.get("/reserve_seat") == (200, expected.RESERVATION_BLOCKED)


def assert_stop_cleanly(servers: list[Server], rq_redis: redis.Redis) -> None:
    """Stopped, each server printed nothing but its job lines, and its processors are gone."""
    pids = [worker.pid for worker in processors(rq_redis)]
    for server in servers:
        errors = server.stop()
        assert (server.process.returncode, errors) == (0, ""), errors
        assert server.printed == job_lines(server.printed)
    assert processors(rq_redis) == []
    assert not [pid for pid in pids if running(pid)]


def book_120_seats(servers: list[Server], process_on: list[Server], real_redis, rq_redis) -> None:
    """The issue's run: 120 reservations at once, then /process on each of ``process_on``."""
    bodies = reserve_at_once(servers, RESERVATIONS)
    assert all(set(counter) == {expected.RESERVATION_IN_PROCESS} for counter in bodies.values()), bodies

    for server in process_on:
        assert server.get("/process") == (200, expected.QUEUE_PROCESSING)

    queued = {port: counter[expected.RESERVATION_IN_PROCESS] for port, counter in bodies.items()}
    assert_every_seat_booked_once(servers, queued)
    assert_blocked_everywhere(servers, real_redis)
    assert_stop_cleanly(servers, rq_redis)


# The course's session -----------------------------------------------------------------------


def test_the_course_session_gives_the_course_bodies_and_takes_one_seat(start_server, rq_redis):
    server = start_server()

    for path, wanted in expected.SEAT_SESSION:
        assert server.get(path) == (200, wanted), path
    [line] = server.job_lines(1)

    assert expected.SEAT_JOB_COMPLETED.fullmatch(line)
    assert server.get("/available_seats") == (200, expected.available_seats_body(expected.INITIAL_SEATS - 1))
    assert_stop_cleanly([server], rq_redis)
    assert server.printed == [line]


def test_bad_requests_get_json_from_the_real_server(start_server):
    server = start_server()

    assert get(server.port, "/reserve_seats") == (404, "application/json", '{"error":"Not Found"}')
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", "/reserve_seat")
    response = connection.getresponse()
    assert (response.status, response.read()) == (405, b'{"error":"Method Not Allowed"}')
    connection.close()


def test_a_reservation_after_process_is_processed_too(start_server, rq_redis):
    """Kue's ``queue.process`` kept processing; so does the processor /process starts."""
    server = start_server()
    assert server.get("/process") == (200, expected.QUEUE_PROCESSING)
    assert len(wait_for_processors(rq_redis, 1)) == 1

    assert server.get("/reserve_seat") == (200, expected.RESERVATION_IN_PROCESS)

    assert len(server.job_lines(1)) == 1
    assert server.get("/available_seats") == (200, expected.available_seats_body(expected.INITIAL_SEATS - 1))


# 120 reservations for 50 seats ----------------------------------------------------------------


def test_120_reservations_on_one_server(start_server, real_redis, rq_redis):
    server = start_server()

    book_120_seats([server], [server], real_redis, rq_redis)


def test_120_reservations_on_one_server_processed_twice(start_server, real_redis, rq_redis):
    server = start_server()

    book_120_seats([server], [server, server], real_redis, rq_redis)


def test_120_reservations_on_two_servers_sharing_redis(start_server, real_redis, rq_redis):
    servers = [start_server(), start_server()]

    book_120_seats(servers, servers[:1], real_redis, rq_redis)


def test_120_reservations_on_two_servers_each_processing(start_server, real_redis, rq_redis):
    servers = [start_server(), start_server()]

    book_120_seats(servers, servers, real_redis, rq_redis)


def test_120_reservations_while_two_processors_run(start_server, real_redis, rq_redis):
    """The Node original's failure: several processors at work while reservations pour in."""
    servers = [start_server(), start_server()]
    for server in servers:
        assert server.get("/process") == (200, expected.QUEUE_PROCESSING)
    assert len(wait_for_processors(rq_redis, 2)) >= 2

    bodies = reserve_at_once(servers, RESERVATIONS)

    # Once the last seat is taken, later requests are told reservations are blocked.
    assert all(
        set(counter) <= {expected.RESERVATION_IN_PROCESS, expected.RESERVATION_BLOCKED}
        for counter in bodies.values()
    ), bodies
    queued = {port: counter[expected.RESERVATION_IN_PROCESS] for port, counter in bodies.items()}
    assert sum(queued.values()) >= expected.INITIAL_SEATS
    assert_every_seat_booked_once(servers, queued)
    assert_blocked_everywhere(servers, real_redis)
    assert_stop_cleanly(servers, rq_redis)


# Processors: one per web process, stopped with it ---------------------------------------------


def ctrl_c(process: subprocess.Popen[str]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to every process of the foreground group."""
    os.killpg(process.pid, signal.SIGINT)


def sigterm(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)


@pytest.mark.parametrize("stop", [ctrl_c, sigterm], ids=["ctrl-c", "sigterm"])
def test_stopping_a_server_stops_its_processor(start_server, rq_redis, stop):
    server = start_server()
    assert server.get("/process") == (200, expected.QUEUE_PROCESSING)
    [processor] = wait_for_processors(rq_redis, 1)

    errors = server.stop(stop)

    assert (server.process.returncode, errors, server.printed) == (0, "", [])
    assert processors(rq_redis) == []
    assert not running(processor.pid)


def test_a_processor_whose_web_process_was_killed_stops_by_itself(start_server, rq_redis):
    server = start_server()
    assert server.get("/process") == (200, expected.QUEUE_PROCESSING)
    [processor] = wait_for_processors(rq_redis, 1)
    web_process = int(proc_stat(processor.pid)[1])

    os.kill(web_process, signal.SIGKILL)

    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while running(processor.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(processor.pid)
    assert processors(rq_redis) == []


def test_a_second_process_call_in_one_web_process_starts_nothing(redis_url, rq_redis, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    queue_processor = seat.QueueProcessor()

    queue_processor.ensure_started()
    queue_processor.ensure_started()

    [child] = [child for child in multiprocessing.active_children() if child.name == seat.QueueProcessor.NAME]
    assert len(wait_for_processors(rq_redis, 1)) == 1
    child.terminate()
    child.join(STARTUP_TIMEOUT_SECONDS)
    assert child.exitcode == 0
    assert processors(rq_redis) == []


def test_without_redis_it_says_so_and_exits_1(dead_redis_url):
    process = start_script("100_seat.py", dead_redis_url, PORT=str(free_port()))
    stdout, stderr = process.communicate(timeout=STARTUP_TIMEOUT_SECONDS)

    assert process.returncode == 1
    assert [line.startswith(expected.NOT_CONNECTED_PREFIX) for line in lines(stdout)] == [True]
    assert "Traceback" not in stderr
