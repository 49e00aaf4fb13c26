"""``make tour``: every course task in order, its output beside the course's, and a verdict.

The tour runs on a Redis of its own: task 0 starts it with ``redis_setup.sh`` on a free
port (its data in ``.redis/PORT``), and it is stopped, its data removed, when the tour
ends, however it ends. The learner's Redis (``REDIS_URL``, ``REDIS_PORT``), its keys and
its queued jobs are never touched. The tour starts the background half of each lesson
itself (a subscriber, a processor, a server), stops everything it started, and ends with
``N/11 tasks match the course``: a task whose file is missing counts as not matching. It
exits 1 when any task differs, so it doubles as the course's acceptance check.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq import Queue

from course import expected
from course.lessons import (
    ROOT,
    lines,
    run_script,
    start_script,
    stop_every_lesson,
    stop_script,
    wait_for_line,
)

SERVER_START_SECONDS = 30


@dataclass
class Outcome:
    """What one task printed (one block per program) and what differs from the course."""

    blocks: list[tuple[str, list[str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def show(self, program: str, output: list[str]) -> None:
        self.blocks.append((program, output))

    def compare(self, program: str, output: list[str], wanted: list[str]) -> None:
        self.show(program, output)
        if output != wanted:
            self.problems.append(f"{program}: expected {wanted}")

    def check(self, program: str, output: list[str], problems: list[str]) -> None:
        self.show(program, output)
        self.problems.extend(f"{program}: {problem}" for problem in problems)


@dataclass
class Task:
    number: int
    title: str
    files: tuple[str, ...]
    run: Callable[[str], Outcome]


@dataclass(frozen=True)
class TourRedis:
    """The tour's own server: ``redis_setup.sh`` on a free port, with its data in ``.redis/PORT``."""

    port: int

    @classmethod
    def for_url(cls, url: str) -> TourRedis:
        return cls(urllib.parse.urlsplit(url).port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def data_dir(self) -> Path:
        return ROOT / ".redis" / str(self.port)

    def setup_env(self) -> dict[str, str]:
        """``redis_setup.sh``'s environment: this port, and no password (the tour's URL has none)."""
        env = {**os.environ, "REDIS_PORT": str(self.port)}
        env.pop("REDIS_PASSWORD", None)
        return env

    def setup(self, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["./redis_setup.sh", command],
            cwd=ROOT,
            env=self.setup_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def remove(self) -> None:
        """Stop the server (if task 0 started it) and delete its data directory."""
        self.setup("stop", timeout=60)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def finished_output(program: str, result: subprocess.CompletedProcess[str]) -> tuple[list[str], list[str]]:
    """A finished program's stdout lines, and problems if it failed or printed to stderr."""
    problems = []
    if result.returncode != 0:
        problems.append(f"{program} exited with status {result.returncode}")
    if result.stderr.strip():
        problems.append(f"{program} wrote to stderr: {result.stderr.strip()[-500:]}")
    return lines(result.stdout), problems


def run_and_compare(outcome: Outcome, script: str, url: str, wanted: list[str]) -> None:
    output, problems = finished_output(script, run_script(script, url, own_session=True))
    outcome.compare(script, output, wanted)
    outcome.problems.extend(problems)


def stopped_output(
    program: str, process: subprocess.Popen[str], already_read: list[str]
) -> tuple[list[str], list[str]]:
    """Stop a background program as Ctrl-C does; all it printed, and problems if it did not stop cleanly."""
    stdout, stderr = stop_script(process)
    problems = []
    if "Traceback" in stdout + stderr:
        problems.append(f"{program} printed a traceback when stopped: {stderr.strip()[-500:]}")
    return already_read + lines(stdout), problems


# The tasks ---------------------------------------------------------------------------------


def task_redis_server(url: str) -> Outcome:
    outcome = Outcome()
    # A first run builds Redis: allow for a download and a compilation.
    result = TourRedis.for_url(url).setup("start", timeout=1800)
    output, problems = finished_output("redis_setup.sh", result)
    outcome.show("redis_setup.sh", output)
    outcome.problems.extend(problems)
    if result.returncode != 0:
        return outcome
    with redis.Redis.from_url(url, decode_responses=True) as client:
        if not client.ping():
            outcome.problems.append("the server does not answer PING")
        if client.get("Holberton") != "School":
            outcome.problems.append("GET Holberton does not answer School")
    dump = ROOT / "dump.rdb"
    if not dump.exists() or b"Holberton" not in dump.read_bytes():
        outcome.problems.append("dump.rdb with Holberton = School is missing at the project root")
    return outcome


def fixed_output(script: str, url: str, wanted: list[str]) -> Outcome:
    """A task whose one program runs to its end and prints the course's fixed lines."""
    outcome = Outcome()
    run_and_compare(outcome, script, url, wanted)
    return outcome


def task_redis_client(url: str) -> Outcome:
    return fixed_output("0_redis_client.py", url, expected.REDIS_CLIENT)


def task_redis_op(url: str) -> Outcome:
    return fixed_output("1_redis_op.py", url, expected.REDIS_OP)


def task_redis_op_async(url: str) -> Outcome:
    return fixed_output("2_redis_op_async.py", url, expected.REDIS_OP)


def task_redis_advanced_op(url: str) -> Outcome:
    with redis.Redis.from_url(url) as client:
        client.delete("HolbertonSchools")  # the course's output is for a fresh database
    return fixed_output("4_redis_advanced_op.py", url, expected.REDIS_ADVANCED_OP)


def task_pubsub(url: str) -> Outcome:
    outcome = Outcome()
    subscriber = start_script("5_subscriber.py", url, own_session=True)
    ready: list[str] = []
    try:
        ready = wait_for_line(subscriber, expected.CONNECTED)
        if ready[-1:] != [expected.CONNECTED]:
            outcome.problems.append("5_subscriber.py never said it was connected")
        run_and_compare(outcome, "5_publisher.py", url, expected.PUBLISHER)
        try:
            subscriber.wait(timeout=10)
        except subprocess.TimeoutExpired:
            outcome.problems.append("5_subscriber.py did not exit after KILL_SERVER")
    finally:
        output, problems = stopped_output("5_subscriber.py", subscriber, ready)
    outcome.compare("5_subscriber.py", output, expected.SUBSCRIBER)
    outcome.problems.extend(problems)
    if subscriber.returncode != 0:
        outcome.problems.append(f"5_subscriber.py exited with status {subscriber.returncode}")
    return outcome


def run_creator_with_processor(
    outcome: Outcome,
    url: str,
    creator: str,
    processor: str,
    check_creator: Callable[[list[str]], list[str]],
    check_processor: Callable[[list[str]], list[str]],
) -> None:
    """Start the processor in the background, run the creator to its end, then stop the processor."""
    worker = start_script(processor, url, own_session=True)
    try:
        output, problems = finished_output(creator, run_script(creator, url, timeout=120, own_session=True))
        outcome.check(creator, output, check_creator(output) + problems)
    finally:
        processor_output, processor_problems = stopped_output(processor, worker, [])
    outcome.check(processor, processor_output, check_processor(processor_output) + processor_problems)


def empty_queue(url: str, name: str) -> None:
    """Drop jobs an interrupted earlier run left queued: the course's output is for this run's jobs."""
    with redis.Redis.from_url(url) as client:
        Queue(name, connection=client).empty()


def task_job_creator(url: str) -> Outcome:
    empty_queue(url, "push_notification_code")
    outcome = Outcome()
    run_creator_with_processor(
        outcome,
        url,
        "6_job_creator.py",
        "6_job_processor.py",
        expected.check_task6_creator,
        expected.check_task6_processor,
    )
    return outcome


def task_job_processor(url: str) -> Outcome:
    empty_queue(url, "push_notification_code_2")
    outcome = Outcome()
    run_creator_with_processor(
        outcome,
        url,
        "7_job_creator.py",
        "7_job_processor.py",
        expected.check_task7_creator,
        expected.check_task7_processor,
    )
    return outcome


def task_job_function(url: str) -> Outcome:
    outcome = Outcome()
    output, problems = finished_output("8_job_main.py", run_script("8_job_main.py", url, own_session=True))
    outcome.check("8_job_main.py", output, expected.check_task8_main(output) + problems)
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "8_job.test.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outcome.show("pytest 8_job.test.py", lines(tests.stdout)[-1:])
    if tests.returncode != 0:
        outcome.problems.append(f"8_job.test.py failed:\n{tests.stdout[-2000:]}")
    return outcome


def get(port: int, path: str) -> tuple[int, str, str]:
    """One HTTP GET, as curl does: status, content type, body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


def wait_until_serving(server: subprocess.Popen[str], port: int) -> bool:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def play_session(outcome: Outcome, port: int, session: list[tuple[str, str]]) -> None:
    """Request each path like the course's curl session; show and compare status, type and body."""
    output = []
    for path, wanted_body in session:
        status, content_type, body = get(port, path)
        output.append(f"$ curl localhost:{port}{path}")
        output.append(body)
        if (status, body) != (200, wanted_body) or not content_type.startswith("application/json"):
            outcome.problems.append(
                f"GET {path}: expected 200 application/json {wanted_body}, got {status} {content_type} {body}"
            )
    outcome.show("curl", output)


def run_api(
    url: str, script: str, play: Callable[[Outcome, int, subprocess.Popen[str]], list[str]]
) -> Outcome:
    """Start an API server on a free port, let ``play`` talk to it, stop it and show its output."""
    outcome = Outcome()
    port = free_port()
    server = start_script(script, url, own_session=True, PORT=str(port))
    server_lines: list[str] = []
    try:
        if wait_until_serving(server, port):
            server_lines = play(outcome, port, server)
        else:
            outcome.problems.append(f"{script} did not start serving on port {port}")
    finally:
        output, problems = stopped_output(script, server, server_lines)
    outcome.show(f"{script} (server)", output)
    outcome.problems.extend(problems)
    return outcome


def task_stock(url: str) -> Outcome:
    with redis.Redis.from_url(url) as client:
        stock_keys = list(client.scan_iter("item.*"))
        if stock_keys:
            client.delete(*stock_keys)  # the course's session starts with every item in stock

    def play(outcome: Outcome, port: int, _server: subprocess.Popen[str]) -> list[str]:
        play_session(outcome, port, expected.STOCK_SESSION)
        return []

    return run_api(url, "9_stock.py", play)


def task_seats(url: str) -> Outcome:
    empty_queue(url, "reserve_seat")

    def play(outcome: Outcome, port: int, server: subprocess.Popen[str]) -> list[str]:
        play_session(outcome, port, expected.SEAT_SESSION)
        printed = wait_for_line(server, expected.SEAT_JOB_COMPLETED)
        if not printed or not expected.SEAT_JOB_COMPLETED.fullmatch(printed[-1]):
            outcome.problems.append("the server never printed 'Seat reservation job ID completed'")
        status, _, body = get(port, "/available_seats")
        if body != expected.available_seats_body(expected.INITIAL_SEATS - 1):
            outcome.problems.append(f"after one reservation, /available_seats answered {status} {body}")
        return printed

    return run_api(url, "100_seat.py", play)


TASKS = [
    Task(0, "A Redis server", ("redis_setup.sh",), task_redis_server),
    Task(1, "Connect to Redis", ("0_redis_client.py",), task_redis_client),
    Task(2, "SET and GET", ("1_redis_op.py",), task_redis_op),
    Task(3, "SET and GET with async/await", ("2_redis_op_async.py",), task_redis_op_async),
    Task(4, "A hash, field by field", ("4_redis_advanced_op.py",), task_redis_advanced_op),
    Task(5, "Publish and subscribe", ("5_subscriber.py", "5_publisher.py"), task_pubsub),
    Task(6, "A job and its processor", ("6_job_creator.py", "6_job_processor.py"), task_job_creator),
    Task(7, "Eleven jobs, two at a time", ("7_job_creator.py", "7_job_processor.py"), task_job_processor),
    Task(8, "A function making jobs", ("8_job.py", "8_job_main.py", "8_job.test.py"), task_job_function),
    Task(9, "The 'In stock?' API", ("9_stock.py",), task_stock),
    Task(10, "'Can I have a seat?'", ("100_seat.py",), task_seats),
]


def print_outcome(task: Task, outcome: Outcome) -> None:
    for program, output in outcome.blocks:
        print(f"  --- {program}")
        for line in output:
            print(f"  | {line}")
    if outcome.problems:
        print("  ✗ differs from the course:")
        for problem in outcome.problems:
            print(f"    - {problem}")
    else:
        print("  ✓ matches the course")


def interrupt_once(signum: int, frame: object) -> None:
    """Ctrl-C or SIGTERM: stop the tour; a second one must not cut short the clean-up that follows."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)
    tour_redis = TourRedis(free_port())
    print(f"The tour runs on a Redis of its own, 127.0.0.1:{tour_redis.port}: yours is not touched.")
    try:
        matched = run_tasks(tour_redis.url)
    except KeyboardInterrupt:
        print("\nTour interrupted")
        return 130
    finally:
        stop_every_lesson()
        tour_redis.remove()
    print(f"\n{matched}/{len(TASKS)} tasks match the course")
    return 0 if matched == len(TASKS) else 1


def run_tasks(url: str) -> int:
    """Run every task in order; the number that match the course (a task with a missing file does not)."""
    matched = 0
    for task in TASKS:
        print(f"\n== Task {task.number}: {task.title} ({', '.join(task.files)})")
        missing = [name for name in task.files if not (ROOT / name).exists()]
        if missing:
            print(f"  ✗ Task {task.number}: missing {', '.join(missing)}")
            continue
        outcome = task.run(url)
        print_outcome(task, outcome)
        matched += not outcome.problems
    return matched


if __name__ == "__main__":
    sys.exit(main())
