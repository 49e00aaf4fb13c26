"""Security defaults, tested as a learner meets them: loopback, no debug mode, passwords and TLS.

- Both APIs, the dashboard and redis_setup.sh's Redis listen on 127.0.0.1 only, unless HOST
  says otherwise (read from the kernel's table of listening sockets, /proc/net/tcp).
- Both APIs answer only requests whose ``Host`` names the address they listen on (a page
  using DNS rebinding sends its own name): on loopback, a foreign Host is a JSON 400 that
  reserves nothing; with HOST=0.0.0.0, any name is served.
- Flask's debug mode is off in the served apps, even with FLASK_DEBUG=1 in the environment,
  and no request reaches a debugger: a bug is a JSON 500, its traceback in the server's log.
- A REDIS_URL with a password works unchanged in every program, and a ``rediss://`` one (TLS,
  the server's certificate checked against a CA) in a representative few; a wrong password
  gets the course's failed-connection line, or a 503 from a server. No password ever shows
  in what a program prints or answers.

The programs run through the tour's own task functions (``checker.tasks``, ``checker.apis``), which
compare each one's output with the course's; every line they print is recorded on the way.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from course import expected

import pytest
import redis

from checker import apis, lessons, run, tasks
from checker.lessons import ROOT, lines, start_script, stop_script, wait_for_line
from checker.report import Outcome
from checker.run import PROJECT
from tests.support import LOOPBACK, REDIS_BIN, OwnRedis, RedisDidNotStart, Server, free_port, serving

pytestmark = pytest.mark.timeout(180)

JSON = "application/json"
APIS = ["9_stock.py", "100_seat.py"]
SERVERS = [*APIS, "course/dashboard.py"]
NOT_FOUND = '{"error":"Not Found"}'
# Passwords with characters a URL must percent-encode, as real ones may have.
PASSWORD = f"pw/{secrets.token_hex(6)}@:%"
WRONG_PASSWORD = f"wrong/{secrets.token_hex(6)}@:%"
# Bounds for a broken run, not expectations of speed.
RUN_TIMEOUT_SECONDS = 60


# Servers started as a learner starts them ------------------------------------------------------


def stop_cleanly(server: Server) -> str:
    """Stop a server as Ctrl-C does: status 0, no traceback. Returns all it printed."""
    status, stdout, stderr = server.stop()
    assert status == 0, stdout + stderr
    assert "Traceback" not in stdout + stderr
    return stdout + stderr


# Loopback unless told otherwise ----------------------------------------------------------------


def kernel_address(hex_address: str, family: socket.AddressFamily) -> str:
    """An address as /proc/net/tcp* shows it: hex, each 32-bit word in the machine's byte order."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[start : start + 4][::-1] for start in range(0, len(raw), 4))
    return socket.inet_ntop(family, raw)


