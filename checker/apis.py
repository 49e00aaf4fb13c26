"""Tasks 9 and 10 of the course run: the two APIs, their curl sessions and their reservations under load.

Answers are judged on their HTTP status and their body as JSON (``jsonify``'s trailing
newline, whitespace and key order do not count). Beyond the course's sessions, 100
simultaneous reservations are sent, which the course's JavaScript oversold: overselling is a
warning, not a failure.
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from course import expected

import redis

from checker.compare import same_json
from checker.lessons import wait_for_line
from checker.report import Outcome
from checker.run import PROJECT, Lessons
from checker.tasks import empty_queue, free_port

SERVER_START_SECONDS = 30
COURSE_PORT = 1245


def get(port: int, path: str) -> tuple[int, str, str]:
    """One HTTP GET, as curl does: status, content type, body (bounded: the server is someone else's).

    No answer (refused, cut, or none within 10 s) is status 0 and the error as the body.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return (
            response.status,
            response.getheader("Content-Type", ""),
            response.read(1 << 16).decode(errors="replace"),
        )
    except (OSError, http.client.HTTPException) as error:
        return 0, "", f"no answer: {error}"
    finally:
        connection.close()


def simultaneous_gets(port: int, path: str, count: int) -> list[str]:
    """``count`` GETs sent at once, each on its own connection: their bodies (``""`` for a failed one)."""
    start = threading.Barrier(count)
    bodies = [""] * count

    def request(index: int) -> None:
        start.wait()
        bodies[index] = get(port, path)[2]

    threads = [threading.Thread(target=request, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return bodies


def count_json(bodies: list[str], wanted: str) -> int:
    return sum(same_json(body, wanted) for body in bodies)


def wait_until_serving(server: subprocess.Popen[str], port: int) -> bool:
    """True once the port accepts connections while the server runs; False if it never does in time."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def play_session(outcome: Outcome, port: int, session: list[tuple[str, str]]) -> None:
    """Request each path like the course's curl session: the status must be 200, the body the course's JSON.

    A body that is the course's as JSON is shown as the course writes it; any other is shown
    as it came, with its status.
    """
    wanted = []
    output = []
    for path, wanted_body in session:
        status, content_type, body = get(port, path)
        command = f"$ curl localhost:{COURSE_PORT}{path}"
        wanted += [command, wanted_body]
        answer = wanted_body if status == 200 and same_json(body, wanted_body) else body.rstrip("\n")
        if status != 200:
            answer = f"{answer}    (HTTP {status}, {content_type or 'no content type'})"
        output += [command, answer]
    outcome.compare("curl", output, wanted)


@contextmanager
def serving(
    url: str, script: str, lessons: Lessons, outcome: Outcome
) -> Iterator[tuple[int | None, subprocess.Popen[str], list[str]]]:
    """Start an API server on the course's port (in the sandbox) or a free one given in PORT.

    Gives the port it serves on (None if it never did), the server, and a list for the lines
    read from its output meanwhile; at the end, stops it and shows all it printed.
    """
    port = lessons.api_port or free_port()
    server = lessons.start(script, url, PORT=str(port))
    server_lines: list[str] = []
    try:
        serving_port = port if wait_until_serving(server, port) else None
        if serving_port is None:
            outcome.errors.append(f"{script} did not start serving on port {port}")
        yield serving_port, server, server_lines
    finally:
        ran = lessons.stop(f"{script} (server)", server, server_lines)
        outcome.show(ran.program, ran.shown)
        outcome.show_stderr(script, ran.stderr)
        outcome.errors.extend(ran.errors)


def run_api(
    url: str, script: str, play: Callable[[Outcome, int, subprocess.Popen[str]], list[str]], lessons: Lessons
) -> Outcome:
    """Start an API server, let ``play`` talk to it, stop it and show its output."""
    outcome = Outcome()
    with serving(url, script, lessons, outcome) as (port, server, server_lines):
        if port is not None:
            server_lines += play(outcome, port, server)
    return outcome


def clear_stock(url: str) -> None:
    """Every product back in stock: no ``item.N`` key."""
    with redis.Redis.from_url(url) as client:
        client.delete(*(expected.stock_key(product["itemId"]) for product in expected.PRODUCTS))


def other_answers(bodies: list[str], expected_answers: int) -> str:
    """How many of the simultaneous requests got some other answer, or none (a timeout, an error)."""
    others = len(bodies) - expected_answers
    return f", {others} other answers or none" if others else ""


def probe_stock_overselling(outcome: Outcome, url: str, port: int) -> None:
    """100 simultaneous reservations of item 1 (4 in stock): more than 4 confirmed is overselling."""
    clear_stock(url)
    in_stock = expected.PRODUCTS[0]["initialAvailableQuantity"]
    bodies = simultaneous_gets(port, "/reserve_product/1", expected.SIMULTANEOUS_REQUESTS)
    confirmed = count_json(bodies, expected.RESERVATION_CONFIRMED)
    refused = count_json(bodies, expected.NOT_ENOUGH_STOCK)
    outcome.show(
        "100 simultaneous reservations",
        [
            f"{expected.SIMULTANEOUS_REQUESTS} requests for item 1, {in_stock} in stock:"
            f" {confirmed} confirmed, {refused} not enough stock{other_answers(bodies, confirmed + refused)}"
        ],
    )
    if confirmed > in_stock:
        outcome.warnings.append(
            f"reservations oversell: {confirmed} of {expected.SIMULTANEOUS_REQUESTS} simultaneous requests"
            f" were confirmed for {in_stock} units (the course's JavaScript oversells the same way: it reads"
            " the stock, then writes it). Make the check and the take one step in Redis (a Lua script)."
        )


def task_stock(url: str, lessons: Lessons = PROJECT) -> Outcome:
    clear_stock(url)  # the course's session starts with every item in stock

    def play(outcome: Outcome, port: int, _server: subprocess.Popen[str]) -> list[str]:
        play_session(outcome, port, expected.STOCK_SESSION)
        probe_stock_overselling(outcome, url, port)
        return []

    return run_api(url, "9_stock.py", play, lessons)


def fresh_seats(url: str) -> None:
    """A launch as on a new database: no seat count, no flag, no queued reservation."""
    empty_queue(url, expected.SEAT_QUEUE)
    with redis.Redis.from_url(url) as client:
        client.delete(expected.AVAILABLE_SEATS_KEY, expected.RESERVATION_ENABLED_KEY)


# The server's lines for a seat job's outcome, whatever the job's id (RQ's UUIDs included).
SEAT_JOB_COMPLETED = re.compile(r"Seat reservation job \S+ completed")
SEAT_JOB_OUTCOME = re.compile(r"Seat reservation job \S+ (completed|failed: .*)")
SEAT_JOB_IDLE_SECONDS = 5


def seat_job_lines(server: subprocess.Popen[str], count: int, timeout: float) -> list[str]:
    """What the server prints until ``count`` job outcome lines came, ``timeout`` is over, or no
    outcome came for SEAT_JOB_IDLE_SECONDS (a solution may leave queued jobs unprocessed)."""
    printed: list[str] = []
    deadline = time.monotonic() + timeout
    while sum(map(bool, map(SEAT_JOB_OUTCOME.fullmatch, printed))) < count:
        left = min(deadline - time.monotonic(), SEAT_JOB_IDLE_SECONDS)
        seen = wait_for_line(server, SEAT_JOB_OUTCOME, timeout=left) if left > 0 else []
        printed += seen
        if not seen or not SEAT_JOB_OUTCOME.fullmatch(seen[-1]):
            break
    return printed


def probe_seat_overselling(url: str, lessons: Lessons = PROJECT) -> Outcome:
    """On a server just launched (50 seats): 100 simultaneous reservations, then /process twice at once."""
    outcome = Outcome()
    fresh_seats(url)
    with serving(url, "100_seat.py", lessons, Outcome()) as (port, server, server_lines):
        if port is None:
            return outcome
        answers = simultaneous_gets(port, "/reserve_seat", expected.SIMULTANEOUS_REQUESTS)
        queued = count_json(answers, expected.RESERVATION_IN_PROCESS)
        # The course's other answers: a queue bounded by the seats left, or reservations blocked.
        refused = count_json(answers, expected.RESERVATION_FAILED) + count_json(
            answers, expected.RESERVATION_BLOCKED
        )
        simultaneous_gets(port, "/process", expected.SEAT_PROCESS_CALLS)
        server_lines += seat_job_lines(server, queued, lessons.timeout)
        completed = sum(bool(SEAT_JOB_COMPLETED.fullmatch(line)) for line in server_lines)
        _, _, seats = get(port, "/available_seats")
    outcome.show(
        "100 simultaneous reservations",
        [
            f"{expected.SIMULTANEOUS_REQUESTS} requests for {expected.INITIAL_SEATS} seats:"
            f" {queued} queued, {refused} refused{other_answers(answers, queued + refused)};"
            " then /process twice at once:"
            f" {completed} completed, then {seats.strip()}"
        ],
    )
    if completed > expected.INITIAL_SEATS:
        outcome.warnings.append(
            f"reservations oversell: {completed} reservations completed for {expected.INITIAL_SEATS} seats"
            " (the course's JavaScript oversells the same way when /process runs twice: each job reads the"
            " seats, then writes them). Make the check and the take one step in Redis (a Lua script)."
        )
    return outcome


def task_seats(url: str, lessons: Lessons = PROJECT) -> Outcome:
    fresh_seats(url)

    def play(outcome: Outcome, port: int, server: subprocess.Popen[str]) -> list[str]:
        play_session(outcome, port, expected.SEAT_SESSION)
        printed = wait_for_line(server, SEAT_JOB_COMPLETED, timeout=lessons.timeout)
        if not printed or not SEAT_JOB_COMPLETED.fullmatch(printed[-1]):
            outcome.problems.append("the server never printed 'Seat reservation job ID completed'")
        status, _, body = get(port, "/available_seats")
        if status != 200 or not same_json(body, expected.available_seats_body(expected.INITIAL_SEATS - 1)):
            outcome.problems.append(
                f"after one reservation, /available_seats answered {status} {body.strip()}"
            )
        return printed

    outcome = run_api(url, "100_seat.py", play, lessons)
    outcome.add(probe_seat_overselling(url, lessons))
    return outcome
