"""The course's library code never ends the process: it raises a typed error, and ``run()`` ends it.

``announce_connection()`` and ``announce_connection_async()`` raise ``NotConnectedError`` once every
try failed (having printed the failed-connection line for each try but the last), and ``serve()`` raises
``CannotListenError`` for a busy port. ``course.connection.run``, around a program's
``main()``, turns each into its one line and the SPEC's exit status: the failed-connection
line on stdout and status 1; the busy port's line on stderr and status 1. A caller that
wants to go on (a test, a helper of the learner's) can catch them.
"""

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

from course import connection, web
from course.connection import CONNECTED, NOT_CONNECTED, NotConnectedError

import pytest
import redis
import redis.asyncio

from checker.lessons import ROOT, script_env
from tests.support import run_python


@pytest.fixture
def no_redis(monkeypatch, dead_redis_url) -> str:
    monkeypatch.setenv("REDIS_URL", dead_redis_url)
    monkeypatch.setattr(connection, "RETRY_DELAY_SECONDS", 0)
    return dead_redis_url


def not_connected_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(NOT_CONNECTED)]


def test_connect_raises_once_every_try_failed(no_redis, capsys):
    with pytest.raises(NotConnectedError, match="Connection refused") as raised:
        connection.announce_connection(redis.Redis.from_url(no_redis))

    printed = capsys.readouterr().out
    assert len(not_connected_lines(printed)) == connection.CONNECT_ATTEMPTS - 1
    assert printed.splitlines()[-1] == connection.not_connected_line(raised.value)


def test_connect_async_raises_once_every_try_failed(no_redis, capsys):
    with pytest.raises(NotConnectedError):
        asyncio.run(connection.announce_connection_async(redis.asyncio.Redis.from_url(no_redis)))

    assert len(not_connected_lines(capsys.readouterr().out)) == connection.CONNECT_ATTEMPTS - 1


def test_run_prints_the_last_failed_connection_line_and_exits_1(no_redis, capsys):
    def main() -> None:
        connection.announce_connection(redis.Redis.from_url(no_redis))

    with pytest.raises(SystemExit) as exited:
        connection.run(main)

    out, err = capsys.readouterr()
    assert exited.value.code == 1
    assert len(not_connected_lines(out)) == connection.CONNECT_ATTEMPTS
    assert CONNECTED not in out
    assert err == ""


@pytest.fixture
def busy_port(monkeypatch) -> Iterator[int]:
    """A port something listens on, as PORT; a command line with no arguments."""
    monkeypatch.setattr(sys, "argv", ["server.py"])
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        monkeypatch.setenv("PORT", str(port))
        monkeypatch.delenv("HOST", raising=False)
        yield port


def test_server_settings_raise_for_a_busy_port(busy_port):
    with pytest.raises(web.CannotListenError, match=f"Cannot listen on 127.0.0.1:{busy_port}"):
        web.server_settings(None)


def test_run_turns_a_busy_port_into_one_line_on_stderr_and_status_1(busy_port, capsys):
    port = busy_port
    with pytest.raises(SystemExit) as exited:
        connection.run(lambda: web.server_settings(None))

    out, err = capsys.readouterr()
    assert exited.value.code == 1
    assert out == ""
    assert err == f"Cannot listen on 127.0.0.1:{port}: Address already in use (is another server running?)\n"


def test_a_reader_that_went_away_ends_the_script_quietly(redis_url):
    # `python 4_redis_advanced_op.py | head -0`: the pipe's reading end is closed before the first line.
    script = subprocess.Popen(
        [sys.executable, "4_redis_advanced_op.py"],
        cwd=ROOT,
        env=script_env(redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    script.stdout.close()
    errors = script.stderr.read()

    assert script.wait(timeout=30) == connection.BROKEN_PIPE
    assert errors == ""


DROPPED_CTRL_C = """
import course
import os, signal, time, weakref


class Thing:
    pass


thing = Thing()
# importlib runs such callbacks during every import: a Ctrl-C raised in one is dropped by Python.
watch = weakref.ref(thing, lambda ref: (os.kill(os.getpid(), signal.SIGINT), sum(range(1000))))
del thing
time.sleep(5)
print("ran on")
"""


def test_a_ctrl_c_that_python_dropped_in_a_callback_still_stops_the_program_quietly():
    """It printed "Exception ignored ... KeyboardInterrupt" and the program ran on (a processor for ever)."""
    result = run_python(DROPPED_CTRL_C)
    assert (result.returncode, result.stdout, result.stderr) == (-signal.SIGINT, "", "")
