"""Task 9 in one process: the stock API's answers in Flask's test client, on fakeredis.

Also the JSON-only behaviour that ``course/web.py`` gives both APIs. What needs the real
server process and a real Redis (the curl session, races, Redis going away) is in
test_stock_server.py.
"""

from __future__ import annotations

import importlib
import socket
import time

from course import expected, hosts, web

import pytest
import redis
from flask import Flask, jsonify

from tests.support import MALFORMED_IDS, NOT_PRODUCT_IDS, OTHER_METHODS, UNKNOWN_PATHS, clear_stock_caches

stock = importlib.import_module("9_stock")

pytestmark = pytest.mark.timeout(60)

JSON = "application/json"
NOT_FOUND = b'{"error":"Not Found"}'
METHOD_NOT_ALLOWED = b'{"error":"Method Not Allowed"}'


# Ids that are not runs of ASCII decimal digits, as they appear in a URL.
def assert_json(response, status: int, body: bytes) -> None:
    assert (response.status_code, response.content_type, response.get_data()) == (status, JSON, body)


# The course's functions ---------------------------------------------------------------------


def test_get_item_by_id():
    assert [stock.get_item_by_id(item_id)["itemName"] for item_id in (1, 2, 3, 4)] == [
        "Suitcase 250",
        "Suitcase 450",
        "Suitcase 650",
        "Suitcase 1050",
    ]
    assert stock.get_item_by_id(12) is None
    assert stock.get_item_by_id(0) is None


def test_reserve_stock_by_id_sets_the_key(stock_db):
    stock.reserve_stock_by_id(2, 7)
    assert stock_db.get("item.2") == "7"


def test_current_stock_is_the_initial_stock_until_the_key_is_set(stock_db):
    assert [stock.get_current_reserved_stock_by_id(item_id) for item_id in (1, 2, 3, 4)] == [4, 10, 2, 5]
    stock.reserve_stock_by_id(2, 7)
    assert stock.get_current_reserved_stock_by_id(2) == 7


# The API ------------------------------------------------------------------------------------


def test_the_course_session_gives_the_spec_bodies(stock_client):
    for path, body in expected.STOCK_SESSION:
        assert_json(stock_client.get(path), 200, body.encode())


def test_each_product_reserves_its_own_stock_then_refuses(stock_client, stock_db):
    for product in expected.PRODUCTS:
        item_id, units = product["itemId"], product["initialAvailableQuantity"]
        confirmed = f'{{"status":"Reservation confirmed","itemId":{item_id}}}'.encode()
        refused = f'{{"status":"Not enough stock available","itemId":{item_id}}}'.encode()
        for _ in range(units):
            assert_json(stock_client.get(f"/reserve_product/{item_id}"), 200, confirmed)
        assert_json(stock_client.get(f"/reserve_product/{item_id}"), 200, refused)
        assert stock_db.get(f"item.{item_id}") == "0"
        assert stock_client.get(f"/list_products/{item_id}").json["currentQuantity"] == 0


def test_product_detail_shows_the_stock_set_by_reserve_stock_by_id(stock_client):
    stock.reserve_stock_by_id(4, 3)
    assert_json(
        stock_client.get("/list_products/4"),
        200,
        b'{"itemId":4,"itemName":"Suitcase 1050","price":550,"initialAvailableQuantity":5,'
        b'"currentQuantity":3}',
    )


def test_an_empty_stock_refuses_without_going_negative(stock_client, stock_db):
    stock.reserve_stock_by_id(1, 0)
    assert_json(stock_client.get("/reserve_product/1"), 200, expected.NOT_ENOUGH_STOCK.encode())
    assert stock_db.get("item.1") == "0"


@pytest.mark.parametrize("route", ["/list_products", "/reserve_product"])
@pytest.mark.parametrize("item_id", NOT_PRODUCT_IDS, ids=lambda item_id: item_id[:12])
def test_any_number_that_is_not_a_product_is_the_course_not_found(stock_client, stock_db, route, item_id):
    assert_json(stock_client.get(f"{route}/{item_id}"), 200, expected.PRODUCT_NOT_FOUND.encode())
    assert list(stock_db.scan_iter()) == []


def test_a_leading_zero_names_the_same_product(stock_client):
    assert_json(stock_client.get("/list_products/001"), 200, expected.product_body(4).encode())
    assert_json(stock_client.get("/reserve_product/01"), 200, expected.RESERVATION_CONFIRMED.encode())


