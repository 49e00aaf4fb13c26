"""Task 10: "Can I have a seat?": reservations queued as RQ jobs, seats taken one by one in Redis.

    GET /available_seats    the seats left
    GET /reserve_seat       queue a reservation, unless reservations are blocked
    GET /process            process the queue in the background

The course kept "reservations enabled" in a variable of its one Node process, and each job
read the seats, then wrote them back less one: two processors could both book the last
seat, which is how calling /process twice booked up to 100 of 50 seats. Here both live in
Redis, and a seat is taken by one Lua script that Redis runs in a single step: the check,
the take, and blocking reservations when the last seat goes. Any number of processors,
behind any number of server processes, book at most the seats there are, and every process
agrees on whether reservations are blocked.

The server answers from several web processes (course/web.py). Each queues jobs with
Kue-style ids and prints ``Seat reservation job ID completed`` or
``Seat reservation job ID failed: ERROR`` for the jobs it queued, when they end. ``/process``
starts the processor, an RQ worker in a process of its own beside the web process that
answered, and it runs until the server stops, as Kue's ``queue.process`` did (the listener
and the processor of a web process: course/web_jobs.py).

The seats are set up once per Redis, not once per launch. On a Redis that holds no seat
count yet (a fresh one) the server sets 50 seats and enables reservations, in one Lua step
(``SET_UP_SEATS``); a Redis that holds a count keeps it. So starting a second server, or
restarting one, never hands out the seats again while reservations are under way (the
course set 50 at every launch: two servers could book 80 seats of 50). Every route runs
that step before it answers, so a server started while Redis was away, one started with
``flask --app 100_seat run``, or one whose Redis came back empty answers from seats it set
up, never from a state nobody set up. To start again from 50 seats, ``make reset`` (it
restores the course's fresh state on ``REDIS_URL``'s Redis); a restart keeps the seats.

``/reserve_seat`` queues at most as many reservations as there are seats left: once the
queue holds that many, it answers ``{"status":"Reservation failed"}`` and queues nothing,
so a flood of requests cannot fill Redis with jobs that could only fail. The check (a Lua
step) and the enqueue (RQ's) are two steps: requests admitted at the same moment may each
queue a job, so the queue may exceed the seats left by the requests being admitted at once,
less one (at most 2 per core per server: granian's threads), and by one per job a processor
has taken from the queue that has not taken its seat yet.

A HEAD changes nothing: on ``/reserve_seat`` and ``/process`` it is a JSON 405 with
``Allow: GET``; on ``/available_seats`` it answers the headers of the GET. A request whose
``Host`` is not a name of the address the server listens on is a JSON 400 (course/web.py).

With Redis away every route answers a JSON 503 within about a second, and serves again by
itself once Redis is back; ``Reservation failed`` is for a job Redis refused otherwise (out of
memory, say). Started while Redis is away, the server prints the course's not-connected
line, keeps trying, and prints the connected line once Redis answers and the seats are set up.

Run it with ``python 100_seat.py`` (HOST, PORT and REDIS_URL may override the defaults),
or ``flask --app 100_seat run`` for the development server, which sets up the same way.
"""

from __future__ import annotations

import sys
from functools import cache

from course.connection import run
from course.events import JobEvent
from course.keys import stored_number
from course.settings import parse_command_line
from course.web import (
    action_route,
    call_script,
    compact_json,
    connect_at_launch,
    create_app,
    json_response,
    listen_address,
    read_number_lua,
    redis_client,
    serve,
)
from course.web_jobs import ProcessJobListener, QueueProcessor

import redis
from flask import Response
from redis.commands.core import Script
from rq import Queue

QUEUE_NAME = "reserve_seat"
# The Redis list RQ keeps the queue's waiting jobs in.
QUEUE_KEY = f"{Queue.redis_queue_namespace_prefix}{QUEUE_NAME}"
# The worker imports the job function by this name, from the project root.
JOB_FUNCTION = "100_seat.reserve_seat_job"

INITIAL_SEATS = 50
NOT_ENOUGH_SEATS = "Not enough seats available"

AVAILABLE_SEATS_KEY = "available_seats"
RESERVATION_ENABLED_KEY = "reservation_enabled"
ENABLED = "true"
DISABLED = "false"

# The seats' set-up, run first by every script that the routes run. KEYS: the seats, the
# "reservations enabled" flag; ARGV: the initial seats, the flag's "enabled" value. Only a
# Redis holding no seat count gets them: a count, even 0, is never raised.
SET_UP_SEATS = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SET', KEYS[1], ARGV[1])
    redis.call('SET', KEYS[2], ARGV[2])
end
"""
# The seats left, set up first.
SEATS_LUA = f"{SET_UP_SEATS}return redis.call('GET', KEYS[1])"
# Whether a reservation may be queued, set up first. KEYS[3]: the queue's list.
# read_number_lua: seats = the number in KEYS[1] (or ARGV[1]); a key holding no number is refused.
ADMITTED = "admitted"
BLOCKED = "blocked"
FULL = "full"
ADMIT_LUA = f"""{SET_UP_SEATS}
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
    return '{BLOCKED}'
