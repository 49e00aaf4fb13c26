"""``make reset``: the course's keys back as a fresh course has them, on the learner's Redis.

After a tour of the APIs (``item.1`` down to 0, reservations blocked) or task 4 run twice
(``Reply: 0``), this puts back, in one transaction on ``REDIS_URL``:
- the stock of the course's four products, as if no unit was reserved (``item.1`` = 4, ...);
- the seats: ``available_seats`` = 50 and ``reservation_enabled`` = ``true``;
- no ``HolbertonSchools`` hash, so task 4 prints ``Reply: 1`` six times again;
- the job id counter (``course:job-ids``), only if it holds what INCRBY cannot grow from:
  set to the highest job id RQ still has (or removed if none), so that no id is handed out
  twice (RQ silently overwrites a job whose id is reused). A valid counter is left alone.
Nothing else is touched: other keys and queued jobs stay as they are.
"""

from __future__ import annotations

import argparse
import re

from course import expected
from course.connection import client_from_env, run
from course.ids import JOB_IDS_KEY
from course.keys import UnreadableStateError, stored_number

import redis
from rq.job import Job

# The largest value INCR can reach: a counter there can hand out no more ids.
REDIS_INT_MAX = 2**63 - 1
# An RQ job's hash (and its dependents' set, rq:job:ID:dependents): the id is the digits.
KUE_STYLE_JOB_KEY = re.compile(rf"{re.escape(Job.redis_job_namespace_prefix)}([0-9]+)(?::.*)?")


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


def counter_is_valid(client: redis.Redis) -> bool:
    """Whether ``JOB_IDS_KEY`` is absent or a number INCRBY can still grow."""
    kind = client.type(JOB_IDS_KEY)
    if kind == "none":
        return True
    if kind != "string":
        return False
    try:
        return stored_number(JOB_IDS_KEY, client.get(JOB_IDS_KEY)) < REDIS_INT_MAX
    except UnreadableStateError:
        return False


def highest_job_id(client: redis.Redis) -> int | None:
    """The highest Kue-style id among the jobs RQ still keeps (SCAN, not KEYS: the server keeps serving)."""
    ids = [
        int(match[1])
        for key in client.scan_iter(match=f"{Job.redis_job_namespace_prefix}*", count=1000)
        if (match := KUE_STYLE_JOB_KEY.fullmatch(key))
    ]
    return max(ids, default=None)


def repair_job_ids(client: redis.Redis) -> str | None:
    """Repair an unreadable job id counter; the line saying what was done, or None if it was valid."""
    if counter_is_valid(client):
        return None
    highest = highest_job_id(client)
    with client.pipeline(transaction=True) as pipeline:
        pipeline.delete(JOB_IDS_KEY)
        if highest is not None:
            pipeline.set(JOB_IDS_KEY, highest)
        pipeline.execute()
    if highest is None:
        return f"{JOB_IDS_KEY} (the job id counter) could not grow: removed, no job is left"
    return f"{JOB_IDS_KEY} (the job id counter) could not grow: set to {highest}, the highest job id RQ keeps"


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
        repaired = repair_job_ids(client)
        print("\n".join(report(server_name(client), removed_hash)))
        if repaired:
            print(repaired)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m course.reset",
        description="Restore the course's fresh state on REDIS_URL: stock, seats, no HolbertonSchools.",
    )
    parser.parse_args(argv)
    run(reset)


if __name__ == "__main__":
    main()
