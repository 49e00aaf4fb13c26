"""The dashboard's actions (delete, requeue, empty, compact) are for its user, not for any web page.

Sent as curl would, header by header: without ``DASHBOARD_USER``/``DASHBOARD_PASSWORD`` every
action is refused and the pages still work; with them, nothing answers without them; a
foreign ``Host`` (DNS rebinding), another ``Origin`` and a GET are refused whatever the
credentials; and every answer to an action is JSON.
"""

from __future__ import annotations

import http.client
import re
import time

import course.dashboard
from course.ids import next_job_ids

import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from tests.support import PASSWORD, USER, basic_auth, failed_task7_job, request, served_dashboard, serving

pytestmark = pytest.mark.timeout(180)

QUEUE = "push_notification_code_2"

# Every route of rq-dashboard 0.9 that changes something (test_every_action_is_listed_here keeps
# this list complete): (endpoint, method, path).
ACTIONS = [
    ("rq_dashboard.delete_job_view", "POST", "/job/{job_id}/delete"),
    ("rq_dashboard.requeue_job_view", "POST", "/job/{job_id}/requeue"),
    ("rq_dashboard.requeue_all", "POST", "/requeue/{queue}"),
    ("rq_dashboard.empty_queue", "POST", "/queue/{queue}/queued/empty"),
    ("rq_dashboard.empty_queue", "POST", "/queue/{queue}/failed/empty"),
    ("rq_dashboard.compact_queue", "POST", "/queue/{queue}/compact"),
]
ACTION_IDS = ["delete", "requeue", "requeue-all", "empty-queued", "empty-failed", "compact"]
READ_ONLY_PATHS = [
    "/",
    "/0/view/workers",
    f"/0/view/jobs/{QUEUE}/failed/8/asc/1",
    "/0/data/queues.json",
    f"/0/data/jobs/{QUEUE}/failed/8/asc/1.json",
    "/0/data/workers.json",
]


def redis_url_of(redis_proc) -> str:
    return f"redis://{redis_proc.host}:{redis_proc.port}/0"


@pytest.fixture(scope="module")
def open_dashboard(redis_proc):
    """As ``make dashboard`` starts by default: no credentials."""
    with served_dashboard(redis_url_of(redis_proc)) as port:
        yield port


@pytest.fixture(scope="module")
def locked_dashboard(redis_proc):
    with served_dashboard(redis_url_of(redis_proc), DASHBOARD_USER=USER, DASHBOARD_PASSWORD=PASSWORD) as port:
        yield port


@pytest.fixture
def failed_job(redis_url, rq_redis) -> Job:
    """Every action has something to destroy or requeue."""
    return failed_task7_job(rq_redis)


def path_of(template: str, job: Job) -> str:
    return template.format(job_id=job.id, queue=QUEUE)


def assert_untouched(job: Job) -> None:
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert job.id in FailedJobRegistry(QUEUE, connection=job.connection).get_job_ids()


def own_origin(port: int) -> dict[str, str]:
    """What Chromium sends with a POST made by one of the dashboard's own pages."""
    return {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}


def test_every_action_is_listed_here():
    app = course.dashboard.create_dashboard()
    actions = {rule.endpoint for rule in app.url_map.iter_rules()} - course.dashboard.READ_ONLY_ENDPOINTS

    assert actions == {endpoint for endpoint, _, _ in ACTIONS}


# Without credentials -------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint, method, path", ACTIONS, ids=ACTION_IDS)
def test_without_credentials_every_action_is_refused(endpoint, method, path, failed_job, open_dashboard):
    answer = request(open_dashboard, path_of(path, failed_job), method, own_origin(open_dashboard))

    assert answer.status == 403
    assert answer.json() == {
        "error": "Dashboard actions are disabled: set DASHBOARD_USER and DASHBOARD_PASSWORD to enable them"
    }
    assert_untouched(failed_job)


