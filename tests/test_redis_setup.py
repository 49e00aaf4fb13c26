"""Task 0: redis_setup.sh, run for real on a free port.

The first build of Redis can take minutes, so a module fixture runs `redis_setup.sh build`
once with a generous timeout; every later run finds the cached build and is quick.
"""

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "redis_setup.sh"
BUILD_TIMEOUT = 600  # seconds: a first compile on a slow machine
RUN_TIMEOUT = 60

try:  # the project's pytest config sets a 300 s timeout per test; the first build may need more
    import pytest_timeout  # noqa: F401

    pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 300)
except ImportError:
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(port: int, *args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_PORT": str(port)}
    return subprocess.run(
        [str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2, socket_timeout=5)


@pytest.fixture(scope="module")
def build_output() -> str:
    result = run(free_port(), "build", timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def bin_dir(build_output) -> Path:
    path = Path(build_output.strip().splitlines()[-1])
    assert path.is_absolute()
    assert (path / "redis-server").exists()
    assert (path / "redis-cli").exists()
    return path


@pytest.fixture(scope="module")
def started(bin_dir):
    """Starts the server on a free port; always stops it afterwards."""
    port = free_port()
    try:
        result = run(port, "start")
        yield port, result
    finally:
        run(port, "stop")
        # The run's data lives in .redis/<port>: a throwaway port, nothing to keep.
        shutil.rmtree(ROOT / ".redis" / str(port), ignore_errors=True)


def test_build_prints_bin_dir_last(bin_dir):
    assert (bin_dir / "redis-server").is_file()


def test_start_succeeds(started):
    port, result = started
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"127.0.0.1:{port}" in result.stdout
    assert "PING -> PONG" in result.stdout
    assert "GET Holberton -> School" in result.stdout
    assert result.stderr == ""


def test_server_answers(started):
    port, _ = started
    r = client(port)
    assert r.ping() is True
    assert r.get("Holberton") == b"School"


def test_bound_to_loopback_only(started):
    port, _ = started
    assert client(port).config_get("bind") == {"bind": "127.0.0.1"}


def test_data_kept_in_project(started):
    port, _ = started
    assert client(port).config_get("dir")["dir"] == str(ROOT / ".redis" / str(port))


def test_dump_rdb_at_root(started):
    dump = ROOT / "dump.rdb"
    assert dump.is_file()
    data = dump.read_bytes()
    assert data.startswith(b"REDIS")
    assert b"Holberton" in data
    assert b"School" in data


def test_status_when_running(started):
    port, _ = started
    result = run(port, "status")
    assert result.returncode == 0
    assert "running" in result.stdout


def test_second_run_is_idempotent(started, build_output):
    port, _ = started
    pid_before = client(port).info("server")["process_id"]
    result = run(port)  # no argument means start
    assert result.returncode == 0, result.stdout + result.stderr
    if "Redis binary: system package" in build_output:  # the last-resort path: nothing cached
        assert "Redis binary: system package" in result.stdout
    else:
        assert "Redis build: cached" in result.stdout
    assert "already running" in result.stdout
    assert client(port).info("server")["process_id"] == pid_before


def test_port_taken_by_another_program(bin_dir):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run(port, "start")
    assert result.returncode == 1
    assert f"Port {port} is already in use by another program" in result.stderr
    assert "line " not in result.stderr  # a clear message, not bash noise


def test_stop_and_status(bin_dir):
    port = free_port()
    try:
        assert run(port, "start").returncode == 0
        result = run(port, "stop")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"Redis on port {port} stopped" in result.stdout
        with pytest.raises(ConnectionRefusedError):  # a plain socket: redis-py would retry
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        status = run(port, "status")
        assert status.returncode == 3
        assert "not running" in status.stdout
        again = run(port, "stop")
        assert again.returncode == 0
        assert f"Redis is not running on port {port}" in again.stdout
    finally:
        run(port, "stop")
        shutil.rmtree(ROOT / ".redis" / str(port), ignore_errors=True)


def test_rejects_bad_port():
    result = run(0, "status")  # port 0 is not a port the server could listen on
    assert result.returncode == 1
    assert "REDIS_PORT" in result.stderr


@pytest.mark.parametrize("path", [".redis/", "dump.rdb"])
def test_git_ignores_generated_files(path):
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
    assert ignored.returncode == 0, f"{path} should be in .gitignore"
