"""Task 9: the "In stock?" API, with Flask; a reservation takes one unit atomically."""

import redis
from flask import Flask, jsonify
from json_errors import answer_errors_in_json
from redis_connection import REDIS_URL

PRODUCTS = [
    {"itemId": 1, "itemName": "Suitcase 250", "price": 50, "initialAvailableQuantity": 4},
    {"itemId": 2, "itemName": "Suitcase 450", "price": 100, "initialAvailableQuantity": 10},
    {"itemId": 3, "itemName": "Suitcase 650", "price": 350, "initialAvailableQuantity": 2},
    {"itemId": 4, "itemName": "Suitcase 1050", "price": 550, "initialAvailableQuantity": 5},
]

client = redis.Redis.from_url(REDIS_URL, decode_responses=True)

# One unit taken in one step on the server, so simultaneous requests never oversell (the course's
# read-then-write did). KEYS[1]: the item's key, which holds the quantity still available;
# ARGV[1]: the initial stock, for a key not set yet. Returns 1 if a unit was taken, else 0.
take_one_unit = client.register_script("""
local available = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if not available or available < 1 then
  return 0
end
redis.call('SET', KEYS[1], available - 1)
return 1
""")

app = Flask(__name__)
app.json.sort_keys = False
answer_errors_in_json(app)


def get_item_by_id(item_id: int) -> dict | None:
    return next((product for product in PRODUCTS if product["itemId"] == item_id), None)


def reserve_stock_by_id(item_id: int, stock: int) -> None:
    client.set(f"item.{item_id}", stock)


def get_current_reserved_stock_by_id(item_id: int) -> int | None:
    """The quantity still available, or None if nothing was reserved yet."""
    stock = client.get(f"item.{item_id}")
    return None if stock is None else int(stock)


@app.get("/list_products")
def list_products():
    return jsonify(PRODUCTS)


@app.get("/list_products/<int:item_id>")
def product_detail(item_id: int):
    item = get_item_by_id(item_id)
    if item is None:
        return jsonify(status="Product not found")
    current = get_current_reserved_stock_by_id(item_id)
    if current is None:
        current = item["initialAvailableQuantity"]
    return jsonify({**item, "currentQuantity": current})


@app.get("/reserve_product/<int:item_id>")
def reserve_product(item_id: int):
    item = get_item_by_id(item_id)
    if item is None:
        return jsonify(status="Product not found")
    if not take_one_unit(keys=[f"item.{item_id}"], args=[item["initialAvailableQuantity"]]):
        return jsonify(status="Not enough stock available", itemId=item_id)
    return jsonify(status="Reservation confirmed", itemId=item_id)


if __name__ == "__main__":
    app.run(port=1245)
