"""Tasks 1 to 8 of the course run: each runs a folder's programs and compares them with the course.

Each task takes the run's Redis URL and the ``Lessons`` (where and how the programs run) and
returns an ``Outcome``. What is compared is ``Ran.compared`` (RQ's log lines out, job ids
numbered; see checker/compare.py); what is shown is what the program printed.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from course import expected

import redis
from rq import Queue

from checker.lessons import wait_for_line
from checker.report import Outcome
from checker.run import PROJECT, Lessons, Ran

COURSE_TESTS = "8_job.test.py"
# The check's own test of task 8's interface (never the project's 8_job.test.py, which tests
# this edition's design): run with pytest, it imports the folder's 8_job.py by its path.
INTERFACE_TEST = Path(__file__).with_name("task8_interface.py")


# Below Linux's range for outgoing connections (32768-60999 by default): a port the kernel handed out
# could be taken by another test's client between this check and the server's bind (the tests' CI: a
# stock server found its port taken). Picked at random, so parallel test workers rarely meet.
PORTS = range(20000, 32768)


def free_port() -> int:
    """A port nothing on 127.0.0.1 holds now, which no outgoing connection will take."""
    while True:
        port = random.SystemRandom().choice(PORTS)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def show_run(outcome: Outcome, ran: Ran) -> None:
    """Show what a program printed (and its stderr, if any); what went wrong running it is an error."""
    outcome.show(ran.program, ran.shown)
    outcome.show_stderr(ran.program, ran.stderr)
    outcome.errors.extend(ran.errors)


def run_and_compare(outcome: Outcome, script: str, url: str, wanted: list[str], lessons: Lessons) -> Ran:
    ran = lessons.run(script, url)
    outcome.compare(script, ran.compared, wanted, shown=ran.shown)
    outcome.show_stderr(script, ran.stderr)
    outcome.errors.extend(ran.errors)
    return ran


# Tasks 1 to 5 --------------------------------------------------------------------------------


def fixed_output(script: str, url: str, wanted: list[str], lessons: Lessons = PROJECT) -> Outcome:
    """A task whose one program runs to its end and prints the course's fixed lines."""
    outcome = Outcome()
    run_and_compare(outcome, script, url, wanted, lessons)
    return outcome


def task_redis_client(url: str, lessons: Lessons = PROJECT) -> Outcome:
    return fixed_output("0_redis_client.py", url, expected.REDIS_CLIENT, lessons)


def task_redis_op(url: str, lessons: Lessons = PROJECT) -> Outcome:
    with redis.Redis.from_url(url) as client:
        client.set("Holberton", "School")  # what task 0 left in the course's database
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
        with suppress(subprocess.TimeoutExpired):
            subscriber.wait(timeout=10)
        if subscriber.returncode is None:
            outcome.problems.append("5_subscriber.py did not exit after KILL_SERVER")
    finally:
        ran = lessons.stop("5_subscriber.py", subscriber, ready)
    outcome.compare("5_subscriber.py", ran.compared, expected.SUBSCRIBER, shown=ran.shown)
    outcome.show_stderr("5_subscriber.py", ran.stderr)
    outcome.errors.extend(ran.errors)
    return outcome


# Tasks 6 and 7 -------------------------------------------------------------------------------


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


def job_lines(ran: Ran) -> list[str]:
    """What a job program printed, compared: its connected line allowed first.

    The course's job programs print no connected line (Kue connected by itself); a solution
    whose job programs say they connected, as its other scripts do, is not wrong for it.
    """
    compared = ran.compared
    return compared[1:] if compared[:1] == [expected.CONNECTED] else compared


