"""Task 10 as a learner runs it: ``python 100_seat.py`` on a real Redis, one or two of them at once.

The course's session gives the course's bodies; 120 simultaneous reservations book exactly
the 50 seats whether one server or two serve them and however often /process is called
(the Node original booked up to 100), and a server restarted midway hands out no seat
again; the queue holds no more reservations than there are seats left (and a stated slack),
even under 2,000 requests; every server then answers that reservations are blocked;
stopping a server stops the processor it started, with no traceback. A HEAD changes
nothing; Redis away is a 503 on every route, at launch as later, and the server recovers
by itself; ``flask --app 100_seat run`` plays the course's session too.

The outcome is read from what the servers print, waiting for each line up to a bound:
no assertion depends on how fast anything is.
"""

from __future__ import annotations

import http.client
import importlib
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from course import expected, web

import pytest
import redis
from rq import Queue, Worker
from rq.registry import FinishedJobRegistry

from checker.lessons import ROOT
from tests.support import OwnRedis, Server, defunct_below, proc_stat, wait_for_workers

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
JSON = "application/json"
SERVICE_UNAVAILABLE = (503, JSON, '{"error":"Service Unavailable"}')
NOT_CONNECTED = re.compile(re.escape(expected.NOT_CONNECTED_PREFIX) + ".+")
ROUTES = ["/available_seats", "/reserve_seat", "/process"]
# A flood of reservations, as wrk gave one: many clients, each sending request after request.
FLOOD_REQUESTS = 2000
FLOOD_CLIENTS = 50


def queue_slack(servers: int) -> int:
    """How far the queue may exceed the seats left, no processor running (100_seat.py's doc):
    the requests being admitted at once, less one; each server runs THREADS_PER_WORKER per core."""
    return servers * (os.cpu_count() or 1) * web.THREADS_PER_WORKER - 1


def job_lines(printed: list[str]) -> list[str]:
    return [line for line in printed if JOB_LINE.fullmatch(line)]


@pytest.fixture
def start_seat_server(start_server, redis_url) -> Callable[..., Server]:
    """Start ``python 100_seat.py`` as a shell does (a process group of its own), once it answers.

    ``start(url)`` starts one on another Redis; ``start(command=...)`` another command, given its port.
    """

    def start(url: str = redis_url, command: Callable[[int], list[str]] | None = None) -> Server:
        return start_server("100_seat.py", url, own_session=True, command=command)

    return start


def processors(rq_redis: redis.Redis) -> list[Worker]:
    return Worker.all(queue=Queue(expected.SEAT_QUEUE, connection=rq_redis))


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
        answer = server.request("/reserve_seat")
        assert answer.status == 200, answer
        return server.port, answer.body

    with ThreadPoolExecutor(max_workers=count) as pool:
        answers = list(pool.map(reserve, range(count)))
    bodies: dict[int, Counter[str]] = {server.port: Counter() for server in servers}
    for port, body in answers:
        bodies[port][body] += 1
    return bodies


def assert_every_seat_booked_once(servers: list[Server], queued: dict[int, int]) -> None:
    """Each server printed one line per job it queued; together exactly the seats there were."""
    printed = {server.port: server.read_until(JOB_LINE, queued[server.port]) for server in servers}
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
            assert server.request("/available_seats") == (200, JSON, expected.available_seats_body(0))
            assert server.request("/reserve_seat") == (200, JSON, expected.RESERVATION_BLOCKED)


def assert_stop_cleanly(servers: list[Server], rq_redis: redis.Redis) -> None:
    """Stopped, each server printed nothing but its job lines, and its processors are gone."""
    pids = [worker.pid for worker in processors(rq_redis)]
    for server in servers:
        status, _, errors = server.stop()
        assert (status, errors) == (0, ""), errors
        assert server.printed == job_lines(server.printed)
    assert processors(rq_redis) == []
    assert not [pid for pid in pids if running(pid)]


def queued_reservations(servers: list[Server], bodies: dict[int, Counter[str]]) -> dict[int, int]:
    """The reservations each server queued: at least the seats, at most the seats and the slack."""
    queued = {port: counter[expected.RESERVATION_IN_PROCESS] for port, counter in bodies.items()}
    assert (
        expected.INITIAL_SEATS <= sum(queued.values()) <= expected.INITIAL_SEATS + queue_slack(len(servers))
    )
    return queued


