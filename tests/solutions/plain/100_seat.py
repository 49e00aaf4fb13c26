"""Task 10: the "Can I have a seat?" API: reservations queued with RQ, processed on request."""

import multiprocessing

import redis
from flask import Flask, jsonify
from json_errors import answer_errors_in_json
from redis_connection import REDIS_URL
from rq import Callback, Queue, SimpleWorker
from rq.job import Job

QUEUE_NAME = "reserve_seat"
SEATS_KEY = "available_seats"
# In Redis, not in a variable, so that every process serving the API agrees on it.
ENABLED_KEY = "reservation_enabled"

client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
# RQ stores pickled bytes: its connection must not decode them.
queue = Queue(QUEUE_NAME, connection=redis.Redis.from_url(REDIS_URL))

# One seat taken in one step on the server, so two workers never give the same seat: returns the
# seats left, or -1 if there was none. Taking the last one disables reservations.
take_one_seat = client.register_script("""
local seats = tonumber(redis.call('GET', KEYS[1]))
if not seats or seats < 1 then
  return -1
end
redis.call('SET', KEYS[1], seats - 1)
if seats == 1 then
  redis.call('SET', KEYS[2], '0')
end
return seats - 1
""")

app = Flask(__name__)
app.json.sort_keys = False
answer_errors_in_json(app)


def reserve_seat(number: int) -> None:
    client.set(SEATS_KEY, number)


def get_current_available_seats() -> str | None:
    return client.get(SEATS_KEY)


def reservations_enabled() -> bool:
    return client.get(ENABLED_KEY) == "1"


def reserve_one_seat() -> None:
    """The job: one seat, or a failure when none is left."""
    if take_one_seat(keys=[SEATS_KEY, ENABLED_KEY]) < 0:
        raise RuntimeError("Not enough seats available")


def print_completed(job: Job, connection: redis.Redis, result: object) -> None:
    print(f"Seat reservation job {job.id} completed", flush=True)


def print_failed(
    job: Job, connection: redis.Redis, exc_type: type, exc_value: BaseException, tb: object
) -> None:
    print(f"Seat reservation job {job.id} failed: {exc_value}", flush=True)


def process_queue() -> None:
    """Every queued reservation, then stop. Runs in a process of its own: RQ's worker sets
    signal handlers, which only a main thread may do. Its prints go to the server's terminal."""
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


@app.get("/available_seats")
def available_seats():
    return jsonify(numberOfAvailableSeats=get_current_available_seats())


@app.get("/reserve_seat")
def reserve():
    if not reservations_enabled():
        return jsonify(status="Reservation are blocked")
    try:
        # By import path (not __main__.reserve_one_seat): any worker process can import it.
        queue.enqueue(
            "100_seat.reserve_one_seat",
            on_success=Callback("100_seat.print_completed"),
            on_failure=Callback("100_seat.print_failed"),
        )
    except redis.RedisError:
        return jsonify(status="Reservation failed")
    return jsonify(status="Reservation in process")


@app.get("/process")
def process():
    multiprocessing.Process(target=process_queue, daemon=True).start()
    return jsonify(status="Queue processing")


def main() -> None:
    reserve_seat(50)
    client.set(ENABLED_KEY, "1")
    app.run(port=1245)


if __name__ == "__main__":
    main()
