"""The course's expected output, task by task: the one copy that the tests and ``make tour`` read.

Fixed outputs are lists of lines. Outputs that carry job ids, or whose lines may interleave,
come with a checker that returns what is wrong (an empty list when the output matches).
"""

from __future__ import annotations

import json
import re

CONNECTED = "Redis client connected to the server"
NOT_CONNECTED_PREFIX = "Redis client not connected to the server: "

# Tasks 1 to 4 ------------------------------------------------------------------------------

REDIS_CLIENT = [CONNECTED]

# Task 0 stores Holberton = School; tasks 2 and 3 read it, then set HolbertonSanFrancisco.
REDIS_OP = [CONNECTED, "School", "Reply: OK", "100"]

# On a fresh database: six new fields, then the whole hash as Python prints a dict.
REDIS_ADVANCED_OP = [
    CONNECTED,
    *["Reply: 1"] * 6,
    "{'Portland': '50', 'Seattle': '80', 'New York': '20', 'Bogota': '20', 'Cali': '40', 'Paris': '2'}",
]

# Task 5 ------------------------------------------------------------------------------------

CHANNEL = "holberton school channel"
PUBLISHED = [
    ("Holberton Student #1 starts course", 100),
    ("Holberton Student #2 starts course", 200),
    ("KILL_SERVER", 300),
    ("Holberton Student #3 starts course", 400),
]
PUBLISHER = [CONNECTED, *(f"About to send {message}" for message, _ in PUBLISHED)]
SUBSCRIBER = [CONNECTED, *(message for message, _ in PUBLISHED[:3])]

# Jobs: tasks 6, 7 and 8 -------------------------------------------------------------------

CREATED = re.compile(r"Notification job created: (\d+)")


def created_ids(lines: list[str]) -> list[int]:
    return [int(match[1]) for line in lines if (match := CREATED.fullmatch(line))]


def sending_line(phone_number: str, message: str) -> str:
    return f"Sending notification to {phone_number}, with message: {message}"


TASK6_JOB = {"phoneNumber": "4153518780", "message": "This is the code to verify your account"}
TASK6_PROCESSOR = [sending_line(TASK6_JOB["phoneNumber"], TASK6_JOB["message"])]


def check_task6_processor(lines: list[str]) -> list[str]:
    return [] if lines == TASK6_PROCESSOR else [f"expected {TASK6_PROCESSOR}, got {lines}"]


def check_task6_creator(lines: list[str]) -> list[str]:
    """One ``created`` line with an integer id, then ``Notification job completed``."""
    if len(lines) == 2 and CREATED.fullmatch(lines[0]) and lines[1] == "Notification job completed":
        return []
    return [f"expected 'Notification job created: ID' then 'Notification job completed', got {lines}"]


TASK7_JOBS = [
    {"phoneNumber": "4153518780", "message": "This is the code 1234 to verify your account"},
    {"phoneNumber": "4153518781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4153518743", "message": "This is the code 4321 to verify your account"},
    {"phoneNumber": "4153538781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4153118782", "message": "This is the code 4321 to verify your account"},
    {"phoneNumber": "4153718781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4159518782", "message": "This is the code 4321 to verify your account"},
    {"phoneNumber": "4158718781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4153818782", "message": "This is the code 4321 to verify your account"},
    {"phoneNumber": "4154318781", "message": "This is the code 4562 to verify your account"},
    {"phoneNumber": "4151218782", "message": "This is the code 4321 to verify your account"},
]
BLACKLISTED = ("4153518780", "4153518781")
TASK7_PROCESSOR = sorted(
    sending_line(job["phoneNumber"], job["message"])
    for job in TASK7_JOBS
    if job["phoneNumber"] not in BLACKLISTED
)


def blacklisted_error(phone_number: str) -> str:
    return f"Phone number {phone_number} is blacklisted"


def task7_events(job: dict[str, str], job_id: int) -> list[str]:
    """The lines one task 7 job shows in its creator's terminal, in their fixed order."""
    if job["phoneNumber"] in BLACKLISTED:
        return [
            f"Notification job {job_id} 0% complete",
            f"Notification job {job_id} failed: {blacklisted_error(job['phoneNumber'])}",
        ]
    return [
        f"Notification job {job_id} 0% complete",
        f"Notification job {job_id} 50% complete",
        f"Notification job {job_id} completed",
    ]


