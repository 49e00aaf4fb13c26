"""Task 10 in one process: the seat API's answers, its Lua seat-taking and its jobs, on fakeredis.

The API runs in Flask's test client; a burst SimpleWorker runs the jobs here. What needs
several processes and a real Redis (the processor process, concurrency) is in
test_seat_server.py.
"""

from __future__ import annotations

import importlib
import os
import signal
import time
from collections.abc import Iterator

from course import expected, web_jobs
from course.connection import CONNECTED
from course.jobs import SERIALIZER, course_queue

import fakeredis
import pytest
import redis
from flask.testing import FlaskClient
from rq import Queue, SimpleWorker

from tests.support import printed_lines, run_python

seat = importlib.import_module("100_seat")

pytestmark = pytest.mark.timeout(60)

# Bounds a broken test; on fakeredis an event takes milliseconds.
EVENTS_TIMEOUT_SECONDS = 10
JSON = "application/json"


@pytest.fixture
def run_reservations_here(seat_server) -> Iterator:
    """Run the queued reservations in this process; put back the signal handlers RQ sets."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    connection = fakeredis.FakeRedis(server=seat_server)

    def run() -> None:
        queue = course_queue(expected.SEAT_QUEUE, connection)
        SimpleWorker([queue], connection=connection, serializer=SERIALIZER).work(burst=True)

    yield run
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def body_of(client: FlaskClient, path: str, method: str = "GET") -> tuple[int, str, str]:
    response = client.open(path, method=method)
    return response.status_code, response.content_type, response.get_data(as_text=True)


# The course's functions and its answers -----------------------------------------------------


def test_reserve_seat_sets_and_get_current_available_seats_reads(seat_db, seat_server):
    seat.reserve_seat(7)

    assert seat_db.get("available_seats") == "7"
    assert seat.get_current_available_seats() == 7


def test_launch_on_a_fresh_redis_sets_50_seats_and_enables_reservations(seat_db, seat_server):
    seat.get_current_available_seats()

    assert seat.get_current_available_seats() == expected.INITIAL_SEATS
    assert seat_db.get("reservation_enabled") == "true"


@pytest.mark.parametrize(("seats", "enabled"), [("20", "true"), ("0", "false"), ("0", "true")])
def test_launch_keeps_the_seats_redis_holds(seat_db, seat_server, seats, enabled):
    """A second server, or one restarted, must not hand out the seats again."""
    seat_db.set("available_seats", seats)
    seat_db.set("reservation_enabled", enabled)

    seat.get_current_available_seats()

    assert (seat_db.get("available_seats"), seat_db.get("reservation_enabled")) == (seats, enabled)


@pytest.mark.parametrize("path", ["/available_seats", "/reserve_seat", "/process"])
def test_every_route_sets_up_a_redis_that_holds_no_seats_yet(
    seat_server, seat_db, seat_processors_started, path
):
    """``flask --app 100_seat run`` has no launch, and a Redis may come back empty: the route sets up."""
    client = seat.app.test_client()

    assert client.get(path).status_code == 200

    assert (seat_db.get("available_seats"), seat_db.get("reservation_enabled")) == ("50", "true")


def test_the_course_session_answers_the_course_bodies(seat_client):
    for path, wanted in expected.SEAT_SESSION:
        assert body_of(seat_client, path) == (200, JSON, wanted), path


def test_a_reservation_is_queued_as_a_job_with_a_kue_style_id(seat_client, seat_server):
    seat_client.get("/reserve_seat")
    seat_client.get("/reserve_seat")

    queue = course_queue(expected.SEAT_QUEUE, fakeredis.FakeRedis(server=seat_server))
    jobs = [queue.fetch_job(job_id) for job_id in queue.job_ids]
    assert [job.id for job in jobs] == ["1", "2"]
    # JSON keeps the job's one argument, its data, in a list.
    assert [(job.func_name, job.args) for job in jobs] == [("100_seat.reserve_seat_job", [{}])] * 2


def test_reservations_are_blocked_when_redis_says_so(seat_client, seat_db):
    seat_db.set("reservation_enabled", "false")

    assert body_of(seat_client, "/reserve_seat") == (200, JSON, expected.RESERVATION_BLOCKED)
    assert Queue(expected.SEAT_QUEUE, connection=seat_db).count == 0


def test_a_reservation_that_cannot_be_queued_failed(seat_client, monkeypatch):
    def refused(function_name: str, data: dict) -> str:
        raise redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")

    monkeypatch.setattr(seat.jobs, "enqueue", refused)

    assert body_of(seat_client, "/reserve_seat") == (200, JSON, expected.RESERVATION_FAILED)


def test_without_redis_every_route_is_a_json_503_and_nothing_starts(
    seat_client, seat_server, seat_processors_started
):
    seat_server.connected = False

    for path in ("/available_seats", "/reserve_seat", "/process"):
        assert body_of(seat_client, path) == (503, JSON, '{"error":"Service Unavailable"}'), path
    assert seat_processors_started == []

    seat_server.connected = True
    assert body_of(seat_client, "/reserve_seat") == (200, JSON, expected.RESERVATION_IN_PROCESS)


def test_a_reservation_refused_by_a_redis_out_of_memory_failed(seat_client, seat_db, monkeypatch):
    def out_of_memory() -> str:
        raise redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")

    monkeypatch.setattr(seat, "admit_reservation", out_of_memory)

    assert body_of(seat_client, "/reserve_seat") == (200, JSON, expected.RESERVATION_FAILED)
    assert Queue(expected.SEAT_QUEUE, connection=seat_db).count == 0


SEATS_NOT_A_NUMBER = (
    '{"error":"available_seats in Redis does not hold a number (make reset restores the course\'s state)"}'
)


@pytest.mark.parametrize("seats", ["fifty", "2.5"])
def test_seats_changed_by_hand_to_no_number_are_a_json_500_on_every_route(seat_client, seat_db, seats):
    seat_db.set("available_seats", seats)

    for path in ("/available_seats", "/reserve_seat", "/process"):
        assert body_of(seat_client, path) == (500, JSON, SEATS_NOT_A_NUMBER), path
    assert seat_db.get("available_seats") == seats
    assert Queue(expected.SEAT_QUEUE, connection=seat_db).count == 0


def test_a_reservation_job_finding_seats_that_are_no_number_fails_and_says_why(
    seat_client, seat_server, seat_db, run_reservations_here
):
    assert body_of(seat_client, "/reserve_seat") == (200, JSON, expected.RESERVATION_IN_PROCESS)
    seat_db.set("available_seats", "fifty")
    [job_id] = Queue(expected.SEAT_QUEUE, connection=seat_db).job_ids

    run_reservations_here()

    job = course_queue(expected.SEAT_QUEUE, fakeredis.FakeRedis(server=seat_server)).fetch_job(job_id)
    assert job.get_status() == "failed"
    assert "available_seats in Redis does not hold a number" in job.latest_result().exc_string
    assert seat_db.get("available_seats") == "fifty"


# HEAD, and the pending reservations ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/reserve_seat", "/process"])
def test_a_head_on_a_route_that_acts_is_a_json_405_and_does_nothing(
    seat_client, seat_db, seat_processors_started, path
):
    response = seat_client.head(path)

    assert (response.status_code, response.content_type, response.headers["Allow"]) == (405, JSON, "GET")
    assert Queue(expected.SEAT_QUEUE, connection=seat_db).count == 0
    assert seat_processors_started == []
    assert seat_db.get("available_seats") == "50"


def test_a_head_on_the_seats_answers_the_headers_of_a_get(seat_client):
    response = seat_client.head("/available_seats")
    assert (response.status_code, response.content_type, response.get_data()) == (200, JSON, b"")
    assert response.content_length == len(expected.available_seats_body(expected.INITIAL_SEATS))


def test_a_foreign_host_is_a_json_400_that_queues_and_starts_nothing(
    seat_client, seat_db, seat_processors_started
):
    for path in ("/reserve_seat", "/process", "/available_seats"):
        response = seat_client.get(path, headers={"Host": "attacker.example"})
        assert (response.status_code, response.get_data(as_text=True)) == (400, '{"error":"Bad Request"}')
    assert Queue(expected.SEAT_QUEUE, connection=seat_db).count == 0
    assert seat_processors_started == []


def test_the_queue_holds_at_most_as_many_reservations_as_seats_left(seat_client, seat_db):
    seat.reserve_seat(3)

    answers = [body_of(seat_client, "/reserve_seat")[2] for _ in range(5)]

    assert answers == [expected.RESERVATION_IN_PROCESS] * 3 + [expected.RESERVATION_FAILED] * 2
    assert Queue(expected.SEAT_QUEUE, connection=seat_db).count == 3


def test_process_answers_at_once_and_starts_this_process_processor(seat_client, seat_processors_started):
    assert body_of(seat_client, "/process") == (200, JSON, expected.QUEUE_PROCESSING)
    assert seat_processors_started == [True]


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/seats", 404, '{"error":"Not Found"}'),
        ("GET", "/reserve_seat/1", 404, '{"error":"Not Found"}'),
        ("POST", "/reserve_seat", 405, '{"error":"Method Not Allowed"}'),
        ("DELETE", "/available_seats", 405, '{"error":"Method Not Allowed"}'),
    ],
)
def test_bad_requests_are_answered_in_json(seat_client, method, path, status, body):
    assert body_of(seat_client, path, method) == (status, JSON, body)


# Taking a seat ------------------------------------------------------------------------------


def test_taking_seats_stops_at_0_and_the_last_one_blocks_reservations(seat_db, seat_server):
    seat.reserve_seat(2)
    seat_db.set("reservation_enabled", "true")

    assert seat.take_seat()
    assert (seat_db.get("available_seats"), seat_db.get("reservation_enabled")) == ("1", "true")
    assert seat.take_seat()
    assert (seat_db.get("available_seats"), seat_db.get("reservation_enabled")) == ("0", "false")
    assert not seat.take_seat()
    assert seat_db.get("available_seats") == "0"


def test_no_seat_is_taken_when_none_was_ever_set(seat_db, seat_server):
    assert not seat.take_seat()
    assert seat_db.get("available_seats") is None


def test_a_job_without_a_seat_fails_with_the_course_message(seat_db, seat_server):
    seat.reserve_seat(0)

    with pytest.raises(seat.NotEnoughSeatsError, match=f"^{expected.NOT_ENOUGH_SEATS}$"):
        seat.reserve_seat_job({})


# Jobs, end to end in one process --------------------------------------------------------------


def test_the_server_prints_each_of_its_jobs_completed_or_failed(
    seat_client, seat_db, seat_server, run_reservations_here, capsys
):
    seat.reserve_seat(3)
    for _ in range(3):
        assert body_of(seat_client, "/reserve_seat")[2] == expected.RESERVATION_IN_PROCESS
    seat.reserve_seat(2)  # another server's processor took one meanwhile; another server queued one
    another_server = fakeredis.FakeRedis(server=seat_server)
    course_queue(expected.SEAT_QUEUE, another_server).enqueue(seat.JOB_FUNCTION, {}, job_id="another")

    run_reservations_here()

    assert sorted(printed_lines(capsys, 3)) == [
        "Seat reservation job 1 completed",
        "Seat reservation job 2 completed",
        f"Seat reservation job 3 failed: {expected.NOT_ENOUGH_SEATS}",
    ]
    time.sleep(5 * web_jobs.POLL_SECONDS)
    assert capsys.readouterr().out == "", "only the jobs this server queued"
    assert body_of(seat_client, "/available_seats")[2] == expected.available_seats_body(0)
    assert body_of(seat_client, "/reserve_seat")[2] == expected.RESERVATION_BLOCKED


# Whole lines from the processors --------------------------------------------------------------

# Two processes print the connected line at once into one pipe, as a processor's workers do after
# a Redis restart. With print(), 1,354 of 10,000 lines came glued to another (measured on 2 cores).
TWO_PROCESSES_PRINTING = """
import os

from course.connection import CONNECTED, say

os.fork()
for _ in range(5000):
    say(CONNECTED)
"""


def test_lines_printed_at_once_by_two_processes_stay_whole():
    printed = run_python(
        TWO_PROCESSES_PRINTING, env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=60
    ).stdout.splitlines()

    assert printed == [CONNECTED] * 10000
