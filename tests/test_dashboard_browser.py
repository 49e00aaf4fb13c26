"""The dashboard in a real browser: headless Chromium, after the page's own scripts ran.

After task 7, the queues page lists the course's queue with its counts, the failed jobs
show their error message and every id is a Kue-style integer. A page of another origin
that sends the dashboard's actions (fetch, an image) leaves the jobs where they were.
Without credentials, each page says at its top that actions are disabled and how to enable
them, and a click on Requeue shows the refusal (the browser is driven over its DevTools
protocol: the click lands where the button is drawn). Needs Debian's ``chromium``: skipped
without it, except under CI, where it fails.
"""

from __future__ import annotations

import base64
import fcntl
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from course import expected

import pytest
from rq.job import JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from checker.lessons import lines, run_script
from tests.support import PASSWORD, USER, failed_task7_job, served_dashboard, stopped_output

pytestmark = pytest.mark.timeout(300)

QUEUE = "push_notification_code_2"
# Virtual time lets the page's scripts run and its data requests answer before the DOM is read.
VIRTUAL_TIME_BUDGET_MS = 8000
BROWSER_TIMEOUT_SECONDS = 120
INSTALL_HINT = "headless Chromium is not installed: sudo apt-get install -y chromium (Debian's package)"


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    return path


def chromium_command(chromium: str, profile: Path) -> list[str]:
    """Headless, and quiet on the network: without these flags it tries Google's services and fails."""
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]


@dataclass
class Rendered:
    dom: str
    console: list[str]  # what the page logged, Content Security Policy violations included

    def policy_violations(self) -> list[str]:
        return [line for line in self.console if "Content Security Policy" in line]


def rendered(chromium: str, profile: Path, url: str) -> Rendered:
    """The page's DOM once its scripts ran (``--dump-dom``), and its console."""
    result = subprocess.run(
        [
            *chromium_command(chromium, profile),
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_SECONDS,
        check=True,
    )
    return Rendered(result.stdout, [line for line in result.stderr.splitlines() if ":CONSOLE" in line])


class Rows(HTMLParser):
    """The rows of a page's tables: each ``<tr>``'s attributes and the text of its cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[dict[str, str | None], list[str]]] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append((dict(attrs), []))
        elif tag == "td" and self.rows:
            self.rows[-1][1].append("")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][1][-1] += data


def rows_of(page: str, role: str) -> list[tuple[dict[str, str | None], list[str]]]:
    """The rows the page's scripts rendered, by their ``data-role`` (templates are not parsed as HTML)."""
    parser = Rows()
    parser.feed(page)
    return [
        (attrs, [cell.strip() for cell in cells])
        for attrs, cells in parser.rows
        if attrs.get("data-role") == role
    ]


@pytest.fixture
def task7_ids(processors, redis_url) -> list[int]:
    """Task 7 run as a learner runs it; the processor stopped, so every job is final."""
    processor = processors("7_job_processor.py")
    creator = run_script("7_job_creator.py", redis_url)
    assert creator.returncode == 0, creator.stderr
    stopped_output(processor)
    return expected.created_ids(lines(creator.stdout))


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``):
    the browser reads commands on its fd 3 and writes answers and events on its fd 4, each message
    JSON ended by a NUL byte. One page, ``session``; ``call`` waits for a command's answer."""

    def __init__(self, chromium: str, profile: Path) -> None:
        any_commands_read, self.commands = os.pipe()
        self.answers, any_answers_write = os.pipe()
        # Both above fd 4: moved onto fds 3 and 4 one after the other, neither overwrites the other.
        low_fds = (any_commands_read, any_answers_write)
        commands_read, answers_write = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5) for fd in low_fds)
        # bash puts the pipes on fds 3 and 4, then becomes the browser (no preexec_fn, which is
        # unsafe in a process with threads; dash takes no fd above 9).
        self.process = subprocess.Popen(
            [
                "bash",
                "-c",
                f'exec "$@" 3<&{commands_read} 4>&{answers_write}',
                "bash",
                *chromium_command(chromium, profile),
                "--window-size=1280,900",
                "--remote-debugging-pipe",
            ],
            pass_fds=(commands_read, answers_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in (commands_read, answers_write, *low_fds):
            os.close(fd)
        self.unread = b""
        self.last_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def message(self) -> dict:
        while b"\0" not in self.unread:
            chunk = os.read(self.answers, 1 << 16)
            if not chunk:
                raise EOFError("the browser closed its DevTools pipe")
            self.unread += chunk
        message, _, self.unread = self.unread.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, *, on_page: bool = False, **params: object) -> dict:
        self.last_id += 1
        command = {"id": self.last_id, "method": method, "params": params}
        if on_page:
            command["sessionId"] = self.session
        os.write(self.commands, json.dumps(command).encode() + b"\0")
        while (answer := self.message()).get("id") != self.last_id:
            pass  # an event
        assert "error" not in answer, answer
        return answer["result"]

    def evaluate(self, expression: str) -> object:
        """The value of a JavaScript expression on the page."""
        return self.call("Runtime.evaluate", on_page=True, expression=expression, returnByValue=True)[
            "result"
        ].get("value")

    def wait_for(self, expression: str) -> object:
        """The expression's value once it is truthy (None if it never is: the test then fails)."""
        deadline = time.monotonic() + BROWSER_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if value := self.evaluate(expression):
                return value
            time.sleep(0.1)
        return None

    def click(self, selector: str) -> None:
        """A mouse click at the middle of where the element is drawn, as a person clicks it."""
        box = self.evaluate(f"JSON.stringify(document.querySelector({selector!r}).getBoundingClientRect())")
        box = json.loads(box)
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        for event in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent", on_page=True, type=event, x=x, y=y, button="left", clickCount=1
            )

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", on_page=True)["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.process.wait(timeout=BROWSER_TIMEOUT_SECONDS)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            os.close(self.commands)
            os.close(self.answers)