def book_120_seats(servers: list[Server], process_on: list[Server], real_redis, rq_redis) -> None:
    """The issue's run: 120 reservations at once, then /process on each of ``process_on``.

    Once the queue holds a reservation for each seat, the next ones fail without being queued.
    """
    bodies = reserve_at_once(servers, RESERVATIONS)
    assert all(
        set(counter) <= {expected.RESERVATION_IN_PROCESS, expected.RESERVATION_FAILED}
        for counter in bodies.values()
    ), bodies
    queued = queued_reservations(servers, bodies)

    for server in process_on:
        assert server.request("/process") == (200, JSON, expected.QUEUE_PROCESSING)

    assert_every_seat_booked_once(servers, queued)
    assert_blocked_everywhere(servers, real_redis)
    assert_stop_cleanly(servers, rq_redis)


# The course's session -----------------------------------------------------------------------


def test_the_course_session_gives_the_course_bodies_and_takes_one_seat(start_seat_server, rq_redis):
    server = start_seat_server()

    for path, wanted in expected.SEAT_SESSION:
        assert server.request(path) == (200, JSON, wanted), path
    [line] = server.read_until(JOB_LINE, 1)

    assert expected.SEAT_JOB_COMPLETED.fullmatch(line)
    assert server.request("/available_seats") == (
        200,
        JSON,
        expected.available_seats_body(expected.INITIAL_SEATS - 1),
    )
    assert_stop_cleanly([server], rq_redis)
    assert server.printed == [line]


def test_bad_requests_get_json_from_the_real_server(start_seat_server):
    server = start_seat_server()

    assert server.request("/reserve_seats") == (404, JSON, '{"error":"Not Found"}')
    assert server.request("/reserve_seat", "POST") == (405, JSON, '{"error":"Method Not Allowed"}')


def test_a_reservation_after_process_is_processed_too(start_seat_server, rq_redis):
    """Kue's ``queue.process`` kept processing; so does the processor /process starts."""
    server = start_seat_server()
    assert server.request("/process") == (200, JSON, expected.QUEUE_PROCESSING)
    assert len(wait_for_workers(rq_redis, 1, expected.SEAT_QUEUE)) == 1

    assert server.request("/reserve_seat") == (200, JSON, expected.RESERVATION_IN_PROCESS)

    assert len(server.read_until(JOB_LINE, 1)) == 1
    assert server.request("/available_seats") == (
        200,
        JSON,
        expected.available_seats_body(expected.INITIAL_SEATS - 1),
    )


def test_a_server_started_from_another_directory_processes_its_reservations(
    start_seat_server, rq_redis, tmp_path
):
    """``python /path/to/100_seat.py`` from anywhere: its processor, a program of its own, still
    finds the course's modules and the job function."""
    script = ROOT / "100_seat.py"
    server = start_seat_server(
        command=lambda port: [
            "sh",
            "-c",
            'cd "$0" && exec "$1" "$2"',
            str(tmp_path),
            sys.executable,
            str(script),
        ]
    )

    assert server.request("/reserve_seat") == (200, JSON, expected.RESERVATION_IN_PROCESS)
    assert server.request("/process") == (200, JSON, expected.QUEUE_PROCESSING)

    assert [JOB_LINE.fullmatch(line)[2] for line in server.read_until(JOB_LINE, 1)] == ["completed"]


# 120 reservations for 50 seats ----------------------------------------------------------------


def test_120_reservations_on_one_server(start_seat_server, real_redis, rq_redis):
    server = start_seat_server()

    book_120_seats([server], [server], real_redis, rq_redis)


def test_120_reservations_on_one_server_processed_twice(start_seat_server, real_redis, rq_redis):
    server = start_seat_server()

    book_120_seats([server], [server, server], real_redis, rq_redis)


def test_120_reservations_on_two_servers_sharing_redis(start_seat_server, real_redis, rq_redis):
    servers = [start_seat_server(), start_seat_server()]

    book_120_seats(servers, servers[:1], real_redis, rq_redis)


def test_120_reservations_on_two_servers_each_processing(start_seat_server, real_redis, rq_redis):
    servers = [start_seat_server(), start_seat_server()]

    book_120_seats(servers, servers, real_redis, rq_redis)


