"""``make reset``: the course's keys back as a fresh course has them, on the learner's Redis.

After a tour of the APIs (``item.1`` down to 0, reservations blocked) or task 4 run twice
(``Reply: 0``), this puts back, in one transaction on ``REDIS_URL``:
- the stock of the course's four products, as if no unit was reserved (``item.1`` = 4, ...);
- the seats: ``available_seats`` = 50 and ``reservation_enabled`` = ``true``;
- no ``HolbertonSchools`` hash, so task 4 prints ``Reply: 1`` six times again.
Nothing else is touched: other keys and queued jobs stay as they are.
"""

from __future__ import annotations

import argparse

from course import expected
from course.connection import client_from_env, run

import redis


def restore_fresh_state(client: redis.Redis) -> bool:
    """Put the course's keys back in one transaction; True if task 4's hash was there to remove."""
    with client.pipeline(transaction=True) as pipeline:
        for product in expected.PRODUCTS:
            pipeline.set(expected.stock_key(product["itemId"]), product["initialAvailableQuantity"])
        pipeline.set(expected.AVAILABLE_SEATS_KEY, expected.INITIAL_SEATS)
        pipeline.set(expected.RESERVATION_ENABLED_KEY, expected.RESERVATION_ENABLED)
        pipeline.delete(expected.SCHOOLS_HASH_KEY)
        *_, removed = pipeline.execute()
    return removed == 1


def server_name(client: redis.Redis) -> str:
    """Where the client points, without any password: ``127.0.0.1:6379/0``."""
    settings = client.connection_pool.connection_kwargs
    place = settings.get("path") or f"{settings.get('host')}:{settings.get('port')}"
    return f"{place}/{settings.get('db', 0)}"


def report(server: str, removed_hash: bool) -> list[str]:
    fresh = [
        *(
            f"{expected.stock_key(product['itemId'])}={product['initialAvailableQuantity']}"
            for product in expected.PRODUCTS
        ),
        f"{expected.AVAILABLE_SEATS_KEY}={expected.INITIAL_SEATS}",
        f"{expected.RESERVATION_ENABLED_KEY}={expected.RESERVATION_ENABLED}",
    ]
    hash_state = "removed" if removed_hash else "was not there"
    return [
        f"Course state restored on {server}: {', '.join(fresh)}",
        f"{expected.SCHOOLS_HASH_KEY} (task 4's hash) {hash_state}",
    ]


def reset() -> None:
    with client_from_env() as client:
        removed_hash = restore_fresh_state(client)
        print("\n".join(report(server_name(client), removed_hash)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m course.reset",
        description="Restore the course's fresh state on REDIS_URL: stock, seats, no HolbertonSchools.",
    )
    parser.parse_args(argv)
    run(reset)


if __name__ == "__main__":
    main()