@pytest.mark.parametrize("path", READ_ONLY_PATHS)
def test_without_credentials_the_pages_work(path, failed_job, open_dashboard):
    assert request(open_dashboard, path).status == 200


# With credentials ----------------------------------------------------------------------------

WRONG_CREDENTIALS = {
    "none": {},
    "wrong password": basic_auth(USER, "not-it"),
    "wrong user": basic_auth("someone", PASSWORD),
    "password as user": basic_auth(f"{USER}:{PASSWORD}", ""),
}


@pytest.mark.parametrize("headers", WRONG_CREDENTIALS.values(), ids=WRONG_CREDENTIALS.keys())
@pytest.mark.parametrize("path", ["/", "/0/data/queues.json", "/static/js/jquery-3.5.1.min.js"])
def test_with_credentials_set_nothing_answers_without_them(path, headers, locked_dashboard):
    answer = request(locked_dashboard, path, headers=headers)

    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="RQ Dashboard"'
    assert "DASHBOARD_USER" in answer.json()["error"]


@pytest.mark.parametrize("endpoint, method, path", ACTIONS, ids=ACTION_IDS)
def test_with_credentials_an_action_without_them_is_refused(
    endpoint, method, path, failed_job, locked_dashboard
):
    answer = request(locked_dashboard, path_of(path, failed_job), method, own_origin(locked_dashboard))

    assert answer.status == 401
    assert_untouched(failed_job)


def test_with_credentials_the_dashboards_own_page_can_delete_a_job(failed_job, locked_dashboard):
    headers = {**basic_auth(), **own_origin(locked_dashboard)}

    answer = request(locked_dashboard, f"/job/{failed_job.id}/delete", "POST", headers)

    assert (answer.status, answer.json()) == (200, {"status": "OK"})
    assert not Job.exists(failed_job.id, connection=failed_job.connection)


def test_with_credentials_a_failed_job_can_be_requeued(failed_job, locked_dashboard):
    headers = {**basic_auth(), **own_origin(locked_dashboard)}

    answer = request(locked_dashboard, f"/job/{failed_job.id}/requeue", "POST", headers)

    assert (answer.status, answer.json()) == (200, {"status": "OK"})
    assert failed_job.get_status(refresh=True) == JobStatus.QUEUED


# Host, Origin, method: refused whatever the credentials ------------------------------------

FOREIGN_HOSTS = ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}", "127.0.0.1:1", ""]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
@pytest.mark.parametrize(
    "method, path", [("GET", "/"), ("GET", "/0/data/queues.json"), ("POST", ACTIONS[3][2])]
)
def test_a_foreign_host_is_refused(host, method, path, failed_job, locked_dashboard):
    headers = {**basic_auth(), "Host": host.format(port=locked_dashboard)}

    answer = request(locked_dashboard, path_of(path, failed_job), method, headers)

    # Refused by the check every course server makes (a foreign name: course/web.py), or by the
    # dashboard's own, which also wants its port.
    assert answer.status == 400
    error = answer.json()["error"]
    assert error == "Bad Request" or error.startswith("Unknown Host"), error
    assert_untouched(failed_job)


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
def test_the_dashboards_own_addresses_are_served(host, locked_dashboard):
    headers = {**basic_auth(), "Host": host.format(port=locked_dashboard)}

    assert request(locked_dashboard, "/0/data/queues.json", headers=headers).status == 200


def test_the_host_setting_is_served_too(redis_url):
    """Any 127.x.y.z is loopback on Linux: a name for the dashboard that only HOST makes valid."""
    host = "127.0.0.2"
    with served_dashboard(redis_url, host=host) as port:
        assert request(port, "/", host=host).status == 200
        assert request(port, "/", headers={"Host": f"127.0.0.1:{port}"}, host=host).status == 200
        assert request(port, "/", headers={"Host": f"127.0.0.3:{port}"}, host=host).status == 400