def check_task7_creator(lines: list[str]) -> list[str]:
    """11 ``created`` lines with increasing ids, then each job's events in its own order.

    Lines of different jobs may interleave, as they did with Kue; the order within a job may not.
    """
    ids = created_ids(lines[: len(TASK7_JOBS)])
    if len(ids) != len(TASK7_JOBS) or ids != sorted(set(ids)):
        return [f"expected {len(TASK7_JOBS)} 'created' lines with increasing ids, got {lines[:11]}"]
    events = lines[len(TASK7_JOBS) :]
    problems = []
    for job, job_id in zip(TASK7_JOBS, ids, strict=True):
        prefix = f"Notification job {job_id} "
        seen = [line for line in events if line.startswith(prefix)]
        if seen != task7_events(job, job_id):
            problems.append(f"job {job_id}: expected {task7_events(job, job_id)}, got {seen}")
    expected_count = sum(len(task7_events(job, 0)) for job in TASK7_JOBS)
    if len(events) != expected_count:
        problems.append(f"expected {expected_count} event lines, got {len(events)}")
    return problems


def check_task7_processor(lines: list[str]) -> list[str]:
    """Exactly the 9 ``Sending notification`` lines (two jobs at a time: any order)."""
    if sorted(lines) == TASK7_PROCESSOR:
        return []
    return [f"expected the {len(TASK7_PROCESSOR)} lines {TASK7_PROCESSOR}, got {lines}"]


TASK8_QUEUE = "push_notification_code_3"
TASK8_JOB = {"phoneNumber": "4153518780", "message": "This is the code 1234 to verify your account"}


def check_task8_main(lines: list[str]) -> list[str]:
    if len(lines) == 1 and CREATED.fullmatch(lines[0]):
        return []
    return [f"expected one line 'Notification job created: ID', got {lines}"]


# Task 9: the "In stock?" API ---------------------------------------------------------------

PRODUCTS_BODY = (
    '[{"itemId":1,"itemName":"Suitcase 250","price":50,"initialAvailableQuantity":4},'
    '{"itemId":2,"itemName":"Suitcase 450","price":100,"initialAvailableQuantity":10},'
    '{"itemId":3,"itemName":"Suitcase 650","price":350,"initialAvailableQuantity":2},'
    '{"itemId":4,"itemName":"Suitcase 1050","price":550,"initialAvailableQuantity":5}]'
)
PRODUCT_NOT_FOUND = '{"status":"Product not found"}'


def product_body(current_quantity: int) -> str:
    return (
        '{"itemId":1,"itemName":"Suitcase 250","price":50,"initialAvailableQuantity":4,'
        f'"currentQuantity":{current_quantity}}}'
    )


RESERVATION_CONFIRMED = '{"status":"Reservation confirmed","itemId":1}'
NOT_ENOUGH_STOCK = '{"status":"Not enough stock available","itemId":1}'

# The course's curl session on a fresh database: (path, exact body); every status is 200.
STOCK_SESSION = [
    ("/list_products", PRODUCTS_BODY),
    ("/list_products/1", product_body(4)),
    ("/list_products/12", PRODUCT_NOT_FOUND),
    ("/reserve_product/12", PRODUCT_NOT_FOUND),
    ("/reserve_product/1", RESERVATION_CONFIRMED),
    ("/list_products/1", product_body(3)),
    ("/reserve_product/1", RESERVATION_CONFIRMED),
    ("/reserve_product/1", RESERVATION_CONFIRMED),
    ("/reserve_product/1", RESERVATION_CONFIRMED),
    ("/reserve_product/1", NOT_ENOUGH_STOCK),
    ("/list_products/1", product_body(0)),
]

# Task 10: "Can I have a seat?" -------------------------------------------------------------