def run_creator_with_processor(outcome: Outcome, url: str, programs: JobPrograms, lessons: Lessons) -> None:
    """Start the processor in the background, run the creator to its end, then stop the processor."""
    worker = lessons.start(programs.processor, url)
    try:
        creator = lessons.run(programs.creator, url)
        output = job_lines(creator)
        outcome.check(
            programs.creator,
            output,
            programs.check_creator(output),
            programs.creator_wanted(output),
            programs.creator_arranged(output),
            shown=creator.shown,
        )
        outcome.show_stderr(programs.creator, creator.stderr)
    finally:
        processor = lessons.stop(programs.processor, worker)
    output = job_lines(processor)
    outcome.check(
        programs.processor,
        output,
        programs.check_processor(output),
        programs.processor_wanted,
        programs.processor_arranged(output),
        shown=processor.shown,
    )
    outcome.show_stderr(programs.processor, processor.stderr)
    # The processor's first: a processor that crashed explains a creator left waiting.
    outcome.errors.extend(processor.errors + creator.errors)


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


# Task 8 --------------------------------------------------------------------------------------


def task_job_function(url: str, lessons: Lessons = PROJECT) -> Outcome:
    """Task 8's main program, the check's test of its interface, and the folder's own 8_job.test.py."""
    outcome = Outcome()
    main = lessons.run("8_job_main.py", url)
    output = job_lines(main)
    outcome.check(
        "8_job_main.py",
        output,
        expected.check_task8_main(output),
        expected.task8_main_wanted(output),
        shown=main.shown,
    )
    outcome.show_stderr("8_job_main.py", main.stderr)
    outcome.errors.extend(main.errors)
    outcome.add(interface_test(url, lessons))
    outcome.add(own_tests(url, lessons))
    return outcome


def interface_test(url: str, lessons: Lessons = PROJECT) -> Outcome:
    """The check's test of create_push_notifications_jobs, kept out of the folder's reach.

    ``python -I``: neither the folder nor PYTHONPATH is on sys.path at start-up, so a
    ``pytest.py`` or ``sitecustomize.py`` of the folder's cannot replace pytest; the test sits
    in a directory of its own with an empty pytest.ini and ``--confcutdir`` there, so no
    ``conftest.py`` of the folder's (or of /tmp) is loaded; it imports 8_job.py by its path.
    """
    outcome = Outcome()
    directory = Path(tempfile.mkdtemp(prefix="task8-"))
    try:
        directory.chmod(0o755)  # readable by the solution's uid, writable by the check alone
        shutil.copy2(INTERFACE_TEST, directory / "test_task8_interface.py")
        (directory / "pytest.ini").write_text("[pytest]\n")
        ran = lessons.run(
            "-I",
            url,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--confcutdir={directory}",
            f"--rootdir={directory}",
            str(directory / "test_task8_interface.py"),
            program="the check's test of create_push_notifications_jobs",
            TASK8_MODULE=str(lessons.folder / "8_job.py"),
            PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    outcome.show(ran.program, ran.stdout[-1:])
    if ran.returncode != 0:
        failures = [line for line in ran.stdout if line.startswith(("FAILED", "ERROR", "E "))]
        outcome.problems.append(
            "create_push_notifications_jobs does not do what the course says:\n" + "\n".join(failures[:20])
        )
    return outcome


def own_tests(url: str, lessons: Lessons = PROJECT) -> Outcome:
    """The folder's own 8_job.test.py, run as its author runs it: reported, a failure only warned of."""
    outcome = Outcome()
    if not (lessons.folder / COURSE_TESTS).exists():
        outcome.warnings.append(f"no {COURSE_TESTS} in the folder (the course asks for one)")
        return outcome
    # importlib mode: the file's name has a dot, which the default mode reads as a package.
    ran = lessons.run(
        "-m",
        url,
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--import-mode=importlib",
        COURSE_TESTS,
        program=f"pytest {COURSE_TESTS} (the folder's own tests)",
    )
    outcome.show(ran.program, ran.stdout[-1:])
    if ran.returncode != 0:
        outcome.warnings.append(f"the folder's own {COURSE_TESTS} does not pass: {' '.join(ran.stdout[-1:])}")
    return outcome
