"""``make dashboard``: rq-dashboard served against REDIS_URL shows the course's queues and jobs.

Served as a learner runs it (granian, its own port), its pages link files that exist, its
errors are JSON (Redis away included), and the Redis password never shows, whatever it holds.
"""

from __future__ import annotations

import json
import signal
import time
from html.parser import HTMLParser

import course.dashboard
from course.ids import next_job_ids

import pytest
import redis
from rq import Queue

from checker.lessons import run_script, start_script
from tests.support import (
    READY_PATH,
    SERVER_READY_SECONDS,
    SERVER_STOP_SECONDS,
    OwnRedis,
    end_for_good,
    free_port,
    request,
    served_dashboard,
)

pytestmark = pytest.mark.timeout(180)

QUEUE = "push_notification_code"


@pytest.fixture(scope="module")
def dashboard_port(redis_proc):
    with served_dashboard(f"redis://{redis_proc.host}:{redis_proc.port}/0") as port:
        yield port


def enqueue_one(redis_url: str) -> str:
    with redis.Redis.from_url(redis_url) as client:
        (job_id,) = next_job_ids(client)
        Queue(QUEUE, connection=client).enqueue(
            "6_job_processor.send_notification_job", {"phoneNumber": "4153518780"}, job_id=job_id
        )
    return job_id


def test_pages_show_the_course_queues_and_jobs(redis_url, dashboard_port):
    job_id = enqueue_one(redis_url)

    page = request(dashboard_port, "/")
    assert (page.status, page.media_type) == (200, "text/html")
    assert "RQ" in page.body

    queues = {
        queue["name"]: queue["count"]
        for queue in request(dashboard_port, "/0/data/queues.json").json()["queues"]
    }
    assert queues[QUEUE] == 1

    job_page = request(dashboard_port, f"/0/view/job/{job_id}")
    assert job_page.status == 200
    assert job_id in job_page.body


