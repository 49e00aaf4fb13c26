"""Task 0: redis_setup.sh, run for real on a free port.

The first build of Redis can take minutes, so a module fixture runs `redis_setup.sh build`
once with a generous timeout; every later run finds the cached build and is quick. Beyond the
course's steps: the build survives the crash a client could cause, a password never shows on a
command line, the files are private, and each failure says what happened.
"""

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from tests.support import REDIS_BIN, free_port, project_redis_files_held

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "redis_setup.sh"
BUILD_TIMEOUT = 600  # seconds: a first compile on a slow machine
RUN_TIMEOUT = 60

# The project's pytest config sets a 300 s timeout per test; the first build may need more.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 300)


def run_in(env: dict[str, str], *args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    """The script run with exactly the environment ``env``."""
    return subprocess.run(
        [str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run(port: int, *args: str, timeout: float = RUN_TIMEOUT, **env_vars: str) -> subprocess.CompletedProcess:
    return run_in({**os.environ, "REDIS_PORT": str(port), **env_vars}, *args, timeout=timeout)


def client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2, socket_timeout=5)


@pytest.fixture(scope="module", autouse=True)
def project_redis_files_for_the_module(tmp_path_factory) -> Iterator[None]:
    """The servers of this module's tests keep their data in the project's .redis/ and dump.rdb."""
    with project_redis_files_held(tmp_path_factory, changing=True):
        yield


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
        try:
            result = run(port, "start")
        finally:
            shutil.rmtree(ROOT / ".redis" / str(port), ignore_errors=True)
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


# A Redis no client can crash ------------------------------------------------------------------

# CVE-2024-31228: KEYS (or SCAN) with a long pattern of `*a` against a long key recursed until
# the stack overflowed; 7.0.15 as released died of it. A fixed server answers or refuses.
CRASH_KEY_BYTES = 300_000
CRASH_PATTERN_REPEATS = 300_000


def test_a_huge_keys_pattern_does_not_crash_the_server(own_redis):
    with redis.Redis.from_url(own_redis.url, socket_timeout=RUN_TIMEOUT) as client:
        client.set(b"a" * CRASH_KEY_BYTES, b"1")
        try:
            client.keys(b"*a" * CRASH_PATTERN_REPEATS)
        except redis.ResponseError:
            pass  # refusing the pattern is a fix too; a lost connection is not
        except redis.ConnectionError as error:
            pytest.fail(f"{REDIS_BIN / 'redis-server'} crashed on KEYS with a huge pattern: {error}")
        assert client.ping() is True
    assert own_redis.process.poll() is None


def test_build_directory_says_what_it_holds(bin_dir, build_output):
    if "Redis binary: system package" in build_output:
        pytest.skip("the system's redis-server: nothing was built")
    build = bin_dir.parent
    assert build.name != "redis-7.0.15", "the unpatched 7.0.15 build is reused"
    assert re.fullmatch(r"redis-8\.10\.1|redis-7\.0\.15-debian-\S+", build.name), build.name
    marker = (build / ".build-complete").read_text()
    if "debian" in build.name:
        assert "CVE-2024-31228" in marker


def test_build_cache_is_writable_by_its_owner_only(bin_dir, build_output):
    if "Redis binary: system package" in build_output:
        pytest.skip("the system's redis-server: nothing was built")
    writable = [
        path
        for path in [bin_dir.parent, *bin_dir.parent.rglob("*")]
        if not path.is_symlink() and path.lstat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ]
    assert writable == [], f"{len(writable)} paths writable by group or others, e.g. {writable[:3]}"


# Files readable by their owner only -----------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def private_mode(path: Path) -> int:
    return 0o700 if path.is_dir() else 0o600


def save_when_no_child_runs(server: redis.Redis) -> None:
    """SAVE once the server's start-up AOF rewrite (a child process) is over: SAVE during it is refused
    with "Background save already in progress", which a loaded machine makes likely."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        persistence = server.info("persistence")
        if not (persistence["aof_rewrite_in_progress"] or persistence["rdb_bgsave_in_progress"]):
            break
        time.sleep(0.05)
    server.save()


def test_data_log_pidfile_and_dump_are_private(started):
    port, _ = started
    data = ROOT / ".redis" / str(port)
    save_when_no_child_runs(client(port))  # the server's own dump.rdb in its data directory, too
    paths = [ROOT / ".redis", data, *data.rglob("*"), ROOT / "dump.rdb"]
    assert {path.name for path in paths} >= {"redis.log", "redis.pid", "dump.rdb", "appendonlydir"}
    wrong = {
        str(path): oct(mode(path)) for path in paths if mode(path) != (0o700 if path.is_dir() else 0o600)
    }
    assert wrong == {}


# A password -------------------------------------------------------------------------------

# Spaces, quotes and # test that the server reads the password back exactly.
PASSWORD = 'pass word "quoted" #not-a-comment'


def with_password(password: str = PASSWORD) -> dict[str, str]:
    return {"REDIS_PASSWORD": password}


def client_with_password(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_timeout=5)


def command_lines() -> dict[str, bytes]:
    """Every process's command line, by pid."""
    lines = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):  # the process ended meanwhile
                lines[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
    return lines


def run_watching_command_lines(
    port: int, *args: str, **env_vars: str
) -> tuple[subprocess.CompletedProcess, set[bytes]]:
    """Runs the script while a thread reads every command line over and over (a pass takes
    well under a millisecond, a redis-cli call lives for a few), collecting what it saw."""
    seen: set[bytes] = set()
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            seen.update(command_lines().values())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run(port, *args, **env_vars)
    finally:
        finished.set()
        watcher.join()
    return result, seen


@pytest.fixture(scope="module")
def started_with_password(bin_dir):
    port = free_port()
    try:
        yield port, *run_watching_command_lines(port, "start", **with_password())
    finally:
        run(port, "stop", **with_password())
        shutil.rmtree(ROOT / ".redis" / str(port), ignore_errors=True)


def test_start_with_a_password(started_with_password):
    _, result, _ = started_with_password
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GET Holberton -> School" in result.stdout
    assert "with a password" in result.stdout


def test_a_client_without_the_password_is_refused(started_with_password):
    port, _, _ = started_with_password
    with pytest.raises(redis.AuthenticationError):
        client(port).get("Holberton")


def test_a_redis_url_with_the_password_works(started_with_password):
    port, _, _ = started_with_password
    url = f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/0"
    with redis.Redis.from_url(url) as authenticated:
        assert authenticated.get("Holberton") == b"School"


def test_the_password_is_on_no_command_line(started_with_password):
    """Not the server's, nor any redis-cli's the script ran: their command lines were read as it ran."""
    port, _, seen_while_starting = started_with_password
    status, seen_while_checking = run_watching_command_lines(port, "status", **with_password())
    assert status.returncode == 0
    server_pid = client_with_password(port).info("server")["process_id"]
    now = command_lines()
    assert str(server_pid) in now  # the server's own is among those read
    seen = seen_while_starting | seen_while_checking | set(now.values())
    assert any(b"redis-cli" in line for line in seen)  # the watch was fast enough to see them
    assert [line for line in seen if PASSWORD.encode() in line] == []


def test_status_and_stop_need_the_password(bin_dir):
    port = free_port()
    try:
        assert run(port, "start", **with_password()).returncode == 0
        assert run(port, "status", **with_password()).returncode == 0
        for command in ("status", "stop"):
            refused = run(port, command)
            assert refused.returncode == 1
            assert "requires a password: set REDIS_PASSWORD" in refused.stderr
            wrong = run(port, command, **with_password("not it"))
            assert wrong.returncode == 1
            assert "refused REDIS_PASSWORD" in wrong.stderr
        assert client_with_password(port).ping() is True  # still running
        stopped = run(port, "stop", **with_password())
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert f"Redis on port {port} stopped" in stopped.stdout
    finally:
        run(port, "stop", **with_password())
        shutil.rmtree(ROOT / ".redis" / str(port), ignore_errors=True)


def test_asking_a_running_server_for_a_password_it_lacks_says_so(started):
    port, _ = started
    result = run(port, "start", **with_password())
    assert result.returncode == 1
    assert "running without a password" in result.stderr


# Messages say what happened --------------------------------------------------------------------


@pytest.fixture
def empty_cache(tmp_path) -> dict[str, str]:
    """A cache with no build in it, so the script fetches a source."""
    if not (shutil.which("make") and (shutil.which("cc") or shutil.which("gcc"))):
        pytest.skip("no C compiler: the script would not fetch a source")
    return {"XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_a_checksum_mismatch_is_reported_as_such(tmp_path, empty_cache):
    fake = tmp_path / "redis.tar.gz"
    fake.write_bytes(b"not the release\n")
    result = run(free_port(), "build", REDIS_SETUP_OFFICIAL_URL=fake.as_uri(), **empty_cache)
    assert result.returncode == 1
    assert "sha256 mismatch" in result.stderr
    assert "unreachable" not in result.stdout + result.stderr


def test_an_unreachable_source_is_reported_as_such(tmp_path, empty_cache):
    missing = tmp_path / "nothing-here.tar.gz"
    result = run(free_port(), "build", REDIS_SETUP_OFFICIAL_URL=missing.as_uri(), **empty_cache)
    assert result.returncode == 1
    assert "unreachable" in result.stderr
    assert "sha256" not in result.stdout + result.stderr


def test_a_port_the_server_cannot_bind_is_reported_at_once(bin_dir):
    # Bound but not listening: nothing answers there, yet the server's bind() fails.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        try:
            result = run(port, "start")
        finally:
            shutil.rmtree(ROOT / ".redis" / str(port), ignore_errors=True)
    assert result.returncode == 1
    assert f"redis-server exited at once on 127.0.0.1:{port}" in result.stderr
    assert "Address already in use" in result.stderr
    assert "within 10 s" not in result.stderr


# No system change unasked ----------------------------------------------------------------------


def tools_but(tmp_path: Path, hidden: set[str]) -> Path:
    """A directory for PATH with every command of the system's but ``hidden``."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        for tool in Path(directory).glob("*"):
            if tool.name not in hidden and not (tools / tool.name).exists():
                (tools / tool.name).symlink_to(tool)
    return tools


def test_no_system_package_is_installed_unasked(tmp_path, bin_dir):
    """No compiler and no redis-server on PATH: the script says how to opt in, and changes nothing."""
    # apt-get: never, even if broken
    tools = tools_but(tmp_path, {"make", "cc", "gcc", "redis-server", "redis-cli", "apt-get"})
    policy_existed = Path("/usr/sbin/policy-rc.d").exists()
    result = run(free_port(), "build", PATH=str(tools), XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert result.returncode == 1
    assert "No C compiler" in result.stderr
    assert "REDIS_SETUP_INSTALL_SYSTEM=1" in result.stderr
    assert Path("/usr/sbin/policy-rc.d").exists() == policy_existed


# Two runs at once on one port -------------------------------------------------------------------

RACES = 3  # each of 3 of 3 tries failed before the port's lock


def start_two_at_once(port: int) -> list[subprocess.CompletedProcess]:
    """Two ``redis_setup.sh start`` on one port, let go together."""
    env = {**os.environ, "REDIS_PORT": str(port)}
    starts = [
        subprocess.Popen(
            [str(SCRIPT), "start"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = []
    for start in starts:
        stdout, stderr = start.communicate(timeout=RUN_TIMEOUT)
        results.append(subprocess.CompletedProcess(start.args, start.returncode, stdout, stderr))
    return results


def redis_servers_on(port: int) -> list[int]:
    """Every redis-server process serving 127.0.0.1:PORT (its process title says so), whatever started it."""
    title = re.compile(rb"\S*redis-server 127\.0\.0\.1:%d\b" % port)
    return [int(pid) for pid, line in command_lines().items() if title.match(line)]


@pytest.mark.parametrize("attempt", range(RACES))
def test_two_starts_at_once_start_one_server_that_stop_stops(attempt, bin_dir):
    port = free_port()
    try:
        results = start_two_at_once(port)
        assert [result.returncode for result in results] == [0, 0], [r.stdout + r.stderr for r in results]
        outcomes = sorted("started" if "Redis running on" in result.stdout else "found" for result in results)
        assert outcomes == ["found", "started"], [result.stdout for result in results]
        assert all("GET Holberton -> School" in result.stdout for result in results)
        (server_pid,) = redis_servers_on(port)
        status = run(port, "status")
        assert status.returncode == 0
        assert f"(pid {server_pid})" in status.stdout
        assert run(port, "stop").returncode == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert redis_servers_on(port) == []
    finally:
        run(port, "stop")
        for pid in redis_servers_on(port):  # left by a failed run: nothing else would stop it
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ROOT / ".redis" / str(port), ignore_errors=True)


# Only the environment a bare shell has ------------------------------------------------------------


def test_an_environment_with_only_path_is_enough(bin_dir):
    """No HOME (env -i, cron), no XDG_CACHE_HOME: the build is looked for in the home directory the
    password database gives, and every other setting has its default."""
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    if not bin_dir.is_relative_to(home / ".cache"):
        pytest.skip(f"the build is not in {home}/.cache: starting would compile Redis again")
    port = free_port()
    bare = {"PATH": os.environ["PATH"], "REDIS_PORT": str(port)}
    try:
        results = {command: run_in(bare, command) for command in ("status", "build", "start", "stop")}
    finally:
        run(port, "stop")
        shutil.rmtree(ROOT / ".redis" / str(port), ignore_errors=True)

    assert {command: (result.returncode, result.stderr) for command, result in results.items()} == {
        "status": (3, ""),
        "build": (0, ""),
        "start": (0, ""),
        "stop": (0, ""),
    }
    assert results["build"].stdout.splitlines()[-1] == str(bin_dir)
    assert "GET Holberton -> School" in results["start"].stdout


def test_a_server_of_ours_without_its_pidfile_is_still_seen_and_stopped(bin_dir):
    """As the race before the port's lock left one: running, its pidfile gone."""
    port = free_port()
    try:
        assert run(port, "start").returncode == 0
        (server_pid,) = redis_servers_on(port)
        (ROOT / ".redis" / str(port) / "redis.pid").unlink()

        status, again, stop = run(port, "status"), run(port, "start"), run(port, "stop")

        assert status.returncode == 0
        assert f"(pid {server_pid})" in status.stdout
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        assert stop.returncode == 0
        assert f"Redis on port {port} stopped" in stop.stdout
        assert redis_servers_on(port) == []
    finally:
        run(port, "stop")
        for pid in redis_servers_on(port):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ROOT / ".redis" / str(port), ignore_errors=True)


def test_no_home_anywhere_is_one_clear_line(tmp_path):
    """HOME unset, and no password database to ask (no getent): one line saying what to set."""
    bare = {"PATH": str(tools_but(tmp_path, {"getent"})), "REDIS_PORT": str(free_port())}
    result = run_in(bare, "status")

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        "HOME is not set and the password database gives no home directory: set XDG_CACHE_HOME "
        "(the Redis build is cached in $XDG_CACHE_HOME/queuing-system)"
    ]
