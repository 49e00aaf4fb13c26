"""The course run: every task of a folder of solutions, its output beside the course's, a verdict.

``make check DIR=...`` (course/check.py) runs it on a learner's folder; ``make tour`` runs
it on this project's own scripts with the tour's rules: all 11 tasks must be there, and
a missing file fails its task. Either way:

- the folder is copied to a temporary directory and run from there, so nothing a script
  writes beside itself (``dump.rdb``, say) lands in the folder;
- every task runs on a Redis of the run's own: this project's ``redis_setup.sh``, copied
  to the temporary directory, started on a free port, stopped and deleted at the end
  (Ctrl-C included). The learner's Redis (``REDIS_URL``, ``REDIS_PORT``), its keys and
  its queued jobs are never touched. Task 0 runs the folder's ``redis_setup.sh`` on
  another free port, checks it, and shuts that server down;
- each lesson runs as a learner runs it: ``python NAME`` from the folder, with the folder
  on its import path and ``REDIS_URL`` pointing at the run's Redis; processors before
  creators; servers on a free port given as ``PORT`` (or the course's 1245 when a server
  ignores ``PORT`` and 1245 is free);
- a program that runs past the time limit is stopped and reported; one that fails shows
  the last lines it wrote to stderr; output that differs is shown as a diff;
- tasks 9 and 10 also send 100 simultaneous reservations, which the course's JavaScript
  oversold: overselling is reported as a warning, not a failure.

It ends with ``N/11 tasks match the course`` and exits 1 unless every task it ran matches.
"""

from __future__ import annotations

import argparse
import difflib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from course import expected
from course.lessons import (
    ROOT,
    SCRIPT_TIMEOUT_SECONDS,
    lines,
    run_script,
    start_script,
    stop_every_lesson,
    stop_script,
    wait_for_line,
)

import redis
from rq import Queue

SERVER_START_SECONDS = 30
# A first run of redis_setup.sh downloads and compiles Redis.
SETUP_TIMEOUT_SECONDS = 900
# How long a background program gets to stop on Ctrl-C before it is killed.
STOP_SECONDS = 20
COURSE_PORT = 1245
MAX_DIFF_LINES = 20
STDERR_TAIL_LINES = 10
# What a copy of a folder leaves out: environments, history, caches, a running Redis's data.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"
)
# Left out too, so that task 0 is seen writing them: the server's data and the deliverable.
TASK0_OUTPUTS = (".redis", "dump.rdb")
COURSE_TESTS = "8_job.test.py"


def diff(wanted: list[str], got: list[str]) -> str:
    """A unified diff of the course's lines and the program's, cut to MAX_DIFF_LINES lines."""
    shown = list(difflib.unified_diff(wanted, got, "expected", "got", lineterm="", n=2))
    if len(shown) > MAX_DIFF_LINES:
        shown = [*shown[: MAX_DIFF_LINES - 1], f"... ({len(shown) - MAX_DIFF_LINES + 1} more lines)"]
    return "\n".join(shown)