def test_120_reservations_while_two_processors_run(start_seat_server, real_redis, rq_redis):
    """The Node original's failure: several processors at work while reservations pour in."""
    servers = [start_seat_server(), start_seat_server()]
    for server in servers:
        assert server.request("/process") == (200, JSON, expected.QUEUE_PROCESSING)
    assert len(wait_for_workers(rq_redis, 2, expected.SEAT_QUEUE)) >= 2

    bodies = reserve_at_once(servers, RESERVATIONS)

    # Once the queue holds a reservation per seat left, requests fail; once the last seat is
    # taken, they are told reservations are blocked.
    assert all(
        set(counter)
        <= {expected.RESERVATION_IN_PROCESS, expected.RESERVATION_FAILED, expected.RESERVATION_BLOCKED}
        for counter in bodies.values()
    ), bodies
    queued = {port: counter[expected.RESERVATION_IN_PROCESS] for port, counter in bodies.items()}
    assert sum(queued.values()) >= expected.INITIAL_SEATS
    assert_every_seat_booked_once(servers, queued)
    assert_blocked_everywhere(servers, real_redis)
    assert_stop_cleanly(servers, rq_redis)


# Processors: one per web process, stopped with it ---------------------------------------------


# Ctrl-C in its terminal (SIGINT to its whole group), or SIGTERM to it alone.
STOPS = {"ctrl-c": {"sig": signal.SIGINT, "group": True}, "sigterm": {"sig": signal.SIGTERM}}


@pytest.mark.parametrize("stop", STOPS.values(), ids=STOPS)
def test_stopping_a_server_stops_its_processor(start_seat_server, rq_redis, stop):
    server = start_seat_server()
    assert server.request("/process") == (200, JSON, expected.QUEUE_PROCESSING)
    [processor] = wait_for_workers(rq_redis, 1, expected.SEAT_QUEUE)

    status, _, errors = server.stop(**stop)

    assert (status, errors, server.printed) == (0, "", [])
    assert processors(rq_redis) == []
    assert not running(processor.pid)


