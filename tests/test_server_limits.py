"""The servers as a hostile local client meets them: many connections held open, a huge request line.

Each server (both APIs and the dashboard, started by course/web.py's ``server_settings``) is
held by 2,000 connections that send nothing and 1,000 that send half a request line, while
a probe gets its answer within a second (with granian's defaults, 1,100 idle connections
left every server answering no one). The half-sent requests are closed after granian's
header read timeout. The test process holds the connections itself: it raises its own limit
of open files first.
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from course import web

import pytest

from tests.support import LOOPBACK, READY_PATH, Server

pytestmark = pytest.mark.timeout(180)

SERVERS = ["9_stock.py", "100_seat.py", "course/dashboard.py"]
IDLE_CONNECTIONS = 2000
HALF_SENT_CONNECTIONS = 1000
HALF_A_REQUEST_LINE = b"GET /list_products HT"
PROBES = 10
# The bound for a probe's answer; the server answers in milliseconds (bench figures).
PROBE_SECONDS = 1.0
# A bound for a broken run: the header read timeout, and time for a loaded machine.
CLOSED_WITHIN_SECONDS = web.HEADER_READ_TIMEOUT_MS / 1000 + 10


def raise_own_open_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= IDLE_CONNECTIONS + HALF_SENT_CONNECTIONS + 100, "the system allows too few open files"
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextmanager
def held_connections(port: int, count: int, first_bytes: bytes = b"") -> Iterator[list[socket.socket]]:
    """``count`` connections to the server, each having sent ``first_bytes``; closed at the end."""
    with ExitStack() as opened:
        connections = [opened.enter_context(socket.create_connection((LOOPBACK, port))) for _ in range(count)]
        for connection in connections:
            connection.sendall(first_bytes)
        yield connections


def is_closed_by_the_server(connection: socket.socket) -> bool:
    """Whether the server closed it: end of stream (after any answer), or reset."""
    connection.setblocking(False)
    try:
        while data := connection.recv(65536):
            del data
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    return True


def probe(server: Server) -> float:
    """Seconds a request took to be answered, on a connection of its own (any status will do)."""
    started = time.monotonic()
    with socket.create_connection((LOOPBACK, server.port), timeout=PROBE_SECONDS) as connection:
        connection.sendall(f"GET {READY_PATH} HTTP/1.1\r\nHost: {LOOPBACK}:{server.port}\r\n\r\n".encode())
        assert connection.recv(12).startswith(b"HTTP/1.1 ")
    return time.monotonic() - started


@pytest.mark.parametrize("script", SERVERS)
def test_idle_and_half_sent_connections_leave_the_server_answering(script, start_server, redis_url):
    raise_own_open_file_limit()
    server = start_server(script, redis_url)

    with (
        held_connections(server.port, IDLE_CONNECTIONS) as idle,
        held_connections(server.port, HALF_SENT_CONNECTIONS, HALF_A_REQUEST_LINE) as half_sent,
    ):
        for _ in range(PROBES):
            assert probe(server) < PROBE_SECONDS

        deadline = time.monotonic() + CLOSED_WITHIN_SECONDS
        while not all(map(is_closed_by_the_server, half_sent)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert all(map(is_closed_by_the_server, half_sent))
        # Granian has no timeout for a connection that never sends a byte: it holds no worker.
        assert not any(map(is_closed_by_the_server, idle))
        assert probe(server) < PROBE_SECONDS

    status, stdout, _ = server.stop()
    assert (status, stdout) == (0, "")


# A request line too long for granian's HTTP parser --------------------------------------------

# hyper (granian's HTTP layer) keeps a URI's length in 16 bits: a longer one is refused with its
# own 414 before any Python code runs (hyperium/hyper#3960), and no granian setting changes it.
URI_LIMIT = 65534


@pytest.mark.parametrize("script", ["9_stock.py", "100_seat.py"])
def test_a_70000_digit_id_gets_a_bare_414_and_the_server_serves_on(script, start_server, redis_url):
    server = start_server(script, redis_url)

    answer = server.request(f"/list_products/{'1' * 70_000}")
    assert (answer.status, answer.raw) == (414, b"")
    # Just under the limit, the request reaches Flask, which answers JSON.
    under = server.request(f"/list_products/{'1' * (URI_LIMIT - len('/list_products/'))}")
    assert under.media_type == "application/json"
    assert server.stop() == (0, "", "")