def listening_addresses(port: int) -> set[str]:
    """The local addresses, IPv4 and IPv6, of every socket listening on ``port``, as the kernel sees them."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        if not os.path.exists(table):  # a machine without IPv6
            continue
        with open(table) as rows:
            next(rows)  # the header
            for row in rows:
                local, state = row.split()[1], row.split()[3]
                hex_address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(kernel_address(hex_address, family))
    return found


needs_proc_net = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's /proc/net/tcp")


@needs_proc_net
@pytest.mark.parametrize("script", SERVERS)
def test_a_server_listens_on_loopback_only_by_default(script, redis_url):
    with serving(script, redis_url) as server:
        assert listening_addresses(server.port) == {LOOPBACK}
        stop_cleanly(server)


@needs_proc_net
@pytest.mark.parametrize("script", APIS)
def test_host_makes_an_api_listen_on_every_interface(script, redis_url):
    with serving(script, redis_url, host="0.0.0.0") as server:
        assert listening_addresses(server.port) == {"0.0.0.0"}
        # Answered on loopback too: the only address this test talks to.
        assert server.request("/no_such_path") == (404, JSON, NOT_FOUND)
        stop_cleanly(server)


# What a page using DNS rebinding sends, and what a learner's own client sends.
FOREIGN_HOSTS = ["attacker.example", "attacker.example:1245", "127.0.0.1.attacker.example"]
BAD_REQUEST = (400, JSON, '{"error":"Bad Request"}')
# A route of each API that changes state, and what it answers when it is allowed to.
ACTIONS = {
    "9_stock.py": ("/reserve_product/1", expected.RESERVATION_CONFIRMED),
    "100_seat.py": ("/reserve_seat", expected.RESERVATION_IN_PROCESS),
}


def assert_nothing_reserved(url: str) -> None:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        assert client.get("item.1") is None
        assert client.llen("rq:queue:reserve_seat") == 0


@pytest.mark.parametrize("script", APIS)
def test_an_api_on_loopback_refuses_a_foreign_host(script, redis_url):
    path, body = ACTIONS[script]
    with serving(script, redis_url) as server:
        port = server.port
        for host in FOREIGN_HOSTS:
            assert server.request(path, headers={"Host": host}) == BAD_REQUEST, host
            assert server.request("/no_such_path", headers={"Host": host}) == BAD_REQUEST, host
        assert_nothing_reserved(redis_url)
        for host in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            assert server.request("/no_such_path", headers={"Host": host}) == (404, JSON, NOT_FOUND), host
        assert server.request(path, headers={"Host": f"localhost:{port}"}) == (200, JSON, body)
        assert stop_cleanly(server) == ""


@pytest.mark.parametrize("script", APIS)
def test_an_api_on_every_interface_serves_any_host(script, redis_url):
    path, body = ACTIONS[script]
    with serving(script, redis_url, host="0.0.0.0") as server:
        assert server.request(path, headers={"Host": "api.example"}) == (200, JSON, body)
        assert stop_cleanly(server) == ""


def redis_setup(port: int, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "redis_setup.sh"), command],
        env={**os.environ, "REDIS_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=900,  # a first build of Redis
    )


@needs_proc_net
def test_redis_setup_starts_a_server_listening_on_loopback_only(changing_project_redis_files):
    """test_redis_setup.py reads the server's ``bind`` setting; this reads what the kernel shows."""
    port = free_port()
    try:
        started = redis_setup(port, "start")
        assert started.returncode == 0, started.stdout + started.stderr
        assert listening_addresses(port) == {LOOPBACK}
    finally:
        redis_setup(port, "stop")
        shutil.rmtree(ROOT / ".redis" / str(port), ignore_errors=True)  # a throwaway port's data


# No debug mode, no debugger ----------------------------------------------------------------------


# Requests that look for Werkzeug's debugger, or try to switch debug mode on.
DEBUGGER_PATHS = ["/console", "/console?__debugger__=yes&cmd=printpid&frm=0&s=x"]
DEBUG_QUERIES = ["?__debugger__=yes&cmd=resource&f=debugger.js", "?debug=1", "?debug=true&FLASK_DEBUG=1"]
DEBUG_HEADERS = {"X-Debug": "1", "X-Flask-Debug": "1", "X-Werkzeug-Debug": "true"}

FAILING_API = '''
"""A course API with two routes of its own: its debug flag, and a bug."""

from pathlib import Path

from course.web import json_api, launch

from flask import Flask, current_app
from granian import Granian
from granian.constants import Interfaces

app = json_api(Flask(__name__, static_folder=None))


@app.get("/debug")
def debug():
    return {"debug": current_app.debug}


@app.get("/boom")
def boom():
    raise RuntimeError(f"internal detail of {__file__}")


if __name__ == "__main__":
    settings = launch(__doc__)
    here = Path(__file__).parent
    Granian("failing_api:app", interface=Interfaces.WSGI, working_dir=here, **settings).serve()
'''


def stop_cleanly_but_for_the_logged_bug(server: Server) -> str:
    """Stop a server whose bug was logged: status 0, nothing on stdout. Returns its log (stderr)."""
    status, stdout, stderr = server.stop()
    assert (status, stdout) == (0, "")
    return stderr