@dataclass
class Outcome:
    """What one task printed (one block per program), what differs from the course, and warnings."""

    blocks: list[tuple[str, list[str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def show(self, program: str, output: list[str]) -> None:
        self.blocks.append((program, output))

    def compare(self, program: str, output: list[str], wanted: list[str]) -> None:
        self.show(program, output)
        if output != wanted:
            self.problems.append(f"{program} printed something else:\n{diff(wanted, output)}")

    def check(
        self,
        program: str,
        output: list[str],
        problems: list[str],
        wanted: list[str] | None = None,
        arranged: list[str] | None = None,
    ) -> None:
        """Show the output, with the problems a checker found in it.

        Given the lines the course wanted (and the output ``arranged`` to line up with
        them), the problems are shown as a diff of the two.
        """
        self.show(program, output)
        shown = diff(wanted, output if arranged is None else arranged) if problems and wanted else ""
        if shown:
            self.problems.append(f"{program} printed something else:\n{shown}")
        else:
            self.problems.extend(f"{program}: {problem}" for problem in problems)

    def add(self, other: Outcome) -> None:
        self.blocks += other.blocks
        self.problems += other.problems
        self.warnings += other.warnings


@dataclass(frozen=True)
class Lessons:
    """Where the lessons are, how they run: the folder, extra environment, the time limit."""

    folder: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = SCRIPT_TIMEOUT_SECONDS

    @property
    def stop_timeout(self) -> float:
        return min(self.timeout, STOP_SECONDS)

    def start(self, script: str, url: str, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        return start_script(script, url, *args, cwd=self.folder, own_session=True, **self.env, **extra_env)

    def run(self, script: str, url: str, *args: str, **extra_env: str) -> tuple[list[str], list[str]]:
        """Run a program to its end: its stdout lines, and its problems (hung, failed, stderr)."""
        try:
            result = run_script(
                script,
                url,
                *args,
                timeout=self.timeout,
                cwd=self.folder,
                own_session=True,
                **self.env,
                **extra_env,
            )
        except subprocess.TimeoutExpired as hung:
            problems = [f"{script} was still running after {self.timeout:g} s: stopped (does it hang?)"]
            return lines(hung.stdout or ""), problems + stderr_problems(script, hung.stderr or "")
        return finished_output(script, result)


PROJECT = Lessons()


def stderr_problems(program: str, stderr: str) -> list[str]:
    """What a program wrote to stderr, its last lines (where a crash's traceback ends)."""
    if not stderr.strip():
        return []
    tail = "\n".join(lines(stderr.rstrip())[-STDERR_TAIL_LINES:])
    return [f"{program} wrote to stderr (last lines):\n{tail}"]


@dataclass
class Task:
    number: int
    title: str
    files: tuple[str, ...]
    run: Callable[[str, Lessons], Outcome]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nothing_listens_on(port: int) -> bool:
    """True if a connection to the port is refused (asked by connecting: nothing is bound)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def finished_output(program: str, result: subprocess.CompletedProcess[str]) -> tuple[list[str], list[str]]:
    """A finished program's stdout lines, and problems if it failed or printed to stderr."""
    problems = []
    if result.returncode != 0:
        problems.append(f"{program} exited with status {result.returncode}")
    return lines(result.stdout), problems + stderr_problems(program, result.stderr)


def run_and_compare(outcome: Outcome, script: str, url: str, wanted: list[str], lessons: Lessons) -> None:
    output, problems = lessons.run(script, url)
    outcome.compare(script, output, wanted)
    outcome.problems.extend(problems)


def stopped_output(
    program: str, process: subprocess.Popen[str], already_read: list[str], timeout: float = STOP_SECONDS
) -> tuple[list[str], list[str]]:
    """Stop a background program as Ctrl-C does; all it printed, and problems if it did not stop cleanly."""
    stdout, stderr = stop_script(process, timeout=timeout)
    problems = []
    if process.returncode == -signal.SIGKILL:
        problems.append(f"{program} did not stop on Ctrl-C within {timeout:g} s: killed")
    if "Traceback" in stdout + stderr:
        problems.append(f"{program} printed a traceback")
        problems += stderr_problems(program, stderr)
    return already_read + lines(stdout), problems


# Redis servers of the run's own --------------------------------------------------------------


class RedisDidNotStart(Exception):
    """The run's own Redis could not be started: nothing can be checked."""


@dataclass(frozen=True)
class RunRedis:
    """The run's own server: a copy of this project's redis_setup.sh in ``home``, on a free port."""

    home: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def setup(self, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        # The environment has no REDIS_PASSWORD (check_folder drops it): the run's URL has none.
        return subprocess.run(
            ["./redis_setup.sh", command],
            cwd=self.home,
            env={**os.environ, "REDIS_PORT": str(self.port)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self) -> None:
        self.home.mkdir()
        shutil.copy2(ROOT / "redis_setup.sh", self.home)
        result = self.setup("start", timeout=SETUP_TIMEOUT_SECONDS)
        if result.returncode != 0:
            raise RedisDidNotStart(result.stdout + result.stderr)

    def stop(self) -> None:
        self.setup("stop", timeout=60)


def shut_down_redis_on(port: int) -> None:
    """Shut down whatever Redis a script started on a port the run chose for it."""
    try:
        with redis.Redis("127.0.0.1", port, socket_timeout=5) as client:
            client.shutdown(nosave=True)
    except redis.ConnectionError:  # none there, or it went down while answering SHUTDOWN
        pass


# The tasks ---------------------------------------------------------------------------------


def run_redis_setup(lessons: Lessons, port: int) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``./redis_setup.sh`` from the lessons' folder on ``port``, in a session of its own.

    Its output goes to files, not pipes: a server it leaves running in the background would
    hold a pipe open, and reading it would never end. Returns its result and process group.
    """
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            ["./redis_setup.sh"],
            cwd=lessons.folder,
            env={**os.environ, **lessons.env, "REDIS_PORT": str(port)},
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=max(lessons.timeout, SETUP_TIMEOUT_SECONDS))
        except BaseException as stopped:  # out of time, or Ctrl-C: it goes too
            os.killpg(process.pid, signal.SIGKILL)
            returncode = process.wait()
            if not isinstance(stopped, subprocess.TimeoutExpired):
                raise
        stdout.seek(0)
        stderr.seek(0)
        result = subprocess.CompletedProcess(process.args, returncode, stdout.read(), stderr.read())
        return result, process.pid


def task_redis_server(url: str, lessons: Lessons = PROJECT) -> Outcome:
    """Task 0 runs on a server of its own (``url`` is the run's): it starts one, like the course."""
    outcome = Outcome()
    script = lessons.folder / "redis_setup.sh"
    if "REDIS_PORT" not in script.read_text(errors="replace"):
        outcome.problems.append(
            "redis_setup.sh does not read REDIS_PORT (the course's starts Redis on REDIS_PORT): it was not"
            " run, since on the default port it would start or change your own Redis"
        )
        return outcome
    if not os.access(script, os.X_OK):
        outcome.problems.append("redis_setup.sh is not executable (chmod +x redis_setup.sh)")
        return outcome
    port = free_port()
    group = None
    try:
        result, group = run_redis_setup(lessons, port)
        output, problems = finished_output("redis_setup.sh", result)
        outcome.show("redis_setup.sh", output)
        outcome.problems.extend(problems)
        outcome.problems.extend(redis_setup_problems(port, lessons.folder))
    finally:
        shut_down_redis_on(port)
        if group is not None:
            kill_group(group)  # whatever else it left running (a server started with `&`, say)
    return outcome


def kill_group(group: int) -> None:
    with suppress(ProcessLookupError):  # nothing of it is left
        os.killpg(group, signal.SIGKILL)


def redis_setup_problems(port: int, folder: Path) -> list[str]:
    """What the course's task 0 leaves that is not there: a server answering, Holberton, dump.rdb."""
    problems = []
    try:
        with redis.Redis("127.0.0.1", port, decode_responses=True, socket_timeout=5) as client:
            if client.get("Holberton") != "School":
                problems.append("GET Holberton does not answer School")
    except redis.RedisError as error:
        problems.append(f"no Redis answers on 127.0.0.1:{port} (REDIS_PORT) afterwards: {error}")
    dump = folder / "dump.rdb"
    if not dump.exists() or b"Holberton" not in dump.read_bytes():
        problems.append("dump.rdb with Holberton = School is missing beside redis_setup.sh")
    return problems


def fixed_output(script: str, url: str, wanted: list[str], lessons: Lessons = PROJECT) -> Outcome:
    """A task whose one program runs to its end and prints the course's fixed lines."""
    outcome = Outcome()
    run_and_compare(outcome, script, url, wanted, lessons)
    return outcome


def task_redis_client(url: str, lessons: Lessons = PROJECT) -> Outcome:
    return fixed_output("0_redis_client.py", url, expected.REDIS_CLIENT, lessons)


def task_redis_op(url: str, lessons: Lessons = PROJECT) -> Outcome:
    return fixed_output("1_redis_op.py", url, expected.REDIS_OP, lessons)


def task_redis_op_async(url: str, lessons: Lessons = PROJECT) -> Outcome:
    return fixed_output("2_redis_op_async.py", url, expected.REDIS_OP, lessons)


def task_redis_advanced_op(url: str, lessons: Lessons = PROJECT) -> Outcome:
    with redis.Redis.from_url(url) as client:
        client.delete(expected.SCHOOLS_HASH_KEY)  # the course's output is for a fresh database
    return fixed_output("4_redis_advanced_op.py", url, expected.REDIS_ADVANCED_OP, lessons)


def task_pubsub(url: str, lessons: Lessons = PROJECT) -> Outcome:
    outcome = Outcome()
    subscriber = lessons.start("5_subscriber.py", url)
    ready: list[str] = []
    try:
        ready = wait_for_line(subscriber, expected.CONNECTED, timeout=lessons.timeout)
        if ready[-1:] != [expected.CONNECTED]:
            outcome.problems.append("5_subscriber.py never said it was connected")
        run_and_compare(outcome, "5_publisher.py", url, expected.PUBLISHER, lessons)
        try:
            subscriber.wait(timeout=10)
        except subprocess.TimeoutExpired:
            outcome.problems.append("5_subscriber.py did not exit after KILL_SERVER")
    finally:
        output, problems = stopped_output("5_subscriber.py", subscriber, ready, lessons.stop_timeout)
    outcome.compare("5_subscriber.py", output, expected.SUBSCRIBER)
    outcome.problems.extend(problems)
    if subscriber.returncode not in (0, -signal.SIGKILL):
        outcome.problems.append(f"5_subscriber.py exited with status {subscriber.returncode}")
    return outcome


@dataclass(frozen=True)
class JobPrograms:
    """A creator and its processor, and how to judge and show what each printed."""

    creator: str
    processor: str
    check_creator: Callable[[list[str]], list[str]]
    creator_wanted: Callable[[list[str]], list[str]]
    check_processor: Callable[[list[str]], list[str]]
    processor_wanted: list[str]
    creator_arranged: Callable[[list[str]], list[str]] = list
    processor_arranged: Callable[[list[str]], list[str]] = list


def run_creator_with_processor(outcome: Outcome, url: str, programs: JobPrograms, lessons: Lessons) -> None:
    """Start the processor in the background, run the creator to its end, then stop the processor."""
    worker = lessons.start(programs.processor, url)
    try:
        output, problems = lessons.run(programs.creator, url)
        outcome.check(
            programs.creator,
            output,
            programs.check_creator(output),
            programs.creator_wanted(output),
            programs.creator_arranged(output),
        )
        outcome.problems.extend(problems)
    finally:
        processor_output, processor_problems = stopped_output(
            programs.processor, worker, [], lessons.stop_timeout
        )
    outcome.check(
        programs.processor,
        processor_output,
        programs.check_processor(processor_output),
        programs.processor_wanted,
        programs.processor_arranged(processor_output),
    )
    outcome.problems.extend(processor_problems)


def empty_queue(url: str, name: str) -> None:
    """Drop jobs an interrupted earlier run left queued: the course's output is for this run's jobs."""
    with redis.Redis.from_url(url) as client:
        Queue(name, connection=client).empty()


TASK6 = JobPrograms(
    "6_job_creator.py",
    "6_job_processor.py",
    expected.check_task6_creator,
    expected.task6_creator_wanted,
    expected.check_task6_processor,
    expected.TASK6_PROCESSOR,
)
TASK7 = JobPrograms(
    "7_job_creator.py",
    "7_job_processor.py",
    expected.check_task7_creator,
    expected.task7_creator_wanted,
    expected.check_task7_processor,
    expected.TASK7_PROCESSOR,
    creator_arranged=expected.task7_in_job_order,
    processor_arranged=sorted,  # two jobs at a time: any order
)


def task_job_creator(url: str, lessons: Lessons = PROJECT) -> Outcome:
    empty_queue(url, expected.TASK6_QUEUE)
    outcome = Outcome()
    run_creator_with_processor(outcome, url, TASK6, lessons)
    return outcome


def task_job_processor(url: str, lessons: Lessons = PROJECT) -> Outcome:
    empty_queue(url, expected.TASK7_QUEUE)
    outcome = Outcome()
    run_creator_with_processor(outcome, url, TASK7, lessons)
    return outcome


def task_job_function(url: str, lessons: Lessons = PROJECT) -> Outcome:
    """Task 8's main program, then the course's own tests (this project's 8_job.test.py) on it."""
    outcome = Outcome()
    output, problems = lessons.run("8_job_main.py", url)
    outcome.check(
        "8_job_main.py", output, expected.check_task8_main(output), expected.task8_main_wanted(output)
    )
    outcome.problems.extend(problems)
    course_tests = ROOT / COURSE_TESTS
    if not course_tests.exists():
        outcome.problems.append(f"the course's tests, {COURSE_TESTS}, are missing from {ROOT}")
        return outcome
    if course_tests.resolve() != (lessons.folder / COURSE_TESTS).resolve():
        shutil.copy2(course_tests, lessons.folder / COURSE_TESTS)
    # python -m pytest, as a learner runs the course's tests; importlib mode: the file's name has a dot.
    tests_output, tests_problems = lessons.run(
        "-m", url, "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib", COURSE_TESTS
    )
    outcome.show(f"pytest {COURSE_TESTS} (the course's tests)", tests_output[-1:])
    if tests_problems:
        failures = "\n".join(tests_output[-MAX_DIFF_LINES:])
        outcome.problems.append(f"the course's {COURSE_TESTS} does not pass:\n{failures}")
    return outcome


# The APIs ----------------------------------------------------------------------------------


def get(port: int, path: str) -> tuple[int, str, str]:
    """One HTTP GET, as curl does: status, content type, body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


def simultaneous_gets(port: int, path: str, count: int) -> list[str]:
    """``count`` GETs sent at once, each on its own connection: their bodies (``""`` for a failed one)."""
    start = threading.Barrier(count)
    bodies = [""] * count

    def request(index: int) -> None:
        start.wait()
        with suppress(OSError):
            bodies[index] = get(port, path)[2]

    threads = [threading.Thread(target=request, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return bodies


def wait_until_serving(server: subprocess.Popen[str], port: int, *other_ports: int) -> int | None:
    """The first of the ports that accepts connections while the server runs; None if none does in time."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline and server.poll() is None:
        for candidate in (port, *other_ports):
            try:
                with socket.create_connection(("127.0.0.1", candidate), timeout=1):
                    return candidate
            except OSError:
                pass
        time.sleep(0.1)
    return None


def play_session(outcome: Outcome, port: int, session: list[tuple[str, str]]) -> None:
    """Request each path like the course's curl session; show and compare status, type and body."""
    wanted = []
    output = []
    for path, wanted_body in session:
        status, content_type, body = get(port, path)
        command = f"$ curl localhost:{port}{path}"
        wanted += [command, wanted_body]
        answer = body
        if status != 200 or not content_type.startswith("application/json"):
            answer = f"{body}    (HTTP {status}, {content_type or 'no content type'})"
        output += [command, answer]
    outcome.compare("curl", output, wanted)


@contextmanager
def serving(
    url: str, script: str, lessons: Lessons, outcome: Outcome
) -> Iterator[tuple[int | None, subprocess.Popen[str], list[str]]]:
    """Start an API server on a free port (or 1245, if it ignores PORT and 1245 is free).

    Gives the port it serves on (None if it never did), the server, and a list for the lines
    read from its output meanwhile; at the end, stops it and shows all it printed.
    """
    port = free_port()
    fallback = (COURSE_PORT,) if nothing_listens_on(COURSE_PORT) else ()
    server = lessons.start(script, url, PORT=str(port))
    server_lines: list[str] = []
    try:
        serving_port = wait_until_serving(server, port, *fallback)
        if serving_port is None:
            outcome.problems.append(not_serving(script, port, fallback))
        elif serving_port != port:
            outcome.show(f"{script} ignores PORT", [f"it serves on {serving_port}, the course's port"])
        yield serving_port, server, server_lines
    finally:
        output, problems = stopped_output(script, server, server_lines, lessons.stop_timeout)
        outcome.show(f"{script} (server)", output)
        outcome.problems.extend(problems)


def not_serving(script: str, port: int, fallback: tuple[int, ...]) -> str:
    if fallback:
        return f"{script} did not start serving on port {port} (PORT) nor on {COURSE_PORT}"
    return (
        f"{script} did not start serving on port {port} (PORT); {COURSE_PORT} is taken, so a server"
        " that ignores PORT could not start"
    )


def run_api(
    url: str,
    script: str,
    play: Callable[[Outcome, int, subprocess.Popen[str]], list[str]],
    lessons: Lessons = PROJECT,
) -> Outcome:
    """Start an API server, let ``play`` talk to it, stop it and show its output."""
    outcome = Outcome()
    with serving(url, script, lessons, outcome) as (port, server, server_lines):
        if port is not None:
            server_lines += play(outcome, port, server)
    return outcome


def clear_stock(url: str) -> None:
    """Every product back in stock: no ``item.N`` key."""
    with redis.Redis.from_url(url) as client:
        client.delete(*(expected.stock_key(product["itemId"]) for product in expected.PRODUCTS))


def other_answers(bodies: list[str], expected_answers: int) -> str:
    """How many of the simultaneous requests got some other answer, or none (a timeout, an error)."""
    others = len(bodies) - expected_answers
    return f", {others} other answers or none" if others else ""


def probe_stock_overselling(outcome: Outcome, url: str, port: int) -> None:
    """100 simultaneous reservations of item 1 (4 in stock): more than 4 confirmed is overselling."""
    clear_stock(url)
    in_stock = expected.PRODUCTS[0]["initialAvailableQuantity"]
    bodies = simultaneous_gets(port, "/reserve_product/1", expected.SIMULTANEOUS_REQUESTS)
    confirmed = bodies.count(expected.RESERVATION_CONFIRMED)
    refused = bodies.count(expected.NOT_ENOUGH_STOCK)
    outcome.show(
        "100 simultaneous reservations",
        [
            f"{expected.SIMULTANEOUS_REQUESTS} requests for item 1, {in_stock} in stock:"
            f" {confirmed} confirmed, {refused} not enough stock{other_answers(bodies, confirmed + refused)}"
        ],
    )
    if confirmed > in_stock:
        outcome.warnings.append(
            f"reservations oversell: {confirmed} of {expected.SIMULTANEOUS_REQUESTS} simultaneous requests"
            f" were confirmed for {in_stock} units (the course's JavaScript oversells the same way: it reads"
            " the stock, then writes it). Make the check and the take one step in Redis (a Lua script)."
        )


def task_stock(url: str, lessons: Lessons = PROJECT) -> Outcome:
    clear_stock(url)  # the course's session starts with every item in stock

    def play(outcome: Outcome, port: int, _server: subprocess.Popen[str]) -> list[str]:
        play_session(outcome, port, expected.STOCK_SESSION)
        probe_stock_overselling(outcome, url, port)
        return []

    return run_api(url, "9_stock.py", play, lessons)


def fresh_seats(url: str) -> None:
    """A launch as on a new database: no seat count, no flag, no queued reservation."""
    empty_queue(url, expected.SEAT_QUEUE)
    with redis.Redis.from_url(url) as client:
        client.delete(expected.AVAILABLE_SEATS_KEY, expected.RESERVATION_ENABLED_KEY)


def seat_job_lines(server: subprocess.Popen[str], count: int, timeout: float) -> list[str]:
    """What the server prints until ``count`` job outcome lines came (or ``timeout`` is over)."""
    outcome_line = re.compile(f"{expected.SEAT_JOB_COMPLETED.pattern}|{expected.SEAT_JOB_FAILED.pattern}")
    printed: list[str] = []
    deadline = time.monotonic() + timeout
    while sum(map(bool, map(outcome_line.fullmatch, printed))) < count:
        left = deadline - time.monotonic()
        seen = wait_for_line(server, outcome_line, timeout=left) if left > 0 else []
        printed += seen
        if not seen or not outcome_line.fullmatch(seen[-1]):
            break
    return printed


def probe_seat_overselling(url: str, lessons: Lessons) -> Outcome:
    """On a server just launched (50 seats): 100 simultaneous reservations, then /process twice at once."""
    outcome = Outcome()
    fresh_seats(url)
    with serving(url, "100_seat.py", lessons, Outcome()) as (port, server, server_lines):
        if port is None:
            return outcome
        answers = simultaneous_gets(port, "/reserve_seat", expected.SIMULTANEOUS_REQUESTS)
        queued = answers.count(expected.RESERVATION_IN_PROCESS)
        # The course's other answers: a queue bounded by the seats left, or reservations blocked.
        refused = answers.count(expected.RESERVATION_FAILED) + answers.count(expected.RESERVATION_BLOCKED)
        simultaneous_gets(port, "/process", expected.SEAT_PROCESS_CALLS)
        server_lines += seat_job_lines(server, queued, lessons.timeout)
        completed = sum(bool(expected.SEAT_JOB_COMPLETED.fullmatch(line)) for line in server_lines)
        _, _, seats = get(port, "/available_seats")
    outcome.show(
        "100 simultaneous reservations",
        [
            f"{expected.SIMULTANEOUS_REQUESTS} requests for {expected.INITIAL_SEATS} seats:"
            f" {queued} queued, {refused} refused{other_answers(answers, queued + refused)};"
            " then /process twice at once:"
            f" {completed} completed, then {seats}"
        ],
    )
    if completed > expected.INITIAL_SEATS:
        outcome.warnings.append(
            f"reservations oversell: {completed} reservations completed for {expected.INITIAL_SEATS} seats"
            " (the course's JavaScript oversells the same way when /process runs twice: each job reads the"
            " seats, then writes them). Make the check and the take one step in Redis (a Lua script)."
        )
    return outcome


def task_seats(url: str, lessons: Lessons = PROJECT) -> Outcome:
    fresh_seats(url)

    def play(outcome: Outcome, port: int, server: subprocess.Popen[str]) -> list[str]:
        play_session(outcome, port, expected.SEAT_SESSION)
        printed = wait_for_line(server, expected.SEAT_JOB_COMPLETED, timeout=lessons.timeout)
        if not printed or not expected.SEAT_JOB_COMPLETED.fullmatch(printed[-1]):
            outcome.problems.append("the server never printed 'Seat reservation job ID completed'")
        status, _, body = get(port, "/available_seats")
        if body != expected.available_seats_body(expected.INITIAL_SEATS - 1):
            outcome.problems.append(f"after one reservation, /available_seats answered {status} {body}")
        return printed

    outcome = run_api(url, "100_seat.py", play, lessons)
    outcome.add(probe_seat_overselling(url, lessons))
    return outcome


TASKS = [
    Task(0, "A Redis server", ("redis_setup.sh",), task_redis_server),
    Task(1, "Connect to Redis", ("0_redis_client.py",), task_redis_client),
    Task(2, "SET and GET", ("1_redis_op.py",), task_redis_op),
    Task(3, "SET and GET with async/await", ("2_redis_op_async.py",), task_redis_op_async),
    Task(4, "A hash, field by field", ("4_redis_advanced_op.py",), task_redis_advanced_op),
    Task(5, "Publish and subscribe", ("5_subscriber.py", "5_publisher.py"), task_pubsub),
    Task(6, "A job and its processor", ("6_job_creator.py", "6_job_processor.py"), task_job_creator),
    Task(7, "Eleven jobs, two at a time", ("7_job_creator.py", "7_job_processor.py"), task_job_processor),
    Task(8, "A function making jobs", ("8_job.py", "8_job_main.py"), task_job_function),
    Task(9, "The 'In stock?' API", ("9_stock.py",), task_stock),
    Task(10, "'Can I have a seat?'", ("100_seat.py",), task_seats),
]


# Running a folder ----------------------------------------------------------------------------


def print_outcome(task: Task, outcome: Outcome) -> None:
    for program, output in outcome.blocks:
        print(f"  --- {program}")
        for line in output:
            print(f"  | {line}")
    for warning in outcome.warnings:
        print(f"  ! warning: {warning}")
    if outcome.problems:
        print(f"  ✗ Task {task.number}: differs from the course")
        for problem in outcome.problems:
            first, *rest = problem.splitlines()
            print(f"    - {first}")
            for line in rest:
                print(f"        {line}")
    else:
        print(f"  ✓ Task {task.number}: matches the course")


class CourseRun:
    """A folder's copy and a Redis of the run's own, in one temporary directory removed at the end."""

    def __init__(self, folder: Path, timeout: float) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="course-run-"))
        self.redis = RunRedis(self.directory / "redis", free_port())
        workspace = self.directory / "solution"
        # This project's course package alone, never its numbered scripts: a lesson missing from
        # the folder must not be found here instead.
        self.course_package = self.directory / "lib"
        import_path = [str(workspace), str(self.course_package), os.environ.get("PYTHONPATH", "")]
        self.lessons = Lessons(
            folder=workspace,
            env={
                "PYTHONPATH": os.pathsep.join(filter(None, import_path)),
                "REDIS_PORT": str(self.redis.port),
                "HOST": "127.0.0.1",
            },
            timeout=timeout,
        )
        self.folder = folder

    def __enter__(self) -> CourseRun:
        try:
            shutil.copytree(
                self.folder,
                self.lessons.folder,
                ignore=lambda directory, names: {*NOT_COPIED(directory, names), *TASK0_OUTPUTS} & set(names),
                ignore_dangling_symlinks=True,
            )
            shutil.copytree(ROOT / "course", self.course_package / "course", ignore=NOT_COPIED)
            self.redis.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        stop_every_lesson()
        if (self.redis.home / "redis_setup.sh").exists():
            self.redis.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def interrupt_once(signum: int, frame: object) -> None:
    """Ctrl-C or SIGTERM: stop the run; a second one must not cut short the clean-up that follows."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def run_task(task: Task, run: CourseRun, require_all: bool) -> bool | None:
    """Run one task and print its verdict: True if it matches, False if not, None if absent and allowed."""
    print(f"\n== Task {task.number}: {task.title} ({', '.join(task.files)})", flush=True)
    missing = [name for name in task.files if not (run.folder / name).exists()]
    if missing and len(missing) == len(task.files) and not require_all:
        print(f"  - Task {task.number}: missing {', '.join(missing)}")
        return None
    if missing:
        print(f"  ✗ Task {task.number}: missing {', '.join(missing)}")
        return False
    outcome = task.run(run.redis.url, run.lessons)
    print_outcome(task, outcome)
    return not outcome.problems


def check_folder(folder: Path, *, require_all: bool, timeout: float, name: str) -> int:
    """Run every task of ``folder``; the exit status: 0 if every task run matches (all 11 if required)."""
    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)
    os.environ.pop("REDIS_PASSWORD", None)  # the run's own Redis has none
    if not any((folder / file).exists() for task in TASKS for file in task.files):
        print(f"No course file in {folder}: nothing to check (the course's files are {course_files()})")
        return 1
    try:
        with CourseRun(folder, timeout) as run:
            print(f"The {name} runs on a Redis of its own, 127.0.0.1:{run.redis.port}: yours is not touched.")
            verdicts = [run_task(task, run, require_all) for task in TASKS]
    except KeyboardInterrupt:
        print(f"\n{name.capitalize()} interrupted")
        return 130
    except BrokenPipeError:  # its output was cut short (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except RedisDidNotStart as error:
        print(f"Could not start a Redis for the {name}:\n{error.args[0].strip()}")
        return 1
    absent = [task.number for task, verdict in zip(TASKS, verdicts, strict=True) if verdict is None]
    if absent:
        print(f"\nNot in {folder}: task{'s' if len(absent) > 1 else ''} {', '.join(map(str, absent))}")
    print(f"\n{verdicts.count(True)}/{len(TASKS)} tasks match the course")
    return 0 if False not in verdicts else 1


def course_files() -> str:
    return ", ".join(file for task in TASKS for file in task.files)


def main(argv: list[str] | None = None) -> int:
    """``make tour``: this project's own scripts, with the tour's rules (all 11 tasks, task 0 shown)."""
    argparse.ArgumentParser(
        prog="python -m course.tour",
        description="Run every course task of this project, each compared with the course, on a Redis"
        " of its own; all 11 must match.",
    ).parse_args(argv)
    return check_folder(ROOT, require_all=True, timeout=SCRIPT_TIMEOUT_SECONDS, name="tour")


if __name__ == "__main__":
    sys.exit(main())
