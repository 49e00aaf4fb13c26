"""Bad input, swept at random: both APIs answer anything in JSON, and task 8 refuses bad jobs whole.

Hypothesis throws random paths, ids and methods at the stock and seat APIs: in Flask's test
client on fakeredis, where most examples go, then in fewer examples at ``python 9_stock.py``
and ``python 100_seat.py`` over real HTTP on a real Redis. Every answer must be JSON, never
a 5xx while Redis is up, and never show a traceback, a file path or anything of Redis.

Task 8's ``create_push_notifications_jobs`` gets random non-lists and lists holding a bad
item: it raises a clear error, and nothing at all is enqueued (the whole batch is checked
before the first job is queued).
"""

from __future__ import annotations

import importlib
import json
import posixpath
import re
import string
from collections.abc import Iterator
from urllib.parse import quote, unquote, unquote_to_bytes

from course import expected
from course.ids import JOB_IDS_KEY
from course.jobs import course_queue

import fakeredis
import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rq import Queue, Worker

from checker.lessons import ROOT
from tests.support import Answer, request, serving

stock = importlib.import_module("9_stock")
seat = importlib.import_module("100_seat")
job_module = importlib.import_module("8_job")

pytestmark = pytest.mark.timeout(120)

JSON = "application/json"
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
# What a client may ever get: the course's 200s, an unknown path, a wrong method.
ANSWER_STATUSES = {200, 404, 405}
# Found in a body, these would mean an internal detail reached the client (compared in lower case).
LEAKS = ("traceback", "exception", str(ROOT).lower(), ".py", "site-packages", "redis")
# The stock API's ids: any run of ASCII decimal digits (9_stock.ItemIdConverter).
ITEM_ID = re.compile(r"[0-9]+")
# The seat routes that queue a job or start a processor: a real server's sweep leaves their
# GETs out (a HEAD there is refused, and the sweep checks it changed nothing).
SEAT_SIDE_EFFECTS = {"/reserve_seat", "/process"}


def sweep(max_examples: int) -> settings:
    """A sweep's settings. Function-scoped fixtures run once per test, not per example: the apps
    keep their state from one example to the next, as a long-running server does."""
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )


# Most examples go to the test client, which is fast; fewer to real servers and to task 8.
FAKE_SWEEP = sweep(300)
REAL_SWEEP = sweep(150)
JOBS_SWEEP = sweep(150)


# Requests -----------------------------------------------------------------------------------


def quoted(raw: str | bytes) -> str:
    """``raw`` as one path segment on the wire: every byte but letters and digits percent-encoded."""
    return quote(raw, safe="")


# Text a client may put raw in a path (non-ASCII goes as UTF-8, as curl sends it): no controls
# or spaces, none of the ASCII characters granian refuses there (``< > ` ``), nor ``? # / %``.
raw_text = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"), blacklist_characters="?#/%<>`"
    ),
    min_size=1,
    max_size=20,
)
ids = st.one_of(
    st.integers().map(str),  # negatives, zero
    st.integers(min_value=10**8, max_value=10**40).map(str),  # around and past 9 digits
    st.floats().map(str),  # 1.5, -0.0, 1e+20, nan, inf
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.text(string.ascii_letters, min_size=1, max_size=8),
    st.builds(
        lambda pad, number, end: f"{pad}{number}{end}",
        st.sampled_from(["", " ", "\t", "\n", "\u00a0", "+", "0", "-"]),
        st.integers(1, 4),
        st.sampled_from(["", " ", "\n", "\r\n", "\x00", ".0", "e0", "abc"]),
    ),
    st.sampled_from(["\u0661", "\uff11", "\u00b9", "1_0", "0x1", "1,0"]),  # digits that are not ASCII digits
    st.text(max_size=8),  # any unicode at all
)
# An id as it goes on the wire: percent-encoded text, or arbitrary bytes (not always UTF-8).
wire_ids = st.one_of(ids.map(quoted), st.binary(min_size=1, max_size=8).map(quoted))
segments = st.one_of(
    st.sampled_from(["list_products", "reserve_product", "available_seats", "reserve_seat", "process"]),
    st.sampled_from(["", ".", "..", "%2e%2e", "%2F", "%", "%zz", "%%", "console", "static", "__debugger__"]),
    wire_ids,
    raw_text,
    # Very long segments, well within what an HTTP server accepts in a request line.
    st.builds(
        lambda text, count: text * count, st.sampled_from(["a", "9", "%00", "%C3%A9"]), st.integers(200, 2000)
    ),
)
queries = st.sampled_from(
    ["", "?debug=1", "?__debugger__=yes&cmd=resource&f=debugger.js", "?itemId=1", "?x=%FF&y=..%2F"]
)
paths = st.builds(
    lambda parts, query: "/" + "/".join(parts) + query, st.lists(segments, min_size=0, max_size=5), queries
)