@pytest.mark.parametrize("route", ["/list_products", "/reserve_product"])
@pytest.mark.parametrize("item_id", MALFORMED_IDS)
def test_malformed_ids_are_a_json_404(stock_client, route, item_id):
    assert_json(stock_client.get(f"{route}/{item_id}"), 404, NOT_FOUND)


@pytest.mark.parametrize("path", UNKNOWN_PATHS)
def test_unknown_paths_are_a_json_404(stock_client, path):
    assert_json(stock_client.get(path), 404, NOT_FOUND)


@pytest.mark.parametrize("method", OTHER_METHODS)
def test_other_methods_are_a_json_405(stock_client, method):
    response = stock_client.open("/reserve_product/1", method=method)
    assert_json(response, 405, METHOD_NOT_ALLOWED)
    assert response.headers["Allow"] == "GET"
    response = stock_client.open("/list_products/1", method=method)
    assert_json(response, 405, METHOD_NOT_ALLOWED)
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD"}


@pytest.mark.parametrize("path", ["/list_products", "/list_products/1", "/list_products/12"])
def test_head_on_a_listing_answers_like_get_without_a_body(stock_client, path):
    get = stock_client.get(path)
    response = stock_client.head(path)
    assert (response.status_code, response.content_type, response.get_data()) == (200, JSON, b"")
    assert response.content_length == get.content_length


@pytest.mark.parametrize("item_id", ["2", "12", "0"])
def test_head_on_a_reservation_is_a_json_405_and_takes_nothing(stock_client, stock_db, item_id):
    response = stock_client.head(f"/reserve_product/{item_id}")
    assert (response.status_code, response.content_type, response.headers["Allow"]) == (405, JSON, "GET")
    assert stock_db.get("item.2") is None
    assert stock_client.get("/list_products/2").json["currentQuantity"] == 10


def test_no_reservation_is_taken_by_a_malformed_or_refused_request(stock_client, stock_db):
    stock_client.get("/reserve_product/1.0")
    stock_client.post("/reserve_product/1")
    assert stock_db.get("item.1") is None


def test_redis_unreachable_is_a_json_503_at_once(stock_client, monkeypatch, dead_redis_url):
    monkeypatch.setenv("REDIS_URL", dead_redis_url)
    monkeypatch.setattr(stock, "redis_client", web.redis_client)
    clear_stock_caches()
    # Every route, also those whose answer reads nothing in Redis: one behaviour while it is away.
    for path in ("/list_products/1", "/reserve_product/1", "/list_products", "/list_products/12"):
        started = time.monotonic()
        response = stock_client.get(path)
        assert time.monotonic() - started < 2
        assert_json(response, 503, b'{"error":"Service Unavailable"}')


NOT_A_NUMBER_BODY = (
    b'{"error":"item.1 in Redis does not hold a number (make reset restores the course\'s state)"}'
)
WRONG_TYPE_BODY = (
    b'{"error":"Redis refused a command: WRONGTYPE Operation against a key holding the wrong kind'
    b" of value (make reset restores the course's state)\"}"
)


@pytest.mark.parametrize("stock", ["not a number", "1.5", ""])
def test_a_stock_changed_by_hand_to_no_number_is_a_json_500_that_says_so(
    stock_client, stock_db, stock, caplog
):
    stock_db.set("item.1", stock)

    for path in ("/list_products/1", "/reserve_product/1"):
        assert_json(stock_client.get(path), 500, NOT_A_NUMBER_BODY)
    assert stock_db.get("item.1") == stock
    # One line in the server's log for each, no traceback.
    assert caplog.text.count("item.1 in Redis does not hold a number") == 2
    assert "Traceback" not in caplog.text


def test_a_stock_key_of_another_type_is_a_json_500_that_says_so(stock_client, stock_db, caplog):
    stock_db.hset("item.1", "units", 4)

    for path in ("/list_products/1", "/reserve_product/1"):
        assert_json(stock_client.get(path), 500, WRONG_TYPE_BODY)
    assert stock_db.hgetall("item.1") == {"units": "4"}
    assert "Traceback" not in caplog.text


def test_the_stock_of_the_other_products_is_served_still(stock_client, stock_db):
    stock_db.set("item.1", "not a number")

    assert_json(stock_client.get("/reserve_product/2"), 200, b'{"status":"Reservation confirmed","itemId":2}')


# course/web.py, as any course API gets it ---------------------------------------------------


@pytest.fixture
def tiny_app() -> Flask:
    app = web.json_api(Flask("tiny", static_folder=None))

    @app.get("/ordered")
    def ordered():
        return {"zebra": 1, "apple": [1, 2], "name": "é"}

    @app.get("/jsonify")
    def with_jsonify():
        return jsonify(status="ok", itemId=1)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    @app.get("/full")
    def full():
        raise redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")

    return app