def test_a_bug_in_an_api_served_with_flask_debug_set_is_a_json_500(tmp_path, redis_url):
    script = tmp_path / "failing_api.py"
    script.write_text(FAILING_API)
    # The script lives outside the project: it finds ``course`` through PYTHONPATH.
    with serving(str(script), redis_url, FLASK_DEBUG="1", PYTHONPATH=str(ROOT)) as server:
        assert server.request("/debug") == (200, JSON, '{"debug":false}')
        for headers in ({}, DEBUG_HEADERS):
            assert server.request("/boom", headers=headers) == (
                500,
                JSON,
                '{"error":"Internal Server Error"}',
            )
        for path in DEBUGGER_PATHS:
            assert server.request(path, headers=DEBUG_HEADERS) == (404, JSON, NOT_FOUND)
        printed = stop_cleanly_but_for_the_logged_bug(server)
    # The traceback went to the server's log, and only there.
    assert f"RuntimeError: internal detail of {script}" in printed


# Each API's everyday answer, which no debug query or header may change.
EVERYDAY = {
    "9_stock.py": ("/list_products", expected.PRODUCTS_BODY),
    "100_seat.py": ("/available_seats", expected.available_seats_body(expected.INITIAL_SEATS)),
}


@pytest.mark.parametrize("script", APIS)
def test_an_api_served_with_flask_debug_set_gives_no_debugger(script, redis_url):
    path, body = EVERYDAY[script]
    with serving(script, redis_url, FLASK_DEBUG="1") as server:
        for query in DEBUG_QUERIES:
            assert server.request(path + query, headers=DEBUG_HEADERS) == (200, JSON, body)
        for debugger_path in DEBUGGER_PATHS:
            assert server.request(debugger_path, headers=DEBUG_HEADERS) == (404, JSON, NOT_FOUND)
        assert stop_cleanly(server) == ""


# Redis servers with a password, and with TLS -----------------------------------------------------


def url_with_password(scheme: str, port: int, password: str, query: str = "") -> str:
    return f"{scheme}://:{quote(password, safe='')}@{LOOPBACK}:{port}/0{query}"


def set_holberton(url: str) -> None:
    """What task 0 leaves in the database, and tasks 2 and 3 read."""
    with redis.Redis.from_url(url) as client:
        client.set("Holberton", "School")


@pytest.fixture(scope="module")
def password_port(tmp_path_factory) -> Iterator[int]:
    """The port of a redis-server that requires PASSWORD."""
    port = free_port()
    server = OwnRedis(
        tmp_path_factory.mktemp("password"),
        persistent=False,
        port=port,
        url=url_with_password("redis", port, PASSWORD),
        options=["--requirepass", PASSWORD],
    )
    server.start()
    set_holberton(server.url)
    yield port
    server.stop()


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(
        ["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=RUN_TIMEOUT_SECONDS
    )


def make_certificates(directory: Path) -> None:
    """A throwaway CA (ca.crt), and the certificate it signs for a server at 127.0.0.1 (server.crt, .key)."""
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        directory,
        "req",
        "-x509",
        *new_key,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=Test CA",
    )
    openssl(
        directory, "req", *new_key, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={LOOPBACK}"
    )
    # The client checks the name it connected to, an IP address, against this.
    (directory / "san.cnf").write_text(f"subjectAltName=IP:{LOOPBACK}\n")
    openssl(
        directory,
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"),
        *("-out", "server.crt", "-days", "1", "-extfile", "san.cnf"),
    )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory) -> Iterator[tuple[int, Path]]:
    """A redis-server that speaks TLS only and requires PASSWORD: its port, and the CA's certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    make_certificates(directory)
    port = free_port()
    server = OwnRedis(
        directory,
        persistent=False,
        port=port,
        url=url_with_password("rediss", port, PASSWORD, f"?ssl_ca_certs={quote(str(directory / 'ca.crt'))}"),
        # TLS only: no plain port.
        options=["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
        + ["--requirepass", PASSWORD, "--tls-cert-file", "server.crt", "--tls-key-file", "server.key"]
        + ["--tls-ca-cert-file", "ca.crt"],
    )
    try:
        server.start()
    except RedisDidNotStart as error:
        if "tls" in str(error).lower():
            pytest.skip(f"{REDIS_BIN / 'redis-server'} was built without TLS: {str(error).strip()[-200:]}")
        raise
    set_holberton(server.url)
    yield port, directory / "ca.crt"
    server.stop()


@pytest.fixture
def tls_url(tls_server) -> str:
    port, ca_certificate = tls_server
    return url_with_password("rediss", port, PASSWORD, f"?ssl_ca_certs={quote(str(ca_certificate))}")


# What the programs print, recorded ---------------------------------------------------------------


@pytest.fixture
def transcript(monkeypatch) -> list[str]:
    """Everything the tour's programs print, stdout and stderr, recorded as the tour runs and stops them."""
    written: list[str] = []

    def run_and_record(*args, **kwargs) -> subprocess.CompletedProcess[str]:
        result = lessons.run_script(*args, **kwargs)
        written.extend((result.stdout, result.stderr))
        return result

    def stop_and_record(*args, **kwargs) -> tuple[str, str]:
        stdout, stderr = lessons.stop_script(*args, **kwargs)
        written.extend((stdout, stderr))
        return stdout, stderr

    monkeypatch.setattr(run, "run_script", run_and_record)
    monkeypatch.setattr(run, "stop_script", stop_and_record)
    return written