def test_a_processor_whose_web_process_was_killed_stops_by_itself(start_seat_server, rq_redis):
    server = start_seat_server()
    assert server.request("/process") == (200, JSON, expected.QUEUE_PROCESSING)
    [processor] = wait_for_workers(rq_redis, 1, expected.SEAT_QUEUE)
    web_process = int(proc_stat(processor.pid)[1])

    os.kill(web_process, signal.SIGKILL)

    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while running(processor.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(processor.pid)
    assert processors(rq_redis) == []


def test_a_second_process_call_in_one_web_process_starts_nothing(redis_url, rq_redis, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    jobs = seat.WebJobs(seat.QUEUE_NAME, "Seat reservation job", {seat.JOB_FUNCTION})

    jobs.start_processor()
    processor = jobs.processor
    jobs.start_processor()

    assert jobs.processor is processor
    [worker] = wait_for_workers(rq_redis, 1, expected.SEAT_QUEUE)
    assert worker.pid == processor.pid
    jobs.stop_processor()
    assert processor.returncode == 0
    assert processors(rq_redis) == []


# A server restarted, a second one started: no seat is handed out again ---------------------------


def test_a_server_restarted_midway_books_no_seat_twice(start_seat_server, real_redis, rq_redis):
    """Two servers, 30 seats booked, one restarted, 90 more reservations: 50 booked in all.

    The course set 50 seats at every launch: the restart handed out 30 seats again.
    """
    first, second = start_seat_server(), start_seat_server()
    assert first.request("/process") == (200, JSON, expected.QUEUE_PROCESSING)
    assert len(wait_for_workers(rq_redis, 1, expected.SEAT_QUEUE)) == 1

    bodies = reserve_at_once([first, second], 30)
    assert all(set(counter) == {expected.RESERVATION_IN_PROCESS} for counter in bodies.values()), bodies
    assert len(first.read_until(JOB_LINE, bodies[first.port].total())) == bodies[first.port].total()
    assert len(second.read_until(JOB_LINE, bodies[second.port].total())) == bodies[second.port].total()
    status, _, errors = second.stop()
    assert (status, errors) == (0, "")
    restarted = start_seat_server()
    for server in (first, restarted):
        for _ in range(CHECKS_PER_SERVER):
            assert server.request("/available_seats") == (200, JSON, expected.available_seats_body(20))

    later = reserve_at_once([first, restarted], 90)
    for server, count in (
        (first, bodies[first.port] + later[first.port]),
        (restarted, later[restarted.port]),
    ):
        queued = count[expected.RESERVATION_IN_PROCESS]
        assert len(server.read_until(JOB_LINE, queued)) == queued

    completed = [line for server in (first, second, restarted) for line in job_lines(server.printed)]
    assert len([line for line in completed if line.endswith(" completed")]) == expected.INITIAL_SEATS
    assert FinishedJobRegistry(expected.SEAT_QUEUE, connection=rq_redis).count == expected.INITIAL_SEATS
    assert real_redis.get("available_seats") == "0"


def test_a_second_server_keeps_the_seats_the_first_one_left(start_seat_server, real_redis):
    first = start_seat_server()
    real_redis.set("available_seats", 7)

    second = start_seat_server()

    for server in (first, second):
        assert server.request("/available_seats") == (200, JSON, expected.available_seats_body(7))
    assert real_redis.get("reservation_enabled") == "true"


# A flood of reservations ------------------------------------------------------------------------


def test_a_flood_of_reservations_queues_no_more_than_the_seats_left(start_seat_server, real_redis, rq_redis):
    """2,000 requests from 50 clients: the queue never grows past the seats (and the slack).

    wrk -c100 for 15 s once queued 16,604 jobs for 50 seats, kept in Redis.
    """
    server = start_seat_server()
    queue = Queue(expected.SEAT_QUEUE, connection=rq_redis)
    longest: list[int] = []
    flooding = threading.Event()
    flooding.set()

    def watch_the_queue() -> None:
        while flooding.is_set():
            longest.append(queue.count)

    def client(requests: int) -> Counter[str]:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        answers: Counter[str] = Counter()
        try:
            for _ in range(requests):
                connection.request("GET", "/reserve_seat")
                response = connection.getresponse()
                answers[f"{response.status} {response.read().decode()}"] += 1
        finally:
            connection.close()
        return answers

    watcher = threading.Thread(target=watch_the_queue)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=FLOOD_CLIENTS) as pool:
            answers = sum(pool.map(client, [FLOOD_REQUESTS // FLOOD_CLIENTS] * FLOOD_CLIENTS), Counter())
    finally:
        flooding.clear()
        watcher.join()

    queued = answers[f"200 {expected.RESERVATION_IN_PROCESS}"]
    assert answers == {
        f"200 {expected.RESERVATION_IN_PROCESS}": queued,
        f"200 {expected.RESERVATION_FAILED}": FLOOD_REQUESTS - queued,
    }
    bound = expected.INITIAL_SEATS + queue_slack(1)
    assert expected.INITIAL_SEATS <= queued <= bound
    assert max(longest) <= bound
    assert queue.count == queued
    assert real_redis.get("available_seats") == str(expected.INITIAL_SEATS)

    assert server.request("/process") == (200, JSON, expected.QUEUE_PROCESSING)
    assert_every_seat_booked_once([server], {server.port: queued})
    assert_blocked_everywhere([server], real_redis)


# HEAD -------------------------------------------------------------------------------------------


def head(server: Server, path: str) -> tuple[int, str | None, bytes]:
    answer = server.request(path, "HEAD")
    return answer.status, answer.headers["Allow"], answer.raw


def test_a_head_changes_nothing(start_seat_server, real_redis, rq_redis):
    """``curl -I /reserve_seat`` then ``curl -I /process`` once booked a seat."""
    server = start_seat_server()

    for _ in range(CHECKS_PER_SERVER):
        assert head(server, "/reserve_seat") == (405, "GET", b"")
        assert head(server, "/process") == (405, "GET", b"")
    assert head(server, "/available_seats")[0] == 200

    assert Queue(expected.SEAT_QUEUE, connection=rq_redis).count == 0
    assert real_redis.get("course:job-ids") is None
    assert processors(rq_redis) == []
    assert server.request("/available_seats") == (
        200,
        JSON,
        expected.available_seats_body(expected.INITIAL_SEATS),
    )
    assert_stop_cleanly([server], rq_redis)


# Redis away, at launch and later ------------------------------------------------------------------


@pytest.fixture
def redis_not_started_yet(tmp_path) -> Iterator[OwnRedis]:
    """A Redis of the test's own, persistent (as redis_setup.sh's is), that the test starts itself."""
    server = OwnRedis(tmp_path, persistent=True)
    yield server
    if server.process is not None:
        server.stop()


def assert_every_route_unavailable(server: Server) -> None:
    for path in ROUTES:
        for _ in range(CHECKS_PER_SERVER):
            assert server.request(path) == SERVICE_UNAVAILABLE, path


def test_started_without_redis_it_says_so_serves_503s_and_sets_up_once_redis_answers(
    start_seat_server, redis_not_started_yet
):
    own = redis_not_started_yet
    server = start_seat_server(own.url)
    assert server.wait_for(NOT_CONNECTED), server.printed
    assert_every_route_unavailable(server)
    with redis.Redis.from_url(own.url, decode_responses=True) as client:
        own.start()
        assert server.wait_for(expected.CONNECTED), server.printed
        assert (client.get("available_seats"), client.get("reservation_enabled")) == ("50", "true")

        for path, wanted in expected.SEAT_SESSION:
            assert server.request(path) == (200, JSON, wanted), path
        assert len(server.read_until(JOB_LINE, 1)) == 1
        assert server.request("/available_seats") == (200, JSON, expected.available_seats_body(49))

        own.shut_down()  # as ./redis_setup.sh stop does: the data is saved
        assert_every_route_unavailable(server)
        own.start()
        assert server.request("/available_seats") == (200, JSON, expected.available_seats_body(49))
        assert server.request("/reserve_seat") == (200, JSON, expected.RESERVATION_IN_PROCESS)
        assert len(server.read_until(JOB_LINE, 2)) == 2
        assert client.get("available_seats") == "48"
    status, _, errors = server.stop()
    assert (status, errors) == (0, "")
    # Besides the launch's lines and the jobs', only the processor's, while Redis was away.
    assert {
        line for line in server.printed if not JOB_LINE.fullmatch(line) and line != expected.CONNECTED
    } <= {line for line in server.printed if NOT_CONNECTED.fullmatch(line)}


def test_redis_stuck_is_a_json_503_on_every_route_not_a_hang(start_seat_server, own_redis, rq_redis):
    server = start_seat_server(own_redis.url)
    assert server.request("/reserve_seat") == (
        200,
        JSON,
        expected.RESERVATION_IN_PROCESS,
    )  # its listener is up
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        assert_every_route_unavailable(server)
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    assert server.request("/available_seats") == (
        200,
        JSON,
        expected.available_seats_body(expected.INITIAL_SEATS),
    )
    assert processors(rq_redis) == []


def test_a_job_refused_by_a_redis_out_of_memory_is_a_failed_reservation(start_seat_server, own_redis):
    server = start_seat_server(own_redis.url)
    with redis.Redis.from_url(own_redis.url) as client:
        assert server.request("/available_seats") == (
            200,
            JSON,
            expected.available_seats_body(expected.INITIAL_SEATS),
        )
        client.config_set("maxmemory", 1)
        try:
            for _ in range(CHECKS_PER_SERVER):
                assert server.request("/reserve_seat") == (200, JSON, expected.RESERVATION_FAILED)
            assert server.request("/available_seats") == (
                200,
                JSON,
                expected.available_seats_body(expected.INITIAL_SEATS),
            )
        finally:
            client.config_set("maxmemory", 0)
        assert server.request("/reserve_seat") == (200, JSON, expected.RESERVATION_IN_PROCESS)


# Keys changed by hand: a JSON 500 naming the key, never a raw Lua error --------------------------

SEATS_NOT_A_COUNT = (
    '{"error":"available_seats in Redis does not hold a number (make reset restores the course\'s state)"}'
)
JOB_IDS_NOT_A_COUNT = (
    '{"error":"course:job-ids in Redis does not hold a job id counter that can grow '
    "(make reset restores the course's state)\"}"
)


def test_a_large_seat_count_is_taken_exactly(start_seat_server, real_redis, rq_redis):
    server = start_seat_server()
    real_redis.set("available_seats", "9007199254740993")

    assert server.request("/reserve_seat") == (200, JSON, expected.RESERVATION_IN_PROCESS)
    assert server.request("/process") == (200, JSON, expected.QUEUE_PROCESSING)

    assert expected.SEAT_JOB_COMPLETED.fullmatch(server.read_until(JOB_LINE, 1)[0])
    assert real_redis.get("available_seats") == "9007199254740992"
    assert server.request("/available_seats") == (200, JSON, expected.available_seats_body(9007199254740992))


def test_seats_beyond_redis_integers_are_refused_naming_the_key(start_seat_server, real_redis):
    server = start_seat_server()
    real_redis.set("available_seats", "99999999999999999999")

    for path in ROUTES:
        assert server.request(path) == (500, JSON, SEATS_NOT_A_COUNT), path
    assert real_redis.get("available_seats") == "99999999999999999999"


@pytest.mark.parametrize("counter", ["abc", "9223372036854775807"])
def test_a_poisoned_job_id_counter_is_a_json_500_naming_the_key(start_seat_server, real_redis, counter):
    """It was ``Reservation failed``, with no line in the log, and no word of what to do."""
    server = start_seat_server()
    real_redis.set("course:job-ids", counter)

    assert server.request("/reserve_seat") == (500, JSON, JOB_IDS_NOT_A_COUNT)

    status, stdout, stderr = server.stop()
    assert (status, stdout) == (0, "")
    [logged] = stderr.splitlines()
    assert logged.endswith(
        "GET /reserve_seat: course:job-ids in Redis does not hold a job id counter that can grow "
        "(make reset restores the course's state)"
    )


# Redis out of memory ------------------------------------------------------------------------------

OUT_OF_MEMORY = "command not allowed when used memory > 'maxmemory'."
RESERVED_AFTER = 3


def test_a_redis_out_of_memory_is_ridden_out_and_the_queue_processed_after(start_seat_server, own_redis):
    """The processors died on OOM, were left defunct, and the queue waited for a second /process."""
    server = start_seat_server(own_redis.url)
    with redis.Redis.from_url(own_redis.url, decode_responses=True) as client:
        assert server.request("/available_seats") == (200, JSON, expected.available_seats_body(50))
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)
        for _ in range(CHECKS_PER_SERVER):
            assert server.request("/process") == (200, JSON, expected.QUEUE_PROCESSING)
            assert server.request("/reserve_seat") == (200, JSON, expected.RESERVATION_FAILED)
        time.sleep(3)  # the processors fail to register, and are started again, for a while
        assert defunct_below(server.process.pid) == []
        client.config_set("maxmemory", 0)

        for _ in range(RESERVED_AFTER):
            assert server.request("/reserve_seat") == (200, JSON, expected.RESERVATION_IN_PROCESS)

        lines = server.read_until(JOB_LINE, RESERVED_AFTER)
        assert [JOB_LINE.fullmatch(line)[2] for line in lines] == ["completed"] * RESERVED_AFTER
        assert client.get("available_seats") == str(50 - RESERVED_AFTER)
    status, stdout, stderr = server.stop()
    assert status == 0
    assert "Traceback" not in stdout + stderr
    # One line for each refusal: the reservations' (the log), the processors' (their own line).
    for line in stderr.splitlines():
        assert OUT_OF_MEMORY in line, stderr
        assert "Reservation failed: Redis refused it" in line or line.startswith("Redis error: "), stderr


# The development server ---------------------------------------------------------------------------


def flask_run(port: int) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "100_seat", "run", "--port", str(port)]


def test_flask_run_plays_the_course_session(start_seat_server, rq_redis):
    """The README's ``flask --app 100_seat run``: the same set-up as ``python 100_seat.py``."""
    server = start_seat_server(command=flask_run)

    for path, wanted in expected.SEAT_SESSION:
        assert server.request(path) == (200, JSON, wanted), path
    assert server.wait_for(expected.SEAT_JOB_COMPLETED), server.printed
    assert server.request("/available_seats") == (
        200,
        JSON,
        expected.available_seats_body(expected.INITIAL_SEATS - 1),
    )
    server.stop()
    assert processors(rq_redis) == []
