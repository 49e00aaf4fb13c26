"""Tasks 6, 7 and 8 run as a learner runs them: a processor in the background, its creator, one real Redis.

Also: stopping a processor (Ctrl-C, SIGTERM) leaves no traceback, no registered worker and
no half-done job; a creator whose events were lost still ends, from RQ's own state; a
plain ``rq worker`` runs the course's jobs; an unreachable Redis gets the course's line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from course import expected
from course.events import ABANDONED_MESSAGE, FAILED, JobEvent
from course.events import watch as course_events
from course.jobs import SERIALIZER, course_queue

import pytest
from rq import Worker
from rq.job import JobStatus

from checker.lessons import ROOT, lines, run_script, start_script, wait_for_line
from tests.support import PROCESSORS, STARTUP_TIMEOUT_SECONDS, ctrl_c, stopped_output

pytestmark = pytest.mark.timeout(120)

# Bounds for a broken run, not expectations of speed.
EVENTS_TIMEOUT_SECONDS = 60


def lines_of(events: list[JobEvent], job_id: str) -> list[str]:
    """The lines a task 7 creator prints for one job's events."""
    return [event.line("Notification job") for event in events if event.job_id == job_id]


# The course's runs ---------------------------------------------------------------------------


# Each task's programs, and the course's checks of what they print: task 6's one job; task 7's
# events of each job in order, and its processor's lines in any order (two workers).
COURSE_RUNS = {
    "task6": (
        "6_job_processor.py",
        "6_job_creator.py",
        expected.check_task6_creator,
        expected.check_task6_processor,
    ),
    "task7": (
        "7_job_processor.py",
        "7_job_creator.py",
        expected.check_task7_creator,
        expected.check_task7_processor,
    ),
}


@pytest.mark.parametrize(
    ("processor_script", "creator_script", "check_creator", "check_processor"),
    COURSE_RUNS.values(),
    ids=COURSE_RUNS,
)
def test_a_task_prints_the_course_lines(
    processors, redis_url, processor_script, creator_script, check_creator, check_processor
):
    processor = processors(processor_script)

    creator = run_script(creator_script, redis_url)
    processor_lines, processor_errors = stopped_output(processor)

    assert check_creator(lines(creator.stdout)) == []
    assert (creator.stderr, creator.returncode) == ("", 0)
    assert check_processor(processor_lines) == []
    assert (processor_errors, processor.returncode) == ("", 0)


def test_task6_ids_grow_by_one_from_run_to_run(processors, redis_url):
    processors("6_job_processor.py")

    first = run_script("6_job_creator.py", redis_url)
    second = run_script("6_job_creator.py", redis_url)

    [first_id] = expected.created_ids(lines(first.stdout))
    [second_id] = expected.created_ids(lines(second.stdout))
    assert second_id == first_id + 1


def test_task7_creator_started_before_its_processor_still_hears_everything(processors, redis_url):
    creator = start_script("7_job_creator.py", redis_url)
    created = wait_for_line(creator, f"Notification job created: {len(expected.TASK7_JOBS)}")

    processor = processors("7_job_processor.py")
    output, errors = creator.communicate(timeout=EVENTS_TIMEOUT_SECONDS)
    stopped_output(processor)

    assert expected.check_task7_creator(created + lines(output)) == []
    assert (errors, creator.returncode) == ("", 0)


def test_a_processor_faster_than_its_creator_loses_no_event(processors, rq_redis):
    """Each job is picked up while the creator is still creating the next ones."""
    processors("7_job_processor.py")
    queue = course_queue("push_notification_code_2", rq_redis)
    data = expected.TASK7_JOBS[2]
    events: list[JobEvent] = []

    with course_events.JobWatch(queue, on_event=events.append) as watch:
        job_ids = [watch.enqueue_many("7_job_processor.send_notification_job", [data])[0] for _ in range(100)]
        assert watch.wait(timeout=EVENTS_TIMEOUT_SECONDS)

    for job_id in job_ids:
        assert lines_of(events, job_id) == expected.task7_events(data, int(job_id))


def test_task8_main_creates_one_job_and_does_not_wait(redis_url, rq_redis):
    result = run_script("8_job_main.py", redis_url)

    assert expected.check_task8_main(lines(result.stdout)) == []
    assert (result.stderr, result.returncode) == ("", 0)
    queue = course_queue(expected.TASK8_QUEUE, rq_redis)
    assert [job.args[0] for job in queue.jobs] == [expected.TASK8_JOB]
    assert queue.job_ids == [str(job_id) for job_id in expected.created_ids(lines(result.stdout))]


# Stopping a processor ------------------------------------------------------------------------


def sigterm(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)


