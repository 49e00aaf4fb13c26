"""Task 9 as a learner runs it: ``python 9_stock.py`` on a real Redis, spoken to over HTTP.

The course's curl session; 200 simultaneous reservations of 2 units, served by one and by
two server processes (fakeredis cannot show a race); every bad input answered in JSON, any
number that names no product the course's "Product not found"; a HEAD takes nothing;
Redis stopped, stuck and back again, and away at launch; Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from course import expected

import pytest
import redis

from checker.lessons import ROOT, script_env, wait_for_line
from tests.support import (
    MALFORMED_IDS,
    NOT_PRODUCT_IDS,
    OTHER_METHODS,
    UNKNOWN_PATHS,
    OwnRedis,
    Server,
    children,
    free_port,
    is_running,
    running,
    start_program,
    wait_for_exit,
)

pytestmark = pytest.mark.timeout(120)

JSON = "application/json"
READY_TIMEOUT_SECONDS = 20
# The spec's bound for an answer while Redis is down; the server's own timeouts are 0.5 s.
REDIS_DOWN_ANSWER_SECONDS = 2
SIMULTANEOUS = 200
NOT_CONNECTED = re.compile(re.escape(expected.NOT_CONNECTED_PREFIX) + ".+")
UNITS = 2


@pytest.fixture
def server(redis_url) -> Iterator[Server]:
    with running(redis_url) as server:
        yield server


# The course's session -----------------------------------------------------------------------


def test_the_course_curl_session_gives_the_spec_bodies(server, real_redis):
    for path, body in expected.STOCK_SESSION:
        assert server.request(path) == (200, JSON, body), path
    assert real_redis.get("item.1") == "0"


# Races --------------------------------------------------------------------------------------


def reserve_all_at_once(servers: list[Server]) -> Counter:
    """SIMULTANEOUS connections opened first, then one reservation each, all released together."""
    barrier = threading.Barrier(SIMULTANEOUS)

    def reserve(index: int) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", servers[index % len(servers)].port, timeout=30)
        try:
            connection.connect()
            barrier.wait(timeout=30)
            connection.request("GET", "/reserve_product/1")
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    with ThreadPoolExecutor(SIMULTANEOUS) as pool:
        return Counter(pool.map(reserve, range(SIMULTANEOUS)))


def assert_exactly_the_units_are_confirmed(servers: list[Server], real_redis: redis.Redis) -> None:
    for _ in range(3):
        real_redis.set("item.1", UNITS)
        answers = reserve_all_at_once(servers)
        assert answers == {
            (200, expected.RESERVATION_CONFIRMED): UNITS,
            (200, expected.NOT_ENOUGH_STOCK): SIMULTANEOUS - UNITS,
        }
        assert real_redis.get("item.1") == "0"


def test_simultaneous_reservations_on_one_server_confirm_only_the_units(server, real_redis):
    assert_exactly_the_units_are_confirmed([server], real_redis)


def test_simultaneous_reservations_on_two_servers_confirm_only_the_units(redis_url, real_redis):
    with running(redis_url) as first, running(redis_url) as second:
        assert_exactly_the_units_are_confirmed([first, second], real_redis)


# Every answer is JSON -----------------------------------------------------------------------


def test_every_bad_input_gets_a_json_answer_and_no_5xx(server, real_redis):
    cases = [
        *(
            (f"{route}/{item_id}", "GET", 404)
            for route in ("/list_products", "/reserve_product")
            for item_id in MALFORMED_IDS
        ),
        *((path, "GET", 404) for path in UNKNOWN_PATHS),
        *(("/reserve_product/1", method, 405) for method in OTHER_METHODS),
        *(("/list_products", method, 405) for method in OTHER_METHODS),
    ]
    for path, method, status in cases:
        answer_status, content_type, body = server.request(path, method)
        assert (answer_status, content_type) == (status, JSON), (method, path)
        assert set(json.loads(body)) == {"error"}, (method, path)
    assert real_redis.get("item.1") is None


def test_any_number_that_names_no_product_is_the_course_not_found(server, real_redis):
    for route in ("/list_products", "/reserve_product"):
        for item_id in NOT_PRODUCT_IDS:
            assert server.request(f"{route}/{item_id}") == (200, JSON, expected.PRODUCT_NOT_FOUND)
    assert real_redis.keys() == []


def test_a_head_takes_no_unit(server, real_redis):
    """``curl -I /reserve_product/2`` once took a unit."""
    for path in ("/reserve_product/2", "/reserve_product/12", "/list_products/2"):
        answer = server.request(path, "HEAD")
        wanted = (200, None) if path.startswith("/list_products") else (405, "GET")
        assert (answer.status, answer.headers["Allow"]) == wanted, path
        assert answer.content_type == JSON
    assert real_redis.get("item.2") is None
    assert server.request("/list_products/2").json()["currentQuantity"] == 10


# Redis going away and coming back -----------------------------------------------------------


def assert_a_quick_503(server: Server, path: str) -> None:
    started = time.monotonic()
    answer = server.request(path)
    assert time.monotonic() - started < REDIS_DOWN_ANSWER_SECONDS
    assert answer == (503, JSON, '{"error":"Service Unavailable"}')


def test_redis_stopped_is_a_json_503_and_its_return_is_noticed(own_redis):
    with running(own_redis.url) as server:
        assert server.request("/reserve_product/1") == (200, JSON, expected.RESERVATION_CONFIRMED)
        own_redis.stop()
        # Every route, also those whose answer reads nothing in Redis.
        for path in ("/list_products/1", "/reserve_product/1", "/list_products", "/list_products/12"):
            assert_a_quick_503(server, path)

        own_redis.start()  # empty: it kept nothing
        assert server.request("/list_products/1") == (200, JSON, expected.product_body(4))
        assert server.request("/reserve_product/1") == (200, JSON, expected.RESERVATION_CONFIRMED)
        assert server.request("/list_products/1") == (200, JSON, expected.product_body(3))


def test_started_without_redis_it_says_so_serves_503s_and_recovers(tmp_path):
    """It once printed nothing at all: the course's lines say what is going on."""
    own = OwnRedis(tmp_path, persistent=False)
    with running(own.url) as server:
        [line] = wait_for_line(server.process, NOT_CONNECTED)
        assert line.startswith(expected.NOT_CONNECTED_PREFIX)
        for path in ("/list_products/1", "/reserve_product/1", "/list_products"):
            assert_a_quick_503(server, path)
        own.start()
        try:
            assert wait_for_line(server.process, expected.CONNECTED)[-1:] == [expected.CONNECTED]
            assert server.request("/reserve_product/1") == (200, JSON, expected.RESERVATION_CONFIRMED)
            assert server.request("/list_products/1") == (200, JSON, expected.product_body(3))
        finally:
            own.stop()