@pytest.fixture
def browser(chromium, tmp_path) -> Iterator[DevTools]:
    devtools = DevTools(chromium, tmp_path / "profile")
    try:
        yield devtools
    finally:
        devtools.close()


def test_after_task7_the_browser_shows_queues_counts_errors_and_integer_ids(
    chromium, tmp_path, redis_url, task7_ids
):
    blacklisted, others = task7_ids[:2], task7_ids[2:]
    with served_dashboard(redis_url) as port:
        base = f"http://127.0.0.1:{port}"
        queues_page = rendered(chromium, tmp_path, f"{base}/")
        failed_page = rendered(chromium, tmp_path, f"{base}/0/view/jobs/{QUEUE}/failed/20/asc/1")
        finished_page = rendered(chromium, tmp_path, f"{base}/0/view/jobs/{QUEUE}/finished/20/asc/1")
        queues = rows_of(queues_page.dom, "queue")
        failed, finished = rows_of(failed_page.dom, "job"), rows_of(finished_page.dom, "job")

        # The policy lets the pages' own scripts run: they rendered these rows.
        assert [page.policy_violations() for page in (queues_page, failed_page, finished_page)] == [[]] * 3
        # Queue, then its queued, deferred, scheduled, started, finished, failed and canceled jobs.
        assert [cells for _, cells in queues] == [[QUEUE, "0", "0", "0", "0", str(len(others)), "2", "0"]]
        # Two workers finish jobs in any order: the registries list them by when they ended.
        failed_ids = {int(attrs["data-job-id"]): cells[0] for attrs, cells in failed}
        assert sorted(failed_ids) == blacklisted
        for job_id, phone_number in zip(blacklisted, expected.BLACKLISTED, strict=True):
            assert f"Phone number {phone_number} is blacklisted" in failed_ids[job_id]
        assert sorted(int(attrs["data-job-id"]) for attrs, _ in finished) == others


# Markup from Redis ---------------------------------------------------------------------------

# A failure message any job data could produce; it marks the page if it ever runs.
INJECTED = "<img src=\"x\" onerror=\"document.body.setAttribute('data-injected', 'ran')\">"


def test_markup_in_a_jobs_error_does_not_run_on_the_job_page(chromium, tmp_path, redis_url, rq_redis):
    job = failed_task7_job(
        rq_redis, exc_string=f"Phone number {INJECTED} is blacklisted", serializer=JSONSerializer
    )

    with served_dashboard(redis_url) as port:
        page = rendered(chromium, tmp_path, f"http://127.0.0.1:{port}/0/view/job/{job.id}")

        assert f"<strong>Origin queue</strong>:<br>{QUEUE}</p>" in page.dom  # the page's own scripts ran
        assert "is blacklisted</pre>" in page.dom  # the error message is shown
        assert "data-injected" not in page.dom.split("<body", 1)[1].split(">", 1)[0]
        assert page.policy_violations()  # the browser blocked the markup's handler


# A page of another origin --------------------------------------------------------------------