def test_an_ipv6_host_is_matched_in_brackets():
    assert "[::1]:9181" in course.dashboard.dashboard_addresses("::1", 9181)


CROSS_ORIGIN = {
    "another site": {"Origin": "http://evil.example"},
    "another port": {"Origin": "http://127.0.0.1:1"},
    "https": {"Origin": "https://127.0.0.1:{port}"},
    "sandboxed page": {"Origin": "null"},
    "cross-site fetch": {"Sec-Fetch-Site": "cross-site"},
    "same-site fetch": {"Sec-Fetch-Site": "same-site"},
    "own origin, cross-site fetch": {"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"},
}


@pytest.mark.parametrize("origin", CROSS_ORIGIN.values(), ids=CROSS_ORIGIN.keys())
@pytest.mark.parametrize("endpoint, method, path", ACTIONS, ids=ACTION_IDS)
def test_a_cross_origin_action_is_refused(endpoint, method, path, origin, failed_job, locked_dashboard):
    headers = {
        **basic_auth(),
        **{name: value.format(port=locked_dashboard) for name, value in origin.items()},
    }

    answer = request(locked_dashboard, path_of(path, failed_job), method, headers)

    assert answer.status == 403
    assert answer.json() == {
        "error": "Cross-origin request refused: actions come from the dashboard's own pages"
    }
    assert_untouched(failed_job)


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
@pytest.mark.parametrize("endpoint, method_, path", ACTIONS, ids=ACTION_IDS)
def test_an_action_by_another_method_is_refused(
    endpoint, method_, path, method, failed_job, locked_dashboard
):
    answer = request(locked_dashboard, path_of(path, failed_job), method, basic_auth())

    assert answer.status == 405
    assert answer.headers["Allow"] == "POST"
    if method != "HEAD":
        assert answer.json() == {"error": "Method Not Allowed"}
    assert_untouched(failed_job)


# Every action answers JSON -------------------------------------------------------------------


def test_every_action_answers_json_even_on_a_fresh_dashboard(redis_url, rq_redis, failed_job):
    """The first request a fresh dashboard gets is an action: rq-dashboard had no connection yet."""
    never_failed = Queue(QUEUE, connection=rq_redis).enqueue("os.getcwd", job_id=next_job_ids(rq_redis)[0])
    requests = [
        ("/queue/no-such-queue/queued/empty", 200, {"status": "OK"}),
        ("/queue/{queue}/no-such-registry/empty", 200, {"status": "OK"}),
        ("/job/no-such-job/delete", 200, {"status": "ERROR"}),
        ("/job/no-such-job/requeue", 404, {"error": "No such job: rq:job:no-such-job"}),
        (f"/job/{never_failed.id}/requeue", 409, None),
        ("/queue/{queue}/compact", 200, {"status": "OK"}),
        ("/requeue/{queue}", 200, {"status": "OK", "count": 1}),
        ("/queue/{queue}/failed/empty", 200, {"status": "OK"}),
        ("/queue/{queue}/finished/empty", 200, {"status": "OK"}),
        ("/queue/{queue}/queued/empty", 200, {"status": "OK"}),
    ]

    with served_dashboard(redis_url, DASHBOARD_USER=USER, DASHBOARD_PASSWORD=PASSWORD) as port:
        headers = {**basic_auth(), **own_origin(port)}
        answers = [request(port, path_of(path, failed_job), "POST", headers) for path, _, _ in requests]

    for (path, status, body), answer in zip(requests, answers, strict=True):
        assert (path, answer.status) == (path, status)
        assert answer.json() == (body or {"error": answer.json().get("error")})
    assert Queue(QUEUE, connection=rq_redis).count == 0


# The pages run only their own scripts and are not framed -----------------------------------