class LinkedFiles(HTMLParser):
    """The files a page makes the browser load: stylesheets, icons and scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        link = attributes.get("href") if tag == "link" else attributes.get("src") if tag == "script" else None
        if link:
            self.paths.append(link)


def linked_files(page: str) -> list[str]:
    parser = LinkedFiles()
    parser.feed(page)
    return parser.paths


@pytest.mark.parametrize("page", ["/", "/0/view/workers", f"/0/view/jobs/{QUEUE}/queued/8/asc/1"])
def test_every_file_a_page_links_is_served(page, redis_url, dashboard_port):
    enqueue_one(redis_url)
    paths = linked_files(request(dashboard_port, page).body)

    assert len(paths) >= 6  # the icon, two stylesheets, four scripts
    assert {path: request(dashboard_port, path).status for path in paths} == dict.fromkeys(paths, 200)


def test_it_serves_on_dashboard_port_whatever_port_says(redis_url):
    api_port = free_port()

    with served_dashboard(redis_url, PORT=str(api_port)) as port:
        assert request(port, "/0/data/queues.json").status == 200
        with pytest.raises(ConnectionRefusedError):
            request(api_port, "/")


def test_the_default_port_is_9181_not_the_apis(monkeypatch):
    monkeypatch.delenv("DASHBOARD_PORT", raising=False)
    monkeypatch.setenv("PORT", "1245")
    client = course.dashboard.create_dashboard().test_client()

    assert client.get("/favicon.ico", base_url="http://127.0.0.1:9181").status_code == 200
    assert client.get("/favicon.ico", base_url="http://127.0.0.1:1245").status_code == 400


def test_a_bad_dashboard_port_is_one_line_and_nothing_starts(redis_url):
    result = run_script("course/dashboard.py", redis_url, DASHBOARD_PORT="http", PORT="1245")

    assert result.returncode != 0
    assert "DASHBOARD_PORT" in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("only", ["DASHBOARD_USER", "DASHBOARD_PASSWORD"])
def test_credentials_come_in_pairs(only, redis_url):
    result = run_script("course/dashboard.py", redis_url, **{only: "x", "DASHBOARD_PORT": str(free_port())})

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "DASHBOARD_USER and DASHBOARD_PASSWORD must be set together\n"


# Redis away ----------------------------------------------------------------------------------

PAGES = ["/", "/0/view/workers", f"/0/view/jobs/{QUEUE}/queued/8/asc/1", "/0/view/job/1"]
DATA = [
    "/0/data/queues.json",
    "/0/data/workers.json",
    f"/0/data/jobs/{QUEUE}/queued/8/asc/1.json",
    "/0/data/job/1.json",
]


def assert_not_connected_answers(port: int, reason: str) -> None:
    for path in PAGES + DATA:
        answer = request(port, path)
        assert answer.status == 503, path
        error = answer.json()["error"]
        assert error.startswith("Redis client not connected to the server: "), path
        assert reason in error, path


def test_redis_down_is_a_json_503_with_the_course_line_on_every_route(dead_redis_url):
    with served_dashboard(dead_redis_url) as port:
        assert_not_connected_answers(port, "Connection refused")


def test_a_refused_password_is_a_json_503_with_the_course_line(tmp_path):
    server = OwnRedis(tmp_path, persistent=False)
    server.start()
    try:
        with redis.Redis.from_url(server.url) as client:
            client.config_set("requirepass", "the-right-one")
        with served_dashboard(server.url.replace("://", "://:a-wrong-one@")) as port:
            assert_not_connected_answers(port, "invalid username-password pair")
    finally:
        server.stop()


# The password never shows ------------------------------------------------------------------

# (URL userinfo as written, the password Redis is given). Each fragment is a word that appears
# nowhere else, so finding any one of them in an answer means part of the password leaked.
PASSWORDS = {
    "unencoded @": (":qzwa@pvxe", "qzwa@pvxe"),
    "unencoded @ twice": (":qzwa@pvxe@ykuj", "qzwa@pvxe@ykuj"),
    "unencoded :": (":qzwa:pvxe", "qzwa:pvxe"),
    "user and unencoded : and @": ("default:qzwa:pvxe@ykuj", "qzwa:pvxe@ykuj"),
    "encoded /": (":qzwa%2Fpvxe", "qzwa/pvxe"),
    "encoded @": (":qzwa%40pvxe", "qzwa@pvxe"),
}
FRAGMENTS = ("qzwa", "pvxe", "ykuj")


def every_answer(port: int, job_id: str) -> dict[str, str]:
    paths = [
        "/",
        "/0/",
        "/0/view",
        "/0/view/queues",
        "/0/view/workers",
        "/0/view/jobs",
        f"/0/view/jobs/{QUEUE}/queued/8/asc/1",
        f"/0/view/job/{job_id}",
        "/0/data/queues.json",
        "/0/data/workers.json",
        f"/0/data/jobs/{QUEUE}/queued/8/asc/1.json",
        f"/0/data/job/{job_id}.json",
        "/0/view/job/no-such-job",
        "/no-such-page",
    ]
    return {path: request(port, path).body for path in paths}


@pytest.mark.parametrize("userinfo, password", PASSWORDS.values(), ids=PASSWORDS.keys())
def test_no_part_of_the_password_shows_anywhere(userinfo, password, tmp_path):
    server = OwnRedis(tmp_path, persistent=False)
    server.start()
    try:
        with redis.Redis.from_url(server.url) as client:
            client.config_set("requirepass", password)
        url = server.url.replace("://", f"://{userinfo}@")
        job_id = enqueue_one(url)
        with served_dashboard(url) as port:
            answers = every_answer(port, job_id)
            queues = json.loads(answers["/0/data/queues.json"])["queues"]
    finally:
        server.stop()

    assert [queue["name"] for queue in queues] == [QUEUE]  # the dashboard did log in to Redis
    assert f"redis://***:***@127.0.0.1:{server.port}/0" in answers["/"]
    leaks = {path: [word for word in FRAGMENTS if word in body] for path, body in answers.items()}
    assert leaks == dict.fromkeys(answers, [])


@pytest.mark.parametrize(
    "url",
    [
        "redis://:qzwa/pvxe@127.0.0.1:6379/0",
        "redis://:qzwa?pvxe#ykuj@127.0.0.1:6379/0",
        "redis://qzwa:pvxe@ykuj@127.0.0.1:6379/0",
        "rediss://qzwa@127.0.0.1:6379/0",
    ],
)
def test_masking_hides_userinfo_that_does_not_even_parse(url):
    """Characters that end the userinfo for a URL parser (/, ?, #) are still masked up to the last @."""
    assert course.dashboard.masked_url(url) == url.split("://")[0] + "://***:***@127.0.0.1:6379/0"


def test_a_url_without_userinfo_is_shown_as_it_is():
    assert course.dashboard.masked_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def answered(port: int) -> bool:
    """Whether a server answers on the port now (any status)."""
    try:
        request(port, READY_PATH)
    except OSError:
        return False
    return True


def test_it_says_where_it_serves_when_it_starts(redis_url):
    """On stderr, as ``flask run`` does, before it serves; read from the pipe as it comes."""
    port = free_port()
    process = start_script("course/dashboard.py", redis_url, DASHBOARD_PORT=str(port))
    try:
        start_line = process.stderr.readline()
        deadline = time.monotonic() + SERVER_READY_SECONDS
        while not answered(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)  # once it serves: a stop while it starts is another test's
        stdout, stderr = process.communicate(timeout=SERVER_STOP_SECONDS)
    finally:
        end_for_good(process, own_session=False)

    assert start_line == f"Serving on http://127.0.0.1:{port}\n"
    assert (process.returncode, stdout, stderr) == (0, "", "")


# Actions disabled: every page says so ----------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_says_actions_are_disabled_and_can_show_a_refusal(path, redis_url, dashboard_port):
    job_id = enqueue_one(redis_url)
    page = request(dashboard_port, path.replace("/job/1", f"/job/{job_id}")).body

    assert page.count('<div id="actions-disabled"') == 1
    assert "DASHBOARD_USER=me DASHBOARD_PASSWORD='a long secret' make dashboard" in page
    assert page.count('<div id="action-refused"') == 1
    assert page.count("ajaxError") == 1