def attacker_page(dashboard: str, job_id: str) -> str:
    """What any web site could serve: the dashboard's actions, sent by fetch() and by an image."""
    return f"""<!DOCTYPE html>
<html><body>
<p id="sent">not yet</p>
<img src="{dashboard}/requeue/{QUEUE}">
<script>
Promise.allSettled([
  fetch("{dashboard}/job/{job_id}/delete", {{method: "POST", mode: "no-cors", credentials: "include"}}),
  fetch("{dashboard}/queue/{QUEUE}/failed/empty", {{method: "POST", mode: "no-cors"}}),
  fetch("{dashboard}/requeue/{QUEUE}", {{method: "POST", mode: "no-cors"}}),
]).then(function (results) {{
  document.getElementById("sent").textContent = results.map(function (r) {{ return r.status; }}).join(" ");
}});
</script>
</body></html>
"""


@pytest.fixture
def another_origin() -> Iterator[tuple[http.server.ThreadingHTTPServer, dict[str, str]]]:
    """A tiny web site on another port of 127.0.0.1, serving ``pages[path]``."""
    pages: dict[str, str] = {}

    class Site(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, pages
    server.shutdown()
    server.server_close()


def test_a_page_of_another_origin_cannot_touch_the_jobs(
    chromium, tmp_path, redis_url, rq_redis, another_origin
):
    server, pages = another_origin
    job = failed_task7_job(rq_redis)

    with served_dashboard(redis_url) as port:
        dashboard = f"http://127.0.0.1:{port}"
        rendered(chromium, tmp_path, f"{dashboard}/0/view/jobs/{QUEUE}/failed/8/asc/1")  # the learner looks
        pages["/"] = attacker_page(dashboard, job.id)
        page = rendered(
            chromium, tmp_path, f"http://127.0.0.1:{server.server_port}/"
        )  # then browses elsewhere

        assert '<p id="sent">fulfilled fulfilled fulfilled</p>' in page.dom  # the browser did send them
        assert job.get_status(refresh=True) == JobStatus.FAILED
        assert FailedJobRegistry(QUEUE, connection=rq_redis).get_job_ids() == [job.id]


# Actions disabled: the page says so --------------------------------------------------------------

# The text a person sees: innerText holds only what is rendered.
SHOWN_TEXT = "document.body.innerText"
REQUEUE_BUTTON = "[data-role=requeue-job-btn]"


def test_without_credentials_the_page_says_actions_are_disabled_and_shows_a_refusal(
    browser, tmp_path, redis_url, rq_redis
):
    job = failed_task7_job(rq_redis)

    with served_dashboard(redis_url) as port:
        browser.call(
            "Page.navigate", on_page=True, url=f"http://127.0.0.1:{port}/0/view/jobs/{QUEUE}/failed/8/asc/1"
        )
        assert browser.wait_for(f"document.querySelector({REQUEUE_BUTTON!r}) !== null")  # the rows are drawn
        before = browser.evaluate(SHOWN_TEXT)
        browser.click(REQUEUE_BUTTON)
        refusal = browser.wait_for("document.getElementById('action-refused').innerText")
        browser.screenshot(tmp_path / "requeue-refused.png")  # kept with the test's files, to look at
        notice_top = browser.evaluate(
            "document.getElementById('actions-disabled').getBoundingClientRect().top"
        )

    assert before.startswith(
        "Actions (Requeue, Delete, Empty, Compact) are disabled: restart the dashboard with "
        "DASHBOARD_USER and DASHBOARD_PASSWORD set to enable them, e.g. "
        "DASHBOARD_USER=me DASHBOARD_PASSWORD='a long secret' make dashboard\n"
    )
    assert 0 <= notice_top < 200  # at the top of the window, not scrolled away
    assert "Refused (HTTP" not in before
    assert refusal == (
        "Refused (HTTP 403): Dashboard actions are disabled: set DASHBOARD_USER and DASHBOARD_PASSWORD "
        "to enable them"
    )
    assert job.get_status(refresh=True) == JobStatus.FAILED


def test_with_credentials_no_notice_is_shown(browser, redis_url, rq_redis):
    failed_task7_job(rq_redis)
    with served_dashboard(redis_url, DASHBOARD_USER=USER, DASHBOARD_PASSWORD=PASSWORD) as port:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        browser.call("Network.enable", on_page=True)
        browser.call("Network.setExtraHTTPHeaders", on_page=True, headers={"Authorization": f"Basic {token}"})
        browser.call(
            "Page.navigate", on_page=True, url=f"http://127.0.0.1:{port}/0/view/jobs/{QUEUE}/failed/8/asc/1"
        )
        assert browser.wait_for(f"document.querySelector({REQUEUE_BUTTON!r}) !== null")
        shown = browser.evaluate(SHOWN_TEXT)

    assert "disabled" not in shown
    assert "Refused" not in shown
