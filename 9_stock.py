"""Task 9: the "In stock?" API: Flask routes over a product list whose stock lives in Redis.

    GET /list_products                every product
    GET /list_products/<itemId>       one product and the units still available
    GET /reserve_product/<itemId>     take one unit, if one is left

The course's reservation read the stock, then wrote it back less one: two requests at
the same moment both saw the last unit, and both were confirmed. Here the check and the
take are one Lua script that Redis runs in a single step, so no number of simultaneous
requests, served by any number of processes, confirms more units than there were.

An id is any run of decimal digits: one that names no product (``0``, ``12``, a number of a
thousand digits) gets the course's ``{"status":"Product not found"}``; anything else (``abc``,
``-1``, ``1.5``) is a JSON 404. A leading zero changes nothing: ``01`` is product 1.

A HEAD changes nothing: on ``/reserve_product/<itemId>`` it is a JSON 405 with ``Allow: GET``
(a HEAD that reserved would take a unit, and ``curl -I`` would not show it); on the listings
it answers the headers of the GET. A request whose ``Host`` is not a name of the address the
server listens on is a JSON 400 (course/web.py: DNS rebinding).

With Redis away, every route answers a JSON 503 within about a second (those whose answer
reads nothing in Redis PING it, so that a client sees one behaviour), and serves again by
itself once it is back. Started while Redis is away, the server prints the course's not-connected line,
keeps trying, and prints the connected line once Redis answers.

Run it with ``python 9_stock.py`` (HOST, PORT and REDIS_URL may override the defaults): granian
serves the app, a worker process per core. ``flask --app 9_stock run --reload`` runs Flask's
development server instead.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from course.connection import run  # the course's one-line endings: Redis away, a bad setting, Ctrl-C
from course.keys import stored_number  # a count read from Redis: an integer, or a JSON 500 naming the key
from course.web import action_route, json_api, launch, redis_client  # JSON answers; granian's settings

from flask import Flask
from granian import Granian
from granian.constants import Interfaces
from redis import Redis
from redis.commands.core import Script
from werkzeug.routing import BaseConverter

LIST_PRODUCTS = [
    {"itemId": 1, "itemName": "Suitcase 250", "price": 50, "initialAvailableQuantity": 4},
    {"itemId": 2, "itemName": "Suitcase 450", "price": 100, "initialAvailableQuantity": 10},
    {"itemId": 3, "itemName": "Suitcase 650", "price": 350, "initialAvailableQuantity": 2},
    {"itemId": 4, "itemName": "Suitcase 1050", "price": 550, "initialAvailableQuantity": 5},
]
PRODUCTS_BY_ID = {product["itemId"]: product for product in LIST_PRODUCTS}
# An id with more significant digits than this names no product, whatever its value.
ID_DIGITS = 9

# The check and the take in one step. KEYS[1]: the stock; ARGV[1]: the initial stock, for a
# key not set yet. DECR counts in Redis's own 64-bit integers, exactly (Lua's numbers are
# doubles: 2^53 + 1 would lose a unit); a value DECR cannot count is refused, naming the key.
RESERVE_ONE_UNIT_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SET', KEYS[1], ARGV[1])
end
local left = redis.pcall('DECR', KEYS[1])
if type(left) == 'table' then
    if string.find(tostring(left.err), 'WRONGTYPE') then
        return left
    end
    return redis.error_reply(KEYS[1] .. ' in Redis does not hold a number')
end
if left < 0 then
    redis.call('INCR', KEYS[1])
    return 0
end
return 1
"""


def get_item_by_id(item_id: int | None) -> dict | None:
    """The product with this id, or None (also for None: an id too long to name a product)."""
    return PRODUCTS_BY_ID.get(item_id)


@cache
def stock_db() -> Redis:
    """This process's Redis client, made on first use: inside the server's worker process."""
    return redis_client()


@cache
def reserve_one_unit_script() -> Script:
    """Registered once: each call is one EVALSHA, and the script is sent only if Redis lacks it."""
    return stock_db().register_script(RESERVE_ONE_UNIT_LUA)


def stock_key(item_id: int) -> str:
    return f"item.{item_id}"


def reserve_stock_by_id(item_id: int, stock: int) -> None:
    """Set the units of ``item_id`` still available."""
    stock_db().set(stock_key(item_id), stock)


def get_current_reserved_stock_by_id(item_id: int) -> int:
    """The units of the product ``item_id`` still available: all of them until one is reserved."""
    stock = stock_db().get(stock_key(item_id))
    if stock is None:
        return PRODUCTS_BY_ID[item_id]["initialAvailableQuantity"]
    return stored_number(stock_key(item_id), stock)


def reserve_one_unit(item: dict) -> bool:
    """Take one unit of ``item`` if one is left, atomically; True if it was taken."""
    keys, args = [stock_key(item["itemId"])], [item["initialAvailableQuantity"]]
    return reserve_one_unit_script()(keys=keys, args=args) == 1


class ItemIdConverter(BaseConverter):
    """Any run of ASCII decimal digits, as a number; any other id is a JSON 404.

    A number too long to be any product's id becomes None (``int`` refuses strings of
    more than 4,300 digits, and no product needs one).
    """

    regex = "[0-9]+"

    def to_python(self, value: str) -> int | None:
        digits = value.lstrip("0") or "0"
        return int(digits) if len(digits) <= ID_DIGITS else None


# No static folder: the API serves no files, so no /static/<path> route answering outside JSON.
app = json_api(Flask(__name__, static_folder=None))
app.url_map.converters["item_id"] = ItemIdConverter
PRODUCT_NOT_FOUND = {"status": "Product not found"}


def check_redis() -> None:
    """A PING, for the answers that read nothing in Redis: with Redis away, every route is a 503."""
    stock_db().ping()


@app.get("/list_products")
def list_products() -> list[dict]:
    check_redis()
    return LIST_PRODUCTS


@app.get("/list_products/<item_id:item_id>")
def product_detail(item_id: int | None) -> dict:
    item = get_item_by_id(item_id)
    if item is None:
        check_redis()
        return PRODUCT_NOT_FOUND
    return {**item, "currentQuantity": get_current_reserved_stock_by_id(item_id)}


@action_route(app, "/reserve_product/<item_id:item_id>")
def reserve_product(item_id: int | None) -> dict:
    item = get_item_by_id(item_id)
    if item is None:
        check_redis()
        return PRODUCT_NOT_FOUND
    if reserve_one_unit(item):
        return {"status": "Reservation confirmed", "itemId": item_id}
    return {"status": "Not enough stock available", "itemId": item_id}


def main() -> None:
    settings = launch(__doc__)  # --help; HOST, PORT, REDIS_URL; the start line; Redis reached
    server = Granian(
        f"{Path(__file__).stem}:app", interface=Interfaces.WSGI, working_dir=Path(__file__).parent, **settings
    )
    server.serve()


if __name__ == "__main__":
    run(main)
