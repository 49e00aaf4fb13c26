"""Faults, on a real Redis run as redis_setup.sh runs it: a processor killed in the middle of a
batch, Redis restarted under everything, Redis gone.

Each test has a redis-server of its own (AOF on, fsync every second, bound to 127.0.0.1, a
free port, a directory of the test's), so that it can stop it as an operator does (SHUTDOWN,
which writes the data out first) and start it again on the same port and data.
Run them alone with ``pytest -m faults``. Every bound is for a broken run, not an
expectation of speed.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator

from course import expected
from course.events import ABANDONED_MESSAGE, COMPLETE, FAILED, JobEvent
from course.events import watch as course_events
from course.jobs import course_queue

import pytest
import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus

from checker.lessons import ROOT, Output, lines, run_script, wait_for_line
from tests.support import (
    PROCESSORS,
    STARTUP_TIMEOUT_SECONDS,
    JobListener,
    OwnRedis,
    Task7Feeder,
    read_until,
    serve_own_redis,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

TASK7_QUEUE = "push_notification_code_2"
JOB_FUNCTION = "7_job_processor.send_notification_job"
JSON = "application/json"
SERVICE_UNAVAILABLE = '{"error":"Service Unavailable"}'
SEAT_JOB_LINE = re.compile(r"Seat reservation job (\d+) (completed|failed: .+)")

READY_TIMEOUT_SECONDS = 20
# The bound: every job of a killed processor ends within 2 minutes of its restart.
SETTLE_TIMEOUT_SECONDS = 120
EVENTS_TIMEOUT_SECONDS = 60
# Slow enough to be killed or restarted under; the timeout fits the work, so that RQ may
# call a job of a dead worker abandoned soon: its timeout and the grace after it, which a
# processor run with ABANDON_SOON (tests/slow_processor.py) makes short.
SLOW_JOB_SECONDS = 3
SLOW_JOB_TIMEOUT_SECONDS = 5
ABANDON_SOON = {"ABANDON_SOON": "1"}
# Both workers stay busy this long, past a Redis restart, so the creator's jobs wait in the queue.
BUSY_JOB_SECONDS = 8
BUSY_JOB_TIMEOUT_SECONDS = 20
# Longer than a worker retries a command (about 11.5 s): past that, RQ's own loop has to wait.
LONG_OUTAGE_SECONDS = 15
WAIT_FOR_SEVERAL_TRIES_SECONDS = 3.5


# A Redis of the test's own --------------------------------------------------------------------


def failed_connection_line(port: int) -> str:
    """What a script prints when nothing listens on ``port``."""
    return f"{expected.NOT_CONNECTED_PREFIX}Error 111 connecting to 127.0.0.1:{port}. Connection refused."


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    """A server started as redis_setup.sh starts it: a restart keeps the queued jobs."""
    yield from serve_own_redis(tmp_path, persistent=True)


@pytest.fixture
def redis_url(own_redis) -> str:
    """The test's own Redis, for conftest's ``launch``, ``processors`` and ``start_server``."""
    return own_redis.url


@pytest.fixture
def rq_redis(own_redis) -> Iterator[redis.Redis]:
    """A client as RQ needs it (bytes), which reconnects by itself after a restart."""
    with redis.Redis.from_url(own_redis.url) as client:
        yield client


# The programs ---------------------------------------------------------------------------------


def stop_by(
    process: subprocess.Popen[str], how: str, read: Output | None = None
) -> tuple[int, list[str], str]:
    """Ctrl-C in its terminal (SIGINT to the group) or SIGTERM to it: (status, stdout lines, stderr).

    One that does not stop fails the test with the Python stack of each of its processes (when
    started with PYTHONFAULTHANDLER set).

    ``read``: its output, read all along (a processor that prints more than a pipe holds, 64 KB,
    would block writing and stop taking jobs); else read from now on.
    """
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    read = read or Output(process)
    try:
        process.wait(timeout=EVENTS_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{process.args} did not stop after {how}: {where_it_hangs(process, read)}")
    output, errors = read.text(EVENTS_TIMEOUT_SECONDS)
    return process.returncode, lines(output), errors


def where_it_hangs(process: subprocess.Popen[str], read: Output) -> str:
    """A program that did not stop: its processes, and the Python stack of each (faulthandler's)."""
    tree = subprocess.run(
        ["ps", "-o", "pid,ppid,stat,args", "-g", str(process.pid)], capture_output=True, text=True
    )
    os.killpg(process.pid, signal.SIGABRT)
    process.wait()
    output, errors = read.text(EVENTS_TIMEOUT_SECONDS)
    return f"{tree.stdout}\n{errors[-6000:]}"


def lines_of(events: list[JobEvent], job_id: str) -> list[str]:
    """The lines a task 7 creator prints for one job's events."""
    return [event.line("Notification job") for event in events if event.job_id == job_id]


def statuses(connection: redis.Redis, job_ids: list[str]) -> list[JobStatus | None]:
    return [job.get_status() if job else None for job in Job.fetch_many(job_ids, connection=connection)]


def wait_until_started(connection: redis.Redis, job_ids: list[str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while set(statuses(connection, job_ids)) != {JobStatus.STARTED}:
        assert time.monotonic() < deadline, f"jobs {job_ids} did not start: {statuses(connection, job_ids)}"
        time.sleep(0.02)


def assert_nothing_queued_or_started(queue: Queue) -> None:
    """Nothing queued, and nothing left started once RQ has recorded the jobs' ends.

    A job's outcome is published by its callback a moment before RQ moves it out of the
    started registry, so a job whose line was just printed may still be there briefly.
    """
    assert queue.job_ids == []
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while queue.started_job_registry.get_job_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue.started_job_registry.get_job_ids() == []


# A processor killed in the middle of a batch ------------------------------------------------


def test_a_processor_killed_mid_batch_and_restarted_settles_every_job(
    rq_redis, launch, processors, record_property
):
    queue = course_queue(TASK7_QUEUE, rq_redis)
    # Both processors call a dead worker's job abandoned soon: the killed one set the running
    # jobs' deadline, the restarted one's maintenance finds it passed.
    processor = processors("7_job_processor.py", slow_jobs=True, **ABANDON_SOON)
    events: list[JobEvent] = []

    with course_events.JobWatch(queue, on_event=events.append) as watch:
        # This watch is a creator whose batch is half done when the processor dies: two slow
        # jobs running, two queued; the course's creator waits with its 11 jobs queued behind.
        slow_ids = watch.enqueue_many("time.sleep", [SLOW_JOB_SECONDS] * 4, timeout=SLOW_JOB_TIMEOUT_SECONDS)
        creator = launch("7_job_creator.py")
        created = read_until(creator, expected.CREATED, len(expected.TASK7_JOBS))
        running, queued = slow_ids[:2], slow_ids[2:]
        wait_until_started(rq_redis, running)

        os.killpg(processor.pid, signal.SIGKILL)
        processor.communicate()
        killed_at = time.monotonic()
        restarted = launch("7_job_processor.py", slow_jobs=True, **ABANDON_SOON)

        assert watch.wait(timeout=SETTLE_TIMEOUT_SECONDS)
        output, errors = creator.communicate(timeout=SETTLE_TIMEOUT_SECONDS)
        record_property("settled_seconds_after_kill", round(time.monotonic() - killed_at, 1))

    for job_id in running:
        assert [event for event in events if event.job_id == job_id] == [
            JobEvent(job_id, FAILED, error=ABANDONED_MESSAGE)
        ]
    for job_id in queued:
        assert [event for event in events if event.job_id == job_id] == [JobEvent(job_id, COMPLETE)]
    assert expected.check_task7_creator(created + lines(output)) == []
    assert (errors, creator.returncode) == ("", 0)
    assert_nothing_queued_or_started(queue)
    status, processor_lines, processor_errors = stop_by(restarted, "ctrl-c")
    assert expected.check_task7_processor(processor_lines) == []
    assert (status, processor_errors) == (0, "")


# A processor stopped at random moments ----------------------------------------------------

# 50 stops in all, in shards that run side by side under xdist, each on its own Redis: every
# shard proves the same point on its tenth of the 50 (some within the first second).
STOPS = 50
STOP_SHARDS = 5
# Each stop comes this long after the processor was started: a third of them within its first
# half second (while Python imports RQ, or the pool forks its workers), most within 1.5 s.
STOP_AFTER_SECONDS = (0.0, 1.5)
FEED_BATCH = 5
SEED = 20261201


# The processor's lines before its first import of the course package, which makes an unhandled
# Ctrl-C quiet from then on (course/__init__.py).
BEFORE_THE_COURSE_PACKAGE = next(
    number
    for number, line in enumerate((ROOT / "7_job_processor.py").read_text().splitlines(), start=1)
    if line.startswith("from course")
)


def where_jobs_are(queue: Queue, job_ids: list[str]) -> dict[str, object]:
    """For a failure's message: how many jobs are pending, the first few, their statuses, the lists."""
    if not job_ids:
        return {}
    return {
        "pending": len(job_ids),
        "first": job_ids[:5],
        "statuses": Counter(str(status) for status in statuses(queue.connection, job_ids)),
        "queued": queue.count,
        "intermediate": queue.intermediate_queue.get_job_ids()[:5],
        "started": queue.started_job_registry.get_job_ids()[:5],
        "workers": [(worker.name, worker.get_state()) for worker in Worker.all(queue=queue)],
    }


def stopped_before_the_project_could_act(status: int, errors: str) -> bool:
    """A stop that landed before the course package was imported: CPython's own start-up.

    CPython turns SIGINT into KeyboardInterrupt from early in its start-up. One that lands
    while it imports ``site`` ends it with a fatal error, whatever the program; one that lands
    in the processor's lines up to its first import of the course package (the first
    statement of which makes it quiet), a millisecond or so, is a KeyboardInterrupt there.
    Nothing has run yet.
    """
    interrupted = errors.rstrip().endswith("KeyboardInterrupt")
    in_site = status == 1 and errors.startswith(
        "Fatal Python error: init_import_site: Failed to import the site module"
    )
    frames = errors.splitlines()[1:2]
    line = re.search(r'7_job_processor.py", line (\d+), in <module>$', frames[0]) if frames else None
    in_first_lines = (
        status == -signal.SIGINT
        and errors.startswith("Traceback (most recent call last):\n")
        and line is not None
        and int(line[1]) <= BEFORE_THE_COURSE_PACKAGE
    )
    return interrupted and (in_site or in_first_lines)


def planned_stops() -> list[tuple[str, float]]:
    """The 50 stops (how, seconds after the start), the same whichever shard runs them."""
    randomly = random.Random(SEED)
    return [
        ("ctrl-c" if index % 2 else "sigterm", randomly.uniform(*STOP_AFTER_SECONDS))
        for index in range(STOPS)
    ]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("shard", range(STOP_SHARDS))
def test_stops_at_random_moments_strand_no_job_and_fail_none(
    shard, rq_redis, launch, processors, record_property
):
    """Each stop: nothing left taken and not started, every job run once and reported, no traceback."""
    queue = course_queue(TASK7_QUEUE, rq_redis)
    heard: list[JobEvent] = []
    listener = JobListener(queue, heard.append).start()
    feeder = Task7Feeder(listener.watch, FEED_BATCH)
    feeder.start()
    stops: list[tuple[str, float, int, list[str], str]] = []
    started_at = time.monotonic()
    try:
        for how, after in planned_stops()[shard::STOP_SHARDS]:
            processor = launch("7_job_processor.py", PYTHONFAULTHANDLER="1")
            time.sleep(after)
            stops.append((how, round(after, 3), *stop_by(processor, how)))
        feeder.stop()
        last = processors("7_job_processor.py", PYTHONFAULTHANDLER="1")
        # Hundreds of jobs, a line each: more than a pipe holds.
        last_output = Output(last)
        settle_started_at = time.monotonic()
        while listener.watch.pending and time.monotonic() < settle_started_at + SETTLE_TIMEOUT_SECONDS:
            time.sleep(0.1)
        record_property("settle_seconds", round(time.monotonic() - settle_started_at, 1))
        left = where_jobs_are(queue, list(listener.watch.pending))
        stops.append(("last", 0.0, *stop_by(last, "ctrl-c", last_output)))
    finally:
        feeder.stop()
        listener.stop()
    record_property("stops_seconds", round(time.monotonic() - started_at, 1))
    record_property("jobs", len(feeder.sent))

    assert any(after < 1.0 for how, after, *_ in stops if how != "last"), "no stop within the first second"
    for how, after, status, output, errors in stops:
        if stopped_before_the_project_could_act(status, errors):
            continue
        # Killed by the signal itself only before Python could act on it: no traceback either way.
        assert status in (0, -signal.SIGINT, -signal.SIGTERM), (how, after, status, errors)
        assert errors == "", (how, after, errors)
        unexpected = [line for line in output if not line.startswith("Sending notification to ")]
        assert unexpected == [], (how, after)
    assert not left, left
    for job_id, data in feeder.sent.items():
        assert lines_of(heard, job_id) == expected.task7_events(data, int(job_id)), job_id
    assert_nothing_queued_or_started(queue)
    assert queue.intermediate_queue.get_job_ids() == []
    assert Worker.all(connection=rq_redis) == []


# Redis restarted under a processor, a creator and both APIs ---------------------------------


def test_after_a_redis_restart_everything_reconnects_and_no_job_is_lost(
    own_redis, rq_redis, launch, processors, start_server
):
    queue = course_queue(TASK7_QUEUE, rq_redis)
    processor = processors("7_job_processor.py", slow_jobs=True)
    stock = start_server("9_stock.py", own_redis.url, own_session=True)
    seat = start_server("100_seat.py", own_redis.url, own_session=True)
    # Both workers busy past the restart: the creator's 11 jobs are still queued when Redis goes.
    busy = [
        queue.enqueue("time.sleep", BUSY_JOB_SECONDS, job_timeout=BUSY_JOB_TIMEOUT_SECONDS) for _ in range(2)
    ]
    wait_until_started(rq_redis, [job.id for job in busy])
    creator = launch("7_job_creator.py")
    created = read_until(creator, expected.CREATED, len(expected.TASK7_JOBS))
    queued_seats = 3
    for _ in range(queued_seats):
        assert seat.request("/reserve_seat") == (200, JSON, expected.RESERVATION_IN_PROCESS)
    assert stock.request("/reserve_product/1") == (200, JSON, expected.RESERVATION_CONFIRMED)

    own_redis.shut_down()
    # Meanwhile: a JSON 503 from each API's Redis routes.
    assert stock.request("/list_products/1") == (503, JSON, SERVICE_UNAVAILABLE)
    assert seat.request("/available_seats") == (503, JSON, SERVICE_UNAVAILABLE)
    assert seat.request("/reserve_seat") == (503, JSON, SERVICE_UNAVAILABLE)
    own_redis.start()

    # The creator: every job's lines, in each job's order, then exit 0.
    output, errors = creator.communicate(timeout=EVENTS_TIMEOUT_SECONDS)
    assert expected.check_task7_creator(created + lines(output)) == []
    assert (errors, creator.returncode) == ("", 0)
    # The stock API: the unit taken before the restart stays taken, and reservations go on.
    assert stock.request("/list_products/1") == (200, JSON, expected.product_body(3))
    assert stock.request("/reserve_product/1") == (200, JSON, expected.RESERVATION_CONFIRMED)
    assert stock.request("/list_products/1") == (200, JSON, expected.product_body(2))
    # The seat API: the reservations queued before the restart, and one after, each take a seat
    # and its server prints their end.
    assert seat.request("/reserve_seat") == (200, JSON, expected.RESERVATION_IN_PROCESS)
    assert seat.request("/process") == (200, JSON, expected.QUEUE_PROCESSING)
    seat_lines = seat.read_until(SEAT_JOB_LINE, queued_seats + 1)
    assert Counter(SEAT_JOB_LINE.fullmatch(line)[2] for line in seat_lines) == {"completed": queued_seats + 1}
    assert seat.request("/available_seats") == (
        200,
        JSON,
        expected.available_seats_body(expected.INITIAL_SEATS - queued_seats - 1),
    )
    # The processor rode it out: the jobs it had in hand finished, nothing is left behind.
    assert statuses(rq_redis, [job.id for job in busy]) == [JobStatus.FINISHED] * 2
    assert_nothing_queued_or_started(queue)
    assert_nothing_queued_or_started(course_queue("reserve_seat", rq_redis))

    status, processor_lines, processor_errors = stop_by(processor, "ctrl-c")
    course_lines, redis_lines = split_redis_lines(processor_lines)
    assert expected.check_task7_processor(course_lines) == []
    # A restart this short is ridden out; if the processor noticed it, it said so once, and said it was back.
    assert redis_lines in ([], [redis_lines[0], expected.CONNECTED]), redis_lines
    assert (status, processor_errors) == (0, "")
    assert stock.stop() == (0, "", "")
    assert seat.stop() == (0, "", "")


# Redis gone ------------------------------------------------------------------------------------


def assert_the_course_jobs_run(url: str) -> None:
    """Tasks 6 and 7 each give the course's creator output: their processors serve them."""
    task6 = run_script("6_job_creator.py", url, timeout=EVENTS_TIMEOUT_SECONDS)
    assert expected.check_task6_creator(lines(task6.stdout)) == []
    assert (task6.stderr, task6.returncode) == ("", 0)
    task7 = run_script("7_job_creator.py", url, timeout=EVENTS_TIMEOUT_SECONDS)
    assert expected.check_task7_creator(lines(task7.stdout)) == []
    assert (task7.stderr, task7.returncode) == ("", 0)


def split_redis_lines(printed: list[str]) -> tuple[list[str], list[str]]:
    """A processor's output: (its course lines, its lines about Redis: failed-connection and connected)."""
    about_redis = [
        line
        for line in printed
        if line.startswith(expected.NOT_CONNECTED_PREFIX) or line == expected.CONNECTED
    ]
    return [line for line in printed if line not in about_redis], about_redis


def assert_stop_cleanly_having_printed(
    processors: dict[str, subprocess.Popen[str]], already_read: dict[str, list[str]]
) -> None:
    """Ctrl-C stops each processor; it printed its course lines, and Redis lost once, then back once."""
    sending = {"6_job_processor.py": expected.TASK6_PROCESSOR, "7_job_processor.py": expected.TASK7_PROCESSOR}
    for script, process in processors.items():
        status, output, errors = stop_by(process, "ctrl-c")
        course_lines, redis_lines = split_redis_lines(already_read.get(script, []) + output)
        assert (status, errors) == (0, ""), script
        assert sorted(course_lines) == sorted(sending[script]), script
        assert len(redis_lines) == 2, (script, redis_lines)
        assert redis_lines[0].startswith(expected.NOT_CONNECTED_PREFIX), (script, redis_lines)
        assert redis_lines[1] == expected.CONNECTED, (script, redis_lines)


def test_processors_started_without_redis_wait_for_it_then_work(own_redis, launch):
    own_redis.shut_down()
    failed_line = failed_connection_line(own_redis.port)
    started = {script: launch(script) for script in PROCESSORS}
    waited = {script: wait_for_line(process, failed_line) for script, process in started.items()}
    for script, process in started.items():
        assert waited[script] == [failed_line], script
        assert process.poll() is None, script
    # Long enough for several tries (after 1 s, then 2 s more): the line is printed once all the same.
    time.sleep(WAIT_FOR_SEVERAL_TRIES_SECONDS)

    own_redis.start()

    assert_the_course_jobs_run(own_redis.url)
    assert_stop_cleanly_having_printed(started, waited)


def test_processors_that_lose_redis_for_long_wait_and_resume(own_redis, processors):
    started = {script: processors(script) for script in PROCESSORS}

    own_redis.shut_down()
    time.sleep(LONG_OUTAGE_SECONDS)
    for script, process in started.items():
        assert process.poll() is None, script
    own_redis.start()

    assert_the_course_jobs_run(own_redis.url)
    assert_stop_cleanly_having_printed(started, {})


def test_programs_whose_redis_goes_for_good_say_so_and_exit_1(own_redis, launch):
    subscriber = launch("5_subscriber.py")
    assert wait_for_line(subscriber, expected.CONNECTED) == [expected.CONNECTED]
    # Creators waiting for jobs that no processor serves: they wait out a restart's absence
    # (course_events.RECONNECT_SECONDS), not this one.
    creators = {"6_job_creator.py": 1, "7_job_creator.py": len(expected.TASK7_JOBS)}
    waiting = {script: launch(script) for script in creators}
    for script, process in waiting.items():
        created = read_until(process, expected.CREATED, creators[script])
        assert len(expected.created_ids(created)) == creators[script], script

    own_redis.shut_down()

    for script, process in {"5_subscriber.py": subscriber, **waiting}.items():
        output, errors = process.communicate(timeout=EVENTS_TIMEOUT_SECONDS)
        [only_line] = lines(output)
        assert only_line.startswith(expected.NOT_CONNECTED_PREFIX), script
        assert (errors, process.returncode) == ("", 1), script
