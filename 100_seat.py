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

Granian serves the app from several web processes. Each queues jobs with Kue-style ids and
prints ``Seat reservation job ID completed`` or ``Seat reservation job ID failed: ERROR`` for
the jobs it queued, once RQ's state says they ended. ``/process`` starts the processor, an RQ
worker in a program of its own beside the web process that answered, and it runs until the
server stops, as Kue's ``queue.process`` did; one that crashed is started again
(course/web_jobs.py).

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
itself once Redis is back; ``Reservation failed`` is for a job Redis refused to store (out of
memory, or a read-only replica), with one line in the log. A seat count or job id counter that
holds no number Redis can count with (``SET available_seats abc``, or one beyond its 64-bit
integers) is a JSON 500 naming the key and ``make reset``.

Started while Redis is away, the server prints the course's not-connected line, keeps trying,
and prints the connected line once Redis answers and the seats are set up.

Run it with ``python 100_seat.py`` (HOST, PORT and REDIS_URL may override the defaults),
or ``flask --app 100_seat run`` for the development server, which sets up the same way.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from course.connection import run  # the course's one-line endings: Redis away, a bad setting, Ctrl-C
from course.web import action_route, json_api, launch, redis_client  # JSON answers; granian's settings
from course.web_jobs import WebJobs  # Kue-style ids, outcomes printed, a processor per web process

import redis
from flask import Flask
from granian import Granian
from granian.constants import Interfaces
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

# What Redis may refuse a job for, with the course's "Reservation failed": it cannot store it.
REFUSALS = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)

# The seats' set-up, run first by every script that the routes run. KEYS: the seats, the
# "reservations enabled" flag; ARGV: the initial seats, the flag's "enabled" value. Only a
# Redis holding no seat count gets them: a count, even 0, is never raised.
SET_UP_SEATS = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SET', KEYS[1], ARGV[1])
    redis.call('SET', KEYS[2], ARGV[2])
end
"""
# seats: the count in KEYS[1], a 64-bit integer written as Redis writes one (no leading zero),
# kept as its digits (Lua's numbers are doubles, exact to 2^53 only); anything else is
# refused, naming the key.
READ_SEATS = """
local seats = redis.call('GET', KEYS[1])
local digits = seats == '0' and '0' or string.match(seats, '^-?([1-9]%d*)$')
if not digits or #digits > 19 or (#digits == 19 and digits > '9223372036854775807') then
    return redis.error_reply(KEYS[1] .. ' in Redis does not hold a number')
end
"""
# The seats left, set up first.
SEATS_LUA = f"{SET_UP_SEATS}{READ_SEATS}return seats"
# Whether a reservation may be queued, set up first. KEYS[3]: the queue's list.
ADMITTED = "admitted"
BLOCKED = "blocked"
FULL = "full"
ADMIT_LUA = f"""{SET_UP_SEATS}
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
    return '{BLOCKED}'
end
{READ_SEATS}
if redis.call('LLEN', KEYS[3]) >= tonumber(seats) then
    return '{FULL}'
end
return '{ADMITTED}'
"""

# KEYS: the seats, the "reservations enabled" flag; ARGV[1]: the flag's "disabled" value.
# Returns 1 if a seat was taken, 0 if none was left (an absent count: no seats). DECR counts
# in Redis's integers, exactly, and cannot fail on a count READ_SEATS let through.
TAKE_SEAT_LUA = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
{READ_SEATS}
if tonumber(seats) < 1 then
    return 0
end
if redis.call('DECR', KEYS[1]) == 0 then
    redis.call('SET', KEYS[2], ARGV[1])
end
return 1
"""


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


@cache
def seats_script() -> Script:
    return seats_db().register_script(SEATS_LUA)


@cache
def admit_script() -> Script:
    return seats_db().register_script(ADMIT_LUA)


@cache
def take_seat_script() -> Script:
    return seats_db().register_script(TAKE_SEAT_LUA)


def seat_keys() -> list[str]:
    return [AVAILABLE_SEATS_KEY, RESERVATION_ENABLED_KEY]


def get_current_available_seats() -> int:
    """The seats left; a Redis holding no seat count yet gets the launch's 50, reservations enabled.

    One step in Redis. A Redis that holds a seat count keeps it, and the reservations under
    way stay valid. The server runs it at launch and every route before it answers.
    """
    return int(seats_script()(keys=seat_keys(), args=[INITIAL_SEATS, ENABLED]))


def admit_reservation() -> str:
    """ADMITTED, BLOCKED, or FULL (the queue holds as many reservations as seats are left)."""
    return admit_script()(keys=[*seat_keys(), QUEUE_KEY], args=[INITIAL_SEATS, ENABLED])


def take_seat() -> bool:
    """Take one seat if one is left, in one step; taking the last one blocks reservations."""
    return take_seat_script()(keys=seat_keys(), args=[DISABLED]) == 1


# The jobs: queued by the server, run by the processor ------------------------------------


def reserve_seat_job(data: dict) -> None:
    """What the processor runs for each reservation: take a seat, or fail the job."""
    if not take_seat():
        raise NotEnoughSeatsError(NOT_ENOUGH_SEATS)


# This web process's jobs: the reservations it queued, and the processor /process starts.
jobs = WebJobs(QUEUE_NAME, "Seat reservation job", job_functions={JOB_FUNCTION})

# No static folder: the API serves no files, so no /static/<path> route answering outside JSON.
app = json_api(Flask(__name__, static_folder=None))


@app.get("/available_seats")
def available_seats() -> dict:
    # The course sent the number as a string: what Redis held.
    return {"numberOfAvailableSeats": str(get_current_available_seats())}


@action_route(app, "/reserve_seat")
def reserve() -> dict:
    # Redis out of reach is the 503 of every route (course/web.py); a Redis that refuses to
    # store the job is the course's failure.
    try:
        admission = admit_reservation()
        if admission == BLOCKED:
            return {"status": "Reservation are blocked"}
        if admission == FULL:
            return {"status": "Reservation failed"}
        jobs.enqueue(JOB_FUNCTION, {})
    except REFUSALS as error:
        app.logger.warning("Reservation failed: Redis refused it: %s", error)
        return {"status": "Reservation failed"}
    return {"status": "Reservation in process"}


@action_route(app, "/process")
def process() -> dict:
    # A processor started while Redis is away would only wait for it: say so instead (503).
    get_current_available_seats()
    jobs.start_processor()
    return {"status": "Queue processing"}


def main() -> None:
    # --help; HOST, PORT, REDIS_URL; the start line; the seats set up once Redis answers.
    settings = launch(__doc__, first_contact=get_current_available_seats)
    server = Granian(
        f"{Path(__file__).stem}:app", interface=Interfaces.WSGI, working_dir=Path(__file__).parent, **settings
    )
    server.serve()


if __name__ == "__main__":
    run(main)