def everything_shown(outcome: Outcome, transcript: list[str]) -> str:
    """What the learner saw: every program's output, and the HTTP bodies the tour showed."""
    return "\n".join([*transcript, *(line for _, shown in outcome.blocks for line in shown)])


def assert_never_shown(text: str, *passwords: str) -> None:
    for password in passwords:
        assert password not in text
        assert quote(password, safe="") not in text


# More tasks, in the tour's style: each returns an Outcome ------------------------------------


def run_job_function(url: str) -> Outcome:
    """Task 8's main program (the tour also runs 8_job.test.py, which uses fakeredis, not the URL)."""
    outcome = Outcome()
    main = PROJECT.run("8_job_main.py", url)
    outcome.check("8_job_main.py", main.compared, expected.check_task8_main(main.compared) + main.errors)
    return outcome


def run_verbose_processor(url: str) -> Outcome:
    """Task 6 with the processor's RQ log lines on (``--verbose``): they must not show a password either."""
    tasks.empty_queue(url, "push_notification_code")
    outcome = Outcome()
    processor = start_script("6_job_processor.py", url, "--verbose")
    try:
        creator = PROJECT.run("6_job_creator.py", url)
        outcome.check(
            "6_job_creator.py",
            creator.compared,
            expected.check_task6_creator(creator.compared) + creator.errors,
        )
    finally:
        stopped = PROJECT.stop("6_job_processor.py", processor)
    outcome.check("6_job_processor.py", stopped.stdout, stopped.errors)
    return outcome


def run_dashboard(url: str) -> Outcome:
    """``make dashboard``: its page (its Redis URL listed, the password masked), its queues in JSON."""

    outcome = Outcome()
    with serving("course/dashboard.py", url) as dashboard:
        for path, content_type, wanted in (
            ("/", "text/html", f"://***:***@{LOOPBACK}:"),
            ("/0/data/queues.json", JSON, '"queues"'),
        ):
            answer = dashboard.request(path)
            outcome.show(f"GET {path}", [answer.body])
            if (answer.status, answer.media_type) != (200, content_type) or wanted not in answer.body:
                outcome.problems.append(
                    f"GET {path}: {answer.status} {answer.content_type} {answer.body[:200]}"
                )
        outcome.show("course/dashboard.py (server)", lines(stop_cleanly(dashboard)))
    return outcome


Task = Callable[[str], Outcome]
PASSWORD_TASKS: list[Task] = [
    tasks.task_redis_client,
    tasks.task_redis_op,
    tasks.task_redis_op_async,
    tasks.task_redis_advanced_op,
    tasks.task_pubsub,
    tasks.task_job_creator,
    tasks.task_job_processor,
    run_job_function,
    apis.task_stock,
    apis.task_seats,
    run_dashboard,
    run_verbose_processor,
]
# One of each kind: connect, async, a pool of workers with its creator, a server.
TLS_TASKS: list[Task] = [
    tasks.task_redis_client,
    tasks.task_redis_op,
    tasks.task_redis_op_async,
    tasks.task_job_processor,
    apis.task_stock,
]


def task_name(task: Task) -> str:
    return task.__name__.removeprefix("task_").removeprefix("run_")


# A password ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", PASSWORD_TASKS, ids=task_name)
def test_every_program_works_unchanged_with_a_password(task, password_port, transcript):
    outcome = task(url_with_password("redis", password_port, PASSWORD))

    assert outcome.problems == []
    assert outcome.errors == []
    assert_never_shown(everything_shown(outcome, transcript), PASSWORD)