end
{read_number_lua("seats", default="ARGV[1]")}
if redis.call('LLEN', KEYS[3]) >= seats then
    return '{FULL}'
end
return '{ADMITTED}'
"""

# KEYS: the seats, the "reservations enabled" flag; ARGV[1]: the flag's "disabled" value.
# Returns 1 if a seat was taken, 0 if none was left. An absent count means no seats.
TAKE_SEAT_LUA = f"""
{read_number_lua("seats", default="'0'")}
if seats < 1 then
    return 0
end
if redis.call('DECR', KEYS[1]) == 0 then
    redis.call('SET', KEYS[2], ARGV[1])
end
return 1
"""


# The bodies that never change, serialised once.
RESERVATION_IN_PROCESS = compact_json({"status": "Reservation in process"})
RESERVATION_BLOCKED = compact_json({"status": "Reservation are blocked"})
RESERVATION_FAILED = compact_json({"status": "Reservation failed"})
QUEUE_PROCESSING = compact_json({"status": "Queue processing"})


def available_seats_body(seats: int) -> str:
    """The seats left, as a string: the course sent what Redis held."""
    return compact_json({"numberOfAvailableSeats": str(seats)})


class NotEnoughSeatsError(Exception):
    """A reservation that found no seat left."""


# Seats and reservations, in Redis -----------------------------------------------------------


@cache
def seats_db() -> redis.Redis:
    """This process's Redis client, made on first use.

    It never retries a command (course.web): a seat taken whose answer was lost on the way
    must not be taken a second time.
    """
    return redis_client()


def reserve_seat(number: int) -> None:
    """Set the number of seats available."""
    seats_db().set(AVAILABLE_SEATS_KEY, number)


def get_current_available_seats() -> int:
    """The number of seats available (none if it was never set)."""
    return stored_number(AVAILABLE_SEATS_KEY, seats_db().get(AVAILABLE_SEATS_KEY) or "0")


@cache
def seats_script() -> Script:
    return seats_db().register_script(SEATS_LUA)


@cache
def admit_script() -> Script:
    return seats_db().register_script(ADMIT_LUA)


def seat_keys() -> list[str]:
    return [AVAILABLE_SEATS_KEY, RESERVATION_ENABLED_KEY]


def set_up_seats() -> int:
    """The launch's set-up, then the seats left: a Redis holding no seats yet gets 50, reservations enabled.

    One step in Redis. A Redis that holds a seat count keeps it, and the reservations under
    way stay valid. The server runs it at launch and every route before it answers.
    """
    return stored_number(AVAILABLE_SEATS_KEY, seats_script()(keys=seat_keys(), args=[INITIAL_SEATS, ENABLED]))


def admit_reservation() -> str:
    """ADMITTED, BLOCKED, or FULL (the queue holds as many reservations as seats are left)."""
    return call_script(admit_script(), keys=[*seat_keys(), QUEUE_KEY], args=[INITIAL_SEATS, ENABLED])


@cache
def take_seat_script() -> Script:
    return seats_db().register_script(TAKE_SEAT_LUA)


def take_seat() -> bool:
    """Take one seat if one is left, in one step; taking the last one blocks reservations."""
    return call_script(take_seat_script(), keys=seat_keys(), args=[DISABLED]) == 1


# The jobs: queued by the server, run by the processor ------------------------------------


def reserve_seat_job(data: dict) -> None:
    """What the processor runs for each reservation: take a seat, or fail the job."""
    if not take_seat():
        raise NotEnoughSeatsError(NOT_ENOUGH_SEATS)


def say(line: str) -> None:
    """Print a line in one write: the server's worker processes share one output."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def print_job_event(event: JobEvent) -> None:
    say(event.line("Seat reservation job"))


# This web process's listener and processor (course/web_jobs.py: one of each per web process).
job_listener = ProcessJobListener(
    QUEUE_NAME, print_job_event, connect=lambda: redis_client(decode_responses=False)
)
processor = QueueProcessor(QUEUE_NAME, job_functions={JOB_FUNCTION})

app = create_app(__name__)


@app.get("/available_seats")
def available_seats() -> Response:
    return json_response(available_seats_body(set_up_seats()))


@action_route(app, "/reserve_seat")
def reserve() -> Response:
    # Redis out of reach is the 503 of every route (course/web.py); a Redis that refuses the
    # job (out of memory, say) is the course's failure.
    try:
        admission = admit_reservation()
        if admission == BLOCKED:
            return json_response(RESERVATION_BLOCKED)
        if admission == FULL:
            return json_response(RESERVATION_FAILED)
        job_listener().enqueue(JOB_FUNCTION, {})
    except redis.ResponseError:
        return json_response(RESERVATION_FAILED)
    return json_response(RESERVATION_IN_PROCESS)


@action_route(app, "/process")
def process() -> Response:
    # A processor started while Redis is away would only wait for it: say so instead (503).
    set_up_seats()
    processor.ensure_started()
    return json_response(QUEUE_PROCESSING)


def main() -> None:
    address = listen_address()
    connect_at_launch(set_up_seats)
    serve(__file__, address)


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