def test_a_redis_out_of_memory_is_said_without_the_reset_hint(tiny_app):
    # make reset would not help: Redis refused to write, the state is as it was.
    assert_json(
        tiny_app.test_client().get("/full"),
        500,
        b'{"error":"Redis refused a command: command not allowed when used memory > \'maxmemory\'."}',
    )


def test_dicts_become_compact_json_in_insertion_order_without_newline(tiny_app):
    client = tiny_app.test_client()
    assert_json(client.get("/ordered"), 200, b'{"zebra":1,"apple":[1,2],"name":"\\u00e9"}')
    assert_json(client.get("/jsonify"), 200, b'{"status":"ok","itemId":1}')


@pytest.mark.parametrize("debug", [False, True])
def test_errors_are_json_even_in_debug_mode(tiny_app, debug):
    tiny_app.debug = debug
    client = tiny_app.test_client()
    response = client.get("/boom")
    assert_json(response, 500, b'{"error":"Internal Server Error"}')
    assert_json(client.get("/missing"), 404, NOT_FOUND)


def test_a_busy_port_is_a_one_line_error():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(
            web.CannotListenError, match=f"Cannot listen on 127.0.0.1:{port}: Address already in use"
        ):
            web.check_port_free("127.0.0.1", port)


# Host: refused unless it names the address the server listens on (DNS rebinding) ---------------

LOOPBACK_HOSTS = ["127.0.0.1", "127.0.0.1:1245", "localhost", "LOCALHOST:8080", "[::1]", "[::1]:1245"]
FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:1245",
    "127.0.0.1.evil.example",
    "localhost.evil",
    "10.0.0.7",
    "",
]
BAD_REQUEST = b'{"error":"Bad Request"}'


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_a_loopback_host_is_served(stock_client, host):
    assert_json(
        stock_client.get("/list_products/12", headers={"Host": host}),
        200,
        expected.PRODUCT_NOT_FOUND.encode(),
    )


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_a_foreign_host_is_a_json_400_that_reserves_nothing(stock_client, stock_db, host):
    for path in ("/reserve_product/1", "/list_products", "/nope"):
        assert_json(stock_client.get(path, headers={"Host": host}), 400, BAD_REQUEST)
    assert stock_db.get("item.1") is None


@pytest.mark.parametrize(
    ("bind_host", "allowed"),
    [
        ("127.0.0.1", hosts.LOOPBACK_HOST_NAMES),
        ("localhost", hosts.LOOPBACK_HOST_NAMES),
        ("::1", hosts.LOOPBACK_HOST_NAMES),
        ("127.0.0.2", hosts.LOOPBACK_HOST_NAMES | {"127.0.0.2"}),
        ("192.168.1.5", {"192.168.1.5"}),
        ("fe80::1", {"[fe80::1]"}),
        ("api.example", {"api.example"}),
        ("0.0.0.0", None),
        ("::", None),
    ],
)
def test_the_names_allowed_are_those_of_the_address_listened_on(bind_host, allowed):
    assert hosts.allowed_host_names(bind_host) == allowed


def plain_flask_app() -> Flask:
    """Any Flask app, not made a JSON API: the check still answers JSON."""
    app = Flask("plain")

    @app.get("/")
    def home():
        return "home"

    return app


def test_any_flask_app_can_refuse_foreign_hosts(monkeypatch):
    monkeypatch.delenv("HOST", raising=False)
    app = plain_flask_app()
    web.refuse_foreign_hosts(app)
    client = app.test_client()

    assert client.get("/", headers={"Host": "localhost:9181"}).get_data() == b"home"
    assert_json(client.get("/", headers={"Host": "evil.example"}), 400, BAD_REQUEST)


def test_host_set_to_another_address_admits_that_address_only(monkeypatch):
    monkeypatch.setenv("HOST", "192.168.1.5")
    app = plain_flask_app()
    web.refuse_foreign_hosts(app)
    client = app.test_client()

    assert client.get("/", headers={"Host": "192.168.1.5:1245"}).get_data() == b"home"
    for host in ("localhost", "evil.example"):
        assert_json(client.get("/", headers={"Host": host}), 400, BAD_REQUEST)


def test_host_set_to_every_interface_admits_any_name(monkeypatch):
    monkeypatch.setenv("HOST", "0.0.0.0")
    app = plain_flask_app()
    web.refuse_foreign_hosts(app)
    client = app.test_client()

    for host in ("evil.example", "api.example:1245", "localhost"):
        assert client.get("/", headers={"Host": host}).get_data() == b"home"