# Requests that once got an answer outside JSON: every fake sweep tries them first.
KNOWN_TRAPS = [
    ("GET", "/list_products//1"),  # Werkzeug's slash-merging redirect, an HTML page
    ("OPTIONS", "/static/x"),  # Flask's static route, with its automatic HTML OPTIONS answer
    ("GET", "/static/..%2F9_stock.py"),
    ("GET", "/console"),  # Werkzeug's debugger console
    ("GET", "/list_products?__debugger__=yes&cmd=resource&f=debugger.js"),
]


def with_known_traps(test):
    """``test`` (a sweep taking ``method`` and ``path``) with each of KNOWN_TRAPS as an explicit example."""
    for method, path in KNOWN_TRAPS:
        test = example(method=method, path=path)(test)
    return test


def assert_safe_answer(method: str, answer: Answer) -> None:
    """An answer a client may get: a known status, JSON, no internal detail."""
    assert answer.status < 500
    assert answer.status in ANSWER_STATUSES
    assert answer.content_type == JSON
    if method == "HEAD":
        assert answer.raw == b""
        return
    json.loads(answer.raw)
    text = answer.raw.decode().lower()
    assert not [leak for leak in LEAKS if leak in text], answer.raw


def client_answer(client, method: str, target: str) -> Answer:
    """Request ``target`` in the test client exactly as a WSGI server hands it to the app.

    Passed as a URL, a target such as ``//name`` would be read as a host name: the environ is
    made here instead, with the path percent-decoded to bytes, shown as latin-1 (PEP 3333).
    """
    path, _, query = target.partition("?")
    environ = {
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "REQUEST_URI": target.encode().decode("latin-1"),
    }
    response = client.open("/", method=method, environ_overrides=environ)
    return Answer(response.status_code, response.content_type, response.get_data(), response.headers)


# In Flask's test client, on fakeredis ---------------------------------------------------------


@FAKE_SWEEP
@with_known_traps
@given(method=st.sampled_from(METHODS), path=paths)
def test_the_stock_api_answers_any_request_in_json(stock_client, method, path):
    assert_safe_answer(method, client_answer(stock_client, method, path))


@FAKE_SWEEP
@given(
    route=st.sampled_from(["/list_products", "/reserve_product"]),
    raw_id=st.one_of(ids, st.binary(max_size=8)),
)
def test_a_stock_id_is_a_product_answer_only_if_it_is_a_plain_number(stock_client, stock_db, route, raw_id):
    status, content_type, body = client_answer(stock_client, "GET", f"{route}/{quoted(raw_id)}")

    text = raw_id.decode("utf-8", "replace") if isinstance(raw_id, bytes) else raw_id
    if ITEM_ID.fullmatch(text):
        assert (status, content_type) == (200, JSON)
        answer = json.loads(body)
        if int(text) in {product["itemId"] for product in expected.PRODUCTS}:
            assert answer["itemId"] == int(text)
        else:
            assert answer == {"status": "Product not found"}
    else:
        assert (status, content_type, body) == (404, JSON, '{"error":"Not Found"}')
    # Reservations touch the four products' keys only, and never take a stock below 0.
    stock_left = {key: int(stock_db.get(key)) for key in stock_db.scan_iter()}
    assert set(stock_left) <= {expected.stock_key(product["itemId"]) for product in expected.PRODUCTS}
    assert min(stock_left.values(), default=0) >= 0


@FAKE_SWEEP
@with_known_traps
@given(method=st.sampled_from(METHODS), path=paths)
def test_the_seat_api_answers_any_request_in_json(seat_client, method, path):
    assert_safe_answer(method, client_answer(seat_client, method, path))


# Real servers over real HTTP, on a real Redis -------------------------------------------------


def serving_quietly(script: str, url: str) -> Iterator[int]:
    """``python SCRIPT`` on a free port; stopped at the end, having printed nothing at all."""
    with serving(script, url) as server:
        yield server.port
        assert server.stop() == (0, "", "")


@pytest.fixture
def real_stock_server(redis_url) -> Iterator[int]:
    yield from serving_quietly("9_stock.py", redis_url)


@pytest.fixture
def real_seat_server(redis_url) -> Iterator[int]:
    yield from serving_quietly("100_seat.py", redis_url)


@REAL_SWEEP
@given(method=st.sampled_from(METHODS), path=paths)
def test_the_stock_server_answers_any_request_in_json(real_stock_server, method, path):
    assert_safe_answer(method, request(real_stock_server, path, method))