@pytest.mark.parametrize("path", READ_ONLY_PATHS[:3])
def test_pages_run_only_their_own_scripts_and_cannot_be_framed(path, failed_job, open_dashboard):
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in request(open_dashboard, path).headers["Content-Security-Policy"].split(";")
    )

    assert policy["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'sha256-" in policy["script-src"]


# Failed logins: logged and answered late ------------------------------------------------------

FAILED_LOGIN = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ dashboard: failed login from 127\.0\.0\.1 as user 'someone' "
    r"\(failure (\d+) from this address, answered after ([\d.]+) s\)"
)
# Not the password, and found nowhere else: its absence from the log means it was never written.
TRIED_PASSWORD = "qzwa-tried-pvxe"


def timed_answers(port: int, tries: list[dict[str, str]]) -> list[tuple[int, float]]:
    """(status, seconds) of each request, one after the other on one kept-alive connection: one
    server process answers them all, so one count of failures applies."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    answers = []
    try:
        for headers in tries:
            started = time.monotonic()
            connection.request("GET", "/0/data/queues.json", headers=headers)
            with connection.getresponse() as response:
                response.read()
            answers.append((response.status, time.monotonic() - started))
    finally:
        connection.close()
    return answers


def test_failed_logins_are_logged_and_slowed_and_the_right_one_is_not(redis_url):
    wrong = basic_auth("someone", TRIED_PASSWORD)
    tries = [{}, wrong, wrong, wrong, basic_auth()]  # a browser's first request has no credentials

    with serving(
        "course/dashboard.py", redis_url, DASHBOARD_USER=USER, DASHBOARD_PASSWORD=PASSWORD
    ) as server:
        answers = timed_answers(server.port, tries)
        _, stdout, stderr = server.stop()

    assert [status for status, _ in answers] == [401, 401, 401, 401, 200]
    logged = [
        FAILED_LOGIN.fullmatch(line) for line in stderr.splitlines() if not line.startswith("Serving on ")
    ]
    assert all(logged), stderr
    delays = [float(line.group(2)) for line in logged]
    assert [int(line.group(1)) for line in logged] == [1, 2, 3]
    assert delays == [
        course.dashboard.FIRST_DELAY_SECONDS * 2**failure for failure in range(3)
    ]  # doubling from the first
    # Each failure was answered no sooner than its delay; the right credentials not made to wait
    # the delay the next failure would get.
    assert all(seconds >= delay for (_, seconds), delay in zip(answers[1:4], delays, strict=True))
    assert answers[4][1] < delays[-1] * 2
    assert TRIED_PASSWORD not in stdout + stderr


def test_the_delay_doubles_up_to_its_bound_and_is_forgotten_after_a_quiet_while(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(course.dashboard.time, "monotonic", lambda: clock[0])
    failed_logins = course.dashboard.FailedLogins()

    delays = [failed_logins.record("127.0.0.1")[1] for _ in range(8)]
    other = failed_logins.record("127.0.0.2")
    clock[0] += course.dashboard.FORGET_SECONDS + 1
    after_a_while = failed_logins.record("127.0.0.1")

    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert max(delays) == course.dashboard.MAX_DELAY_SECONDS
    assert other == (1, 0.25)  # per address
    assert after_a_while == (1, 0.25)


def test_the_addresses_remembered_are_bounded(monkeypatch):
    monkeypatch.setattr(course.dashboard, "MAX_ADDRESSES", 3)
    failed_logins = course.dashboard.FailedLogins()

    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"):
        failed_logins.record(address)

    assert list(failed_logins.by_address) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]


@pytest.mark.parametrize(
    "tried, logged",
    [
        ("someone", "'someone'"),
        ("line\nbreak", "'line\\nbreak'"),
        ("x" * 100, repr("x" * 64)),
        (f"me {PASSWORD}", "(not logged: it holds the dashboard's password)"),
    ],
    ids=["a name", "a newline", "a long name", "the password in the name field"],
)
def test_a_user_name_is_logged_on_one_line_and_never_the_password(tried, logged):
    assert course.dashboard.logged_name(tried, PASSWORD) == logged