INITIAL_SEATS = 50
RESERVATION_IN_PROCESS = '{"status":"Reservation in process"}'
RESERVATION_BLOCKED = '{"status":"Reservation are blocked"}'
RESERVATION_FAILED = '{"status":"Reservation failed"}'
QUEUE_PROCESSING = '{"status":"Queue processing"}'
NOT_ENOUGH_SEATS = "Not enough seats available"


def available_seats_body(seats: int) -> str:
    return json.dumps({"numberOfAvailableSeats": str(seats)}, separators=(",", ":"))


# The course's session on a server just started: (path, exact body), each status 200.
SEAT_SESSION = [
    ("/available_seats", available_seats_body(INITIAL_SEATS)),
    ("/reserve_seat", RESERVATION_IN_PROCESS),
    ("/process", QUEUE_PROCESSING),
]
SEAT_JOB_COMPLETED = re.compile(r"Seat reservation job (\d+) completed")
SEAT_JOB_FAILED = re.compile(r"Seat reservation job (\d+) failed: (.+)")

# The course's data: the keys the lessons keep in Redis, and their fresh values ------------
# (``make reset`` puts these back; tests/test_course_data.py checks the lessons use the same.)

SCHOOLS_HASH_KEY = "HolbertonSchools"

PRODUCTS = [
    {"itemId": 1, "itemName": "Suitcase 250", "price": 50, "initialAvailableQuantity": 4},
    {"itemId": 2, "itemName": "Suitcase 450", "price": 100, "initialAvailableQuantity": 10},
    {"itemId": 3, "itemName": "Suitcase 650", "price": 350, "initialAvailableQuantity": 2},
    {"itemId": 4, "itemName": "Suitcase 1050", "price": 550, "initialAvailableQuantity": 5},
]


def stock_key(item_id: int) -> str:
    """The key holding the units of a product still available (absent: all of them)."""
    return f"item.{item_id}"


AVAILABLE_SEATS_KEY = "available_seats"
RESERVATION_ENABLED_KEY = "reservation_enabled"
RESERVATION_ENABLED = "true"

TASK6_QUEUE = "push_notification_code"
TASK7_QUEUE = "push_notification_code_2"
SEAT_QUEUE = "reserve_seat"


# What a job program should have printed, to show beside what it did print -----------------
# The checkers above give the verdict; these give the expected lines for a diff, with the
# job ids the program printed (``ID`` where it printed none, or ids that do not increase).

ID = "ID"


def created_line(job_id: int | str) -> str:
    return f"Notification job created: {job_id}"


def task6_creator_wanted(lines: list[str]) -> list[str]:
    ids = created_ids(lines[:1])
    return [created_line(ids[0] if ids else ID), "Notification job completed"]


def task7_ids(lines: list[str]) -> list[int | str]:
    """The ids the 11 ``created`` lines gave, if they are 11 increasing ids; placeholders otherwise."""
    ids = created_ids(lines[: len(TASK7_JOBS)])
    if len(ids) == len(TASK7_JOBS) and ids == sorted(set(ids)):
        return list(ids)
    return [ID] * len(TASK7_JOBS)


def task7_creator_wanted(lines: list[str]) -> list[str]:
    ids = task7_ids(lines)
    events = [line for job, job_id in zip(TASK7_JOBS, ids, strict=True) for line in task7_events(job, job_id)]
    return [*map(created_line, ids), *events]


def task7_in_job_order(lines: list[str]) -> list[str]:
    """The creator's lines with each job's events gathered after the 11 ``created`` lines, job by job.

    Lines of different jobs may interleave; gathered, they line up with ``task7_creator_wanted``.
    Lines that belong to no job come last.
    """
    created, events = lines[: len(TASK7_JOBS)], lines[len(TASK7_JOBS) :]
    gathered = []
    for job_id in created_ids(created):
        gathered += [line for line in events if line.startswith(f"Notification job {job_id} ")]
    rest = list(events)
    for line in gathered:
        rest.remove(line)
    return [*created, *gathered, *rest]


def task8_main_wanted(lines: list[str]) -> list[str]:
    ids = created_ids(lines[:1])
    return [created_line(ids[0] if ids else ID)]


# Reservations under load: what the course's JavaScript got wrong --------------------------

SIMULTANEOUS_REQUESTS = 100
SEAT_PROCESS_CALLS = 2