def test_redis_stuck_is_a_json_503_not_a_hang(own_redis):
    with running(own_redis.url) as server:
        assert server.request("/list_products/1") == (200, JSON, expected.product_body(4))
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        try:
            assert_a_quick_503(server, "/list_products/1")
        finally:
            os.kill(own_redis.process.pid, signal.SIGCONT)
        assert server.request("/list_products/1") == (200, JSON, expected.product_body(4))


# Stopping -----------------------------------------------------------------------------------


def start_line(port: int) -> str:
    return f"Serving on http://127.0.0.1:{port}\n"


def test_it_says_where_it_serves_on_stderr_and_nothing_on_stdout(start_server, redis_url):
    """As ``flask run`` does; stdout keeps the course's lines only."""
    server = start_server("9_stock.py", redis_url)
    assert server.start_line + "\n" == start_line(server.port)
    assert server.stop() == (0, "", "")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_server_and_its_workers_quietly(start_server, redis_url, sig):
    server = start_server("9_stock.py", redis_url)
    assert len(server.workers) == os.cpu_count()
    assert server.stop(sig) == (0, "", "")
    assert not any(is_running(worker) for worker in server.workers)


def test_ctrl_c_in_a_terminal_stops_it_every_time(start_server, redis_url):
    # A terminal's Ctrl-C signals every process of the group at once; granian's workers,
    # signalled twice (by the terminal, then by their main process), could hang.
    for _ in range(5):
        server = start_server("9_stock.py", redis_url, own_session=True)
        server.request("/list_products/1")
        assert server.stop(signal.SIGINT, group=True) == (0, "", "")
        assert not any(is_running(worker) for worker in server.workers)


SLOW_APP = """
import time
from pathlib import Path

from course.web import json_api, server_settings

from flask import Flask
from granian import Granian
from granian.constants import Interfaces

if __name__ != "__main__":
    time.sleep(5)  # each worker takes its time to import the app
app = json_api(Flask(__name__))

if __name__ == "__main__":
    settings = server_settings(None)
    Granian("slow_app:app", interface=Interfaces.WSGI, working_dir=Path(__file__).parent, **settings).serve()
"""


def test_a_stop_while_the_workers_start_is_not_lost(tmp_path, dead_redis_url):
    script = tmp_path / "slow_app.py"
    script.write_text(SLOW_APP)
    port = free_port()
    process = start_program(
        [sys.executable, str(script)],
        script_env(dead_redis_url, PORT=str(port), PYTHONPATH=str(ROOT)),
        own_session=False,
    )
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while len(children(process.pid)) < os.cpu_count():  # the workers are importing the app
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    # A bound for a broken stop, generous for a loaded machine (the suite runs in parallel).
    assert wait_for_exit(process, children(process.pid), timeout=20) == (0, "", start_line(port))


# Large numbers: counted exactly, in Redis's own integers ------------------------------------

# (units before, units after one reservation); Lua's doubles would give 1.2345678901234568e+17
# for the first, and lose two units of the second.
EXACT_COUNTS = [
    ("123456789012345678", "123456789012345677"),
    ("9007199254740993", "9007199254740992"),
    ("9223372036854775807", "9223372036854775806"),
]
NOT_A_COUNT = '{"error":"item.1 in Redis does not hold a number (make reset restores the course\'s state)"}'


@pytest.mark.parametrize(("before", "after"), EXACT_COUNTS)
def test_a_large_stock_stays_an_exact_integer(server, real_redis, before, after):
    real_redis.set("item.1", before)

    assert server.request("/reserve_product/1") == (200, JSON, expected.RESERVATION_CONFIRMED)

    assert real_redis.get("item.1") == after
    assert server.request("/list_products/1").json()["currentQuantity"] == int(after)


@pytest.mark.parametrize("stock", ["9223372036854775808", "99999999999999999999", "1" * 5000])
def test_a_stock_beyond_redis_integers_is_refused_naming_the_key(start_server, redis_url, real_redis, stock):
    server = start_server("9_stock.py", redis_url)
    real_redis.set("item.1", stock)

    for path in ("/reserve_product/1", "/list_products/1"):
        assert server.request(path) == (500, JSON, NOT_A_COUNT), path

    assert real_redis.get("item.1") == stock
    status, stdout, stderr = server.stop()
    assert (status, stdout) == (0, "")
    # One line in the log for each, no traceback.
    assert [line.rpartition(" in web: ")[2] for line in stderr.splitlines()] == [
        f"GET {path}: item.1 in Redis does not hold a number (make reset restores the course's state)"
        for path in ("/reserve_product/1", "/list_products/1")
    ]