# Request targets that granian's HTTP parser refuses before any app sees them.
UNPARSABLE_TARGETS = [
    b"/list_products/`",
    b"/list_products/<1>",
    b"/list_products/\xff",
    b"/a b",
    b"/\x00",
    b"/\x7f",
]


def test_a_request_line_the_http_server_cannot_parse_gets_a_bare_400(real_stock_server):
    """No JSON there (the app never sees the request), but no body either: nothing leaks."""
    for target in UNPARSABLE_TARGETS:
        answer = request(real_stock_server, target)
        assert (answer.status, answer.raw) == (400, b""), target


def may_queue_or_process(method: str, path: str) -> bool:
    """Whether a request could reach /reserve_seat or /process, however its path is spelled."""
    decoded = unquote(path.partition("?")[0])
    spellings = {decoded, posixpath.normpath(decoded), re.sub("/+", "/", decoded)}
    return method == "GET" and bool(spellings & SEAT_SIDE_EFFECTS)


@REAL_SWEEP
@given(
    method_and_path=st.tuples(st.sampled_from(METHODS), paths).filter(
        lambda method_and_path: not may_queue_or_process(*method_and_path)
    )
)
def test_the_seat_server_answers_any_request_in_json(real_seat_server, redis_url, method_and_path):
    method, path = method_and_path
    assert_safe_answer(method, request(real_seat_server, path, method))
    # Left alone, the routes with side effects queued nothing and started no processor.
    with redis.Redis.from_url(redis_url) as connection:
        assert Queue(expected.SEAT_QUEUE, connection=connection).count == 0
        assert Worker.all(connection=connection) == []


# Task 8: bad jobs are refused whole ------------------------------------------------------------


def notification_queue() -> Queue:
    """Task 8's queue on a fresh fake Redis: each example starts from an empty one."""
    return course_queue(job_module.QUEUE_NAME, fakeredis.FakeRedis())


def assert_nothing_enqueued(queue: Queue) -> None:
    assert queue.count == 0
    # Not even an id was taken: the input was refused before anything touched Redis.
    assert queue.connection.get(JOB_IDS_KEY) is None


notifications = st.fixed_dictionaries({"phoneNumber": st.text(), "message": st.text()})
anything = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary())
non_lists = st.one_of(
    anything,
    st.dictionaries(st.text(), anything),
    notifications,  # one job, not a list of jobs
    st.lists(notifications).map(tuple),
    st.sets(st.integers()),
    st.frozensets(st.text()),
    st.lists(anything).map(iter),
)
not_strings = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.binary(), st.lists(st.text())
)
bad_notifications = st.one_of(
    anything,
    st.lists(st.text()),
    st.tuples(st.text(), st.text()),
    notifications.map(lambda job: list(job.items())),  # the right pairs, not as a dict
    st.dictionaries(st.sampled_from(["phoneNumber", "message", "phone", "Message"]), st.text()).filter(
        lambda job: not {"phoneNumber", "message"} <= set(job)
    ),
    st.builds(
        lambda job, key, value: {**job, key: value},
        notifications,
        st.sampled_from(["phoneNumber", "message"]),
        not_strings,
    ),
)


@JOBS_SWEEP
@given(jobs=non_lists)
def test_jobs_that_are_not_a_list_are_refused_and_nothing_is_enqueued(jobs, capsys):
    queue = notification_queue()

    with pytest.raises(job_module.NotAnArrayError, match="^Jobs is not an array$"):
        job_module.create_push_notifications_jobs(jobs, queue)

    assert_nothing_enqueued(queue)
    assert capsys.readouterr().out == ""


@JOBS_SWEEP
@given(
    before=st.lists(notifications, max_size=4),
    bad=bad_notifications,
    after=st.lists(st.one_of(notifications, anything), max_size=4),
)
def test_a_bad_job_in_the_list_is_named_and_nothing_is_enqueued(before, bad, after, capsys):
    queue = notification_queue()

    message = f"^jobs\\[{len(before)}\\] is not an object with phoneNumber and message$"
    with pytest.raises(job_module.NotANotificationError, match=message):
        job_module.create_push_notifications_jobs([*before, bad, *after], queue)

    assert_nothing_enqueued(queue)
    assert capsys.readouterr().out == ""


@JOBS_SWEEP
@given(jobs=st.lists(notifications, max_size=5))
def test_any_list_of_notifications_is_queued_exactly_in_order(jobs, capsys):
    queue = notification_queue()

    with job_module.create_push_notifications_jobs(jobs, queue):
        pass

    assert [job.args[0] for job in queue.jobs] == jobs
    assert capsys.readouterr().out.splitlines() == [
        f"Notification job created: {job_id}" for job_id in queue.job_ids
    ]