@pytest.mark.parametrize("stop", [ctrl_c, sigterm], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("script", PROCESSORS)
def test_an_idle_processor_stops_cleanly(script, stop, processors, rq_redis):
    processor = processors(script)

    output, errors = stopped_output(processor, stop)

    assert (output, errors, processor.returncode) == ([], "", 0)
    assert Worker.all(connection=rq_redis) == []


@pytest.mark.parametrize("stop", [ctrl_c, sigterm], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("script", PROCESSORS)
def test_a_busy_processor_finishes_its_job_then_stops_cleanly(script, stop, processors, rq_redis):
    processor = processors(script, slow_jobs=True)
    queue = course_queue(PROCESSORS[script][0], rq_redis)
    job = queue.enqueue("time.sleep", 2)
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while job.get_status() != JobStatus.STARTED and time.monotonic() < deadline:
        time.sleep(0.02)

    output, errors = stopped_output(processor, stop)

    assert (output, errors, processor.returncode) == ([], "", 0)
    assert job.get_status() == JobStatus.FINISHED
    assert Worker.all(connection=rq_redis) == []


def test_verbose_shows_rqs_own_log_lines(processors):
    processor = processors("6_job_processor.py", "--verbose")

    output, _ = stopped_output(processor)

    assert any("push_notification_code" in line for line in output)


# Lost events, abandoned jobs, plain RQ -------------------------------------------------------


def test_a_creator_whose_events_were_lost_ends_from_rqs_state(
    redis_url, rq_redis, run_worker_here, monkeypatch
):
    creator = start_script("6_job_creator.py", redis_url)
    created = wait_for_line(creator, expected.CREATED)
    monkeypatch.setattr("course.events.publish_event", lambda *args: None)

    run_worker_here(course_queue("push_notification_code", rq_redis))
    output, errors = creator.communicate(timeout=EVENTS_TIMEOUT_SECONDS)

    assert expected.check_task6_creator(created + lines(output)) == []
    assert (errors, creator.returncode) == ("", 0)


def test_a_lost_failure_event_still_reaches_the_creator_with_its_message(
    rq_redis, run_worker_here, monkeypatch
):
    queue = course_queue("push_notification_code_2", rq_redis)
    events: list[JobEvent] = []
    monkeypatch.setattr("course.events.publish_event", lambda *args: None)

    with course_events.JobWatch(queue, on_event=events.append) as watch:
        job_id = watch.enqueue_many("7_job_processor.send_notification_job", [expected.TASK7_JOBS[0]])[0]
        run_worker_here(queue)
        assert watch.wait(timeout=EVENTS_TIMEOUT_SECONDS)

    assert events == [JobEvent(job_id, FAILED, error=expected.blacklisted_error("4153518780"))]


def test_a_job_abandoned_by_a_killed_processor_fails_and_its_creator_hears_it(processors, rq_redis):
    processor = processors("7_job_processor.py", slow_jobs=True)
    queue = course_queue("push_notification_code_2", rq_redis)
    events: list[JobEvent] = []

    with course_events.JobWatch(queue, on_event=events.append) as watch:
        # A job slow enough to be killed in the middle: time.sleep(30), with the event callbacks.
        job = queue.fetch_job(watch.enqueue_many("time.sleep", [30])[0])
        while job.get_status() != JobStatus.STARTED:
            time.sleep(0.02)
        os.killpg(processor.pid, signal.SIGKILL)
        processor.communicate()
        # What the next processor's maintenance does once the job's started entry has expired.
        queue.started_job_registry.cleanup(timestamp=time.time() + 1000)
        assert watch.wait(timeout=EVENTS_TIMEOUT_SECONDS)

    assert events == [JobEvent(job.id, FAILED, error=ABANDONED_MESSAGE)]
    assert job.get_status() == JobStatus.FAILED


# What the README tells a learner to pass to a plain `rq worker`: the jobs are JSON.
SERIALIZER_PATH = "rq.serializers.JSONSerializer"


def rq_command(*args: str) -> subprocess.CompletedProcess[str]:
    """RQ's own command line, run from the project root as a learner would."""
    rq = Path(sys.executable).parent / "rq"
    return subprocess.run([str(rq), *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_plain_rq_worker_runs_the_course_jobs_and_rq_info_lists_them(redis_url, rq_redis):
    queue = course_queue("push_notification_code_2", rq_redis)
    events: list[JobEvent] = []

    with course_events.JobWatch(queue, on_event=events.append) as watch:
        job_ids = watch.enqueue_many("7_job_processor.send_notification_job", expected.TASK7_JOBS)
        info = rq_command("info", "--url", redis_url)
        worker = rq_command(
            "worker", "--burst", "--serializer", SERIALIZER_PATH, "--url", redis_url, queue.name
        )
        assert watch.wait(timeout=EVENTS_TIMEOUT_SECONDS)

    assert "push_notification_code_2" in info.stdout
    assert worker.returncode == 0
    assert f"{SERIALIZER.__module__}.{SERIALIZER.__qualname__}" == SERIALIZER_PATH
    for data, job_id in zip(expected.TASK7_JOBS, job_ids, strict=True):
        wanted = expected.task7_events(data, int(job_id))
        assert [event.line("Notification job") for event in events if event.job_id == job_id] == wanted


# No Redis ------------------------------------------------------------------------------------


# A processor without Redis waits for it instead: tests/test_faults.py.
@pytest.mark.parametrize("script", ["6_job_creator.py", "7_job_creator.py", "8_job_main.py"])
def test_without_redis_it_says_so_and_exits_1(script, dead_redis_url):
    result = run_script(script, dead_redis_url)

    assert lines(result.stdout)
    assert all(line.startswith(expected.NOT_CONNECTED_PREFIX) for line in lines(result.stdout))
    assert (result.stderr, result.returncode) == ("", 1)