REFUSED = re.compile(re.escape(expected.NOT_CONNECTED_PREFIX) + r".*invalid username-password pair.*")
# Programs that give up on a refused password, with the course's line and status 1.
GIVING_UP = [
    "0_redis_client.py",
    "1_redis_op.py",
    "2_redis_op_async.py",
    "4_redis_advanced_op.py",
    "5_subscriber.py",
    "5_publisher.py",
    "6_job_creator.py",
    "7_job_creator.py",
    "8_job_main.py",
]
# Processors wait for Redis as long as it takes, with the course's line for each try.
WAITING = ["6_job_processor.py", "7_job_processor.py"]


def test_a_wrong_password_gets_the_failed_connection_line_and_is_never_shown(password_port):
    url = url_with_password("redis", password_port, WRONG_PASSWORD)
    # All at once: each tries three times, half a second apart.
    giving_up = {name: start_script(name, url, PORT=str(free_port())) for name in GIVING_UP}
    waiting = {name: start_script(name, url) for name in WAITING}

    for name, process in waiting.items():
        first = wait_for_line(process, REFUSED)
        stdout, stderr = stop_script(process)
        assert first and REFUSED.fullmatch(first[-1]), (name, first, stdout, stderr)
        assert "Traceback" not in stdout + stderr
        assert_never_shown("\n".join([*first, stdout, stderr]), PASSWORD, WRONG_PASSWORD)
    for name, process in giving_up.items():
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
        assert lines(stdout) and all(REFUSED.fullmatch(line) for line in lines(stdout)), (
            name,
            stdout,
            stderr,
        )
        assert (process.returncode, stderr) == (1, ""), name
        assert_never_shown(stdout, PASSWORD, WRONG_PASSWORD)


def test_a_wrong_password_is_a_503_from_the_apis_and_the_dashboard(password_port):
    """The APIs say so at launch, with the course's line, and keep trying; meanwhile, 503s."""
    url = url_with_password("redis", password_port, WRONG_PASSWORD)
    with (
        serving("9_stock.py", url) as stock,
        serving("100_seat.py", url) as seat,
        serving("course/dashboard.py", url) as dashboard,
    ):
        refused = [wait_for_line(api.process, REFUSED) for api in (stock, seat)]
        unavailable = [
            *(stock.request(path) for path in ("/list_products", "/list_products/1", "/reserve_product/1")),
            *(seat.request(path) for path in ("/available_seats", "/reserve_seat", "/process")),
        ]
        on_the_dashboard = dashboard.request("/0/data/queues.json")
        assert unavailable == [(503, JSON, '{"error":"Service Unavailable"}')] * 6
        status, content_type, body = on_the_dashboard
        assert (status, content_type) == (503, JSON), on_the_dashboard
        assert REFUSED.fullmatch(json.loads(body)["error"]), on_the_dashboard
        printed = stop_cleanly(stock) + stop_cleanly(seat) + stop_cleanly(dashboard)
    for lines_of_one in refused:
        assert lines_of_one and all(REFUSED.fullmatch(line) for line in lines_of_one), refused
    shown = [printed, *(line for lines_of_one in refused for line in lines_of_one), on_the_dashboard[2]]
    assert_never_shown("\n".join(shown), PASSWORD, WRONG_PASSWORD)


# TLS -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TLS_TASKS, ids=task_name)
def test_programs_work_unchanged_over_tls(task, tls_url, transcript):
    outcome = task(tls_url)

    assert outcome.problems == []
    assert outcome.errors == []
    assert_never_shown(everything_shown(outcome, transcript), PASSWORD)


def test_tls_checks_the_servers_certificate(tls_server):
    """Without the CA that signed it, the server's certificate is refused: the course's line, status 1."""
    port, _ = tls_server
    result = lessons.run_script("0_redis_client.py", url_with_password("rediss", port, PASSWORD))

    assert lines(result.stdout)
    assert all(line.startswith(expected.NOT_CONNECTED_PREFIX) for line in lines(result.stdout)), result.stdout
    assert "certificate verify failed" in result.stdout
    assert (result.returncode, result.stderr) == (1, "")
    assert_never_shown(result.stdout, PASSWORD)
