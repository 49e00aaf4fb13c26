"""What comes out of Redis is data: no job, payload or message written there runs code or crashes a program.

Whoever can write to Redis can enqueue a job, overwrite a job's hash or publish on the events
channel. The processors run only their own job functions, job data and meta are JSON (never
pickle), and the creators, the seat server's listener and the processors take a malformed or
forged job or event for what it is: a job failed with a line that says why, or a message
ignored. Each test runs the course's scripts on a real Redis, as a learner would, and forges
what an attacker would.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from course import expected, web_jobs
from course.events import COMPLETE, FAILED, JobEvent, events_channel
from course.events import watch as course_events
from course.jobs import ERROR_META_KEY, course_queue
from course.outcomes import OutcomePoll
from course.web_jobs import WebJobs
from course.worker import CourseWorker

import fakeredis
import pytest
import redis
from rq import Callback, Queue
from rq.job import Job, JobStatus
from rq.webhook import Webhook

from checker.lessons import lines, start_script, wait_for_line
from tests.support import printed_lines, stopped_output

pytestmark = pytest.mark.timeout(120)

# Bounds for a broken run, not expectations of speed.
EVENTS_TIMEOUT_SECONDS = 60
TASK6_QUEUE = "push_notification_code"
TASK7_QUEUE = "push_notification_code_2"
TASK6_FUNCTION = "6_job_processor.send_notification_job"
TASK7_FUNCTION = "7_job_processor.send_notification_job"
# Any character a terminal acts on: C0 controls, DEL, C1 controls.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class RunsShellCommand:
    """What an attacker pickles: unpickling it runs a shell command (here, one that creates a file)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def touching(path: Path) -> bytes:
    return pickle.dumps(RunsShellCommand(f"touch {path}"))


def start_creator(script: str, redis_url: str, *args: str):
    """A creator started with no processor serving it, once it has printed all its ``created`` lines."""
    count = 1 if script == "6_job_creator.py" else len(expected.TASK7_JOBS)
    creator = start_script(script, redis_url, *args)
    created = []
    while len(expected.created_ids(created)) < count:
        more = wait_for_line(creator, expected.CREATED)
        assert more, f"{script} did not print its created lines: {created}"
        created += more
    return creator, created, [str(job_id) for job_id in expected.created_ids(created)]


def finish(creator) -> tuple[list[str], str, int]:
    output, errors = creator.communicate(timeout=EVENTS_TIMEOUT_SECONDS)
    return lines(output), errors, creator.returncode


def assert_no_traceback(errors: str) -> None:
    assert "Traceback" not in errors, errors


# A. Processors run their own job functions only --------------------------------------------


def test_a_job_naming_another_function_fails_unrun_and_its_creator_hears_why(processors, rq_redis, tmp_path):
    processor = processors("7_job_processor.py")
    queue = course_queue(TASK7_QUEUE, rq_redis)
    marker = tmp_path / "shell-ran"
    heard: list[JobEvent] = []

    with course_events.JobWatch(queue, on_event=heard.append) as watch:
        [job_id] = watch.enqueue_many("os.system", [f"touch {marker}"])
        assert watch.wait(timeout=EVENTS_TIMEOUT_SECONDS)
    output, errors = stopped_output(processor)

    refusal = "Job function os.system is not one this processor runs"
    assert heard == [JobEvent(job_id, FAILED, error=refusal)]
    assert not marker.exists()
    assert queue.fetch_job(job_id).get_status() == JobStatus.FAILED
    assert output == []
    assert errors.splitlines() == [f"Job {job_id} failed without running: {refusal}"]
    assert processor.returncode == 0


@pytest.fixture
def burst_course_worker():
    """Run a queue's jobs here with a burst CourseWorker; put back the signal handlers it sets."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def run(queue, job_functions) -> None:
        CourseWorker([queue.name], connection=queue.connection, job_functions=job_functions).work(burst=True)

    yield run
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def test_a_job_naming_another_callback_fails_unrun(burst_course_worker):
    """RQ imports a job's callbacks by the names its hash holds: those are checked too."""
    queue = course_queue(TASK7_QUEUE, fakeredis.FakeRedis())
    job = queue.enqueue(TASK7_FUNCTION, expected.TASK7_JOBS[2], on_success=Callback("os.system"))

    burst_course_worker(queue, {TASK7_FUNCTION})

    job = queue.fetch_job(job.id)
    assert job.get_status() == JobStatus.FAILED
    assert job.meta[ERROR_META_KEY] == "Job callback os.system is not one this processor runs"


def test_every_job_goes_through_the_check_before_rq_runs_it(monkeypatch, burst_course_worker):
    """The check overrides RQ's BaseWorker.perform_job: if a new RQ stopped calling it, this fails."""
    queue = course_queue(TASK7_QUEUE, fakeredis.FakeRedis())
    checked: list[str] = []
    original = CourseWorker.refusal

    def counting_refusal(worker, job):
        checked.append(job.id)
        return original(worker, job)

    monkeypatch.setattr(CourseWorker, "refusal", counting_refusal)
    allowed = queue.enqueue(TASK7_FUNCTION, expected.TASK7_JOBS[2])
    refused = queue.enqueue("os.getcwd")

    burst_course_worker(queue, {TASK7_FUNCTION})

    assert checked == [allowed.id, refused.id]
    assert allowed.get_status() == JobStatus.FINISHED
    assert refused.get_status() == JobStatus.FAILED


# A. Pickle never: job data, meta and results are JSON ------------------------------------


def test_pickled_data_and_meta_run_nothing_in_the_processor_and_the_job_fails(
    processors, redis_url, rq_redis, tmp_path
):
    creator, created, [job_id] = start_creator("6_job_creator.py", redis_url)
    from_data, from_meta = tmp_path / "from-data", tmp_path / "from-meta"
    rq_redis.hset(Job.key_for(job_id), mapping={"data": touching(from_data), "meta": touching(from_meta)})

    processor = processors("6_job_processor.py")
    output, errors, status = finish(creator)
    processor_lines, processor_errors = stopped_output(processor)

    assert (from_data.exists(), from_meta.exists()) == (False, False)
    assert created + output == [f"Notification job created: {job_id}", "Notification job failed"]
    assert (errors, status) == ("", 0)
    assert processor_lines == []
    assert processor_errors.splitlines() == [
        f"Job {job_id} failed without running: Job data could not be read"
    ]
    assert processor.returncode == 0


def test_pickled_meta_runs_nothing_in_a_waiting_creator(redis_url, rq_redis, tmp_path):
    """A creator reads a failed job's meta for its error (when the failure's event was lost)."""
    creator, created, [job_id] = start_creator("6_job_creator.py", redis_url)
    from_meta = tmp_path / "from-meta"
    rq_redis.lrem(f"rq:queue:{TASK6_QUEUE}", 1, job_id)
    rq_redis.hset(Job.key_for(job_id), mapping={"status": "failed", "meta": touching(from_meta)})

    output, errors, status = finish(creator)

    assert not from_meta.exists()
    assert created + output == [f"Notification job created: {job_id}", "Notification job failed"]
    assert (errors, status) == ("", 0)


# B. Forged or malformed events -------------------------------------------------------------

MALFORMED = {
    "not-json": "hello",
    "not-an-object": "[1,2]",
    "no-id": '{"event":"complete"}',
    "id-a-list": '{"id":["1"],"event":"complete"}',
    "percent-not-a-number": '{"id":"1","event":"progress","percent":"50"}',
    "deep": "[" * 100_000,
}


@pytest.mark.parametrize("message", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_event_is_ignored_by_a_waiting_creator(message, redis_url, rq_redis, run_worker_here):
    creator, created, _ = start_creator("6_job_creator.py", redis_url, "--verbose")

    assert rq_redis.publish(events_channel(TASK6_QUEUE), message) == 1
    run_worker_here(course_queue(TASK6_QUEUE, rq_redis))
    output, errors, status = finish(creator)

    assert expected.check_task6_creator(created + output) == []
    assert status == 0
    [ignored] = errors.splitlines()
    assert ignored.startswith("Ignored a message that is not a job event: ")


def test_without_verbose_an_ignored_event_prints_nothing(redis_url, rq_redis, run_worker_here):
    creator, created, _ = start_creator("6_job_creator.py", redis_url)

    rq_redis.publish(events_channel(TASK6_QUEUE), "hello")
    run_worker_here(course_queue(TASK6_QUEUE, rq_redis))
    output, errors, status = finish(creator)

    assert expected.check_task6_creator(created + output) == []
    assert (errors, status) == ("", 0)


@pytest.mark.parametrize("kind", [COMPLETE, FAILED])
def test_a_forged_ending_of_a_queued_job_is_not_believed(kind, redis_url, rq_redis, run_worker_here):
    creator, created, job_ids = start_creator("7_job_creator.py", redis_url)

    forged = JobEvent(job_ids[2], kind, error="forged" if kind == FAILED else None)
    assert rq_redis.publish(events_channel(TASK7_QUEUE), forged.to_json()) == 1
    # Two polls of RQ's state: the job is still queued, the creator still waits.
    time.sleep(2.5 * course_events.POLL_INTERVAL_SECONDS)
    assert creator.poll() is None
    run_worker_here(course_queue(TASK7_QUEUE, rq_redis))
    output, errors, status = finish(creator)

    assert expected.check_task7_creator(created + output) == []
    assert (errors, status) == ("", 0)


def test_error_texts_reach_the_terminal_without_control_characters(redis_url, rq_redis, run_worker_here):
    creator, created, job_ids = start_creator("7_job_creator.py", redis_url)
    first = job_ids[0]
    hostile = "\x1b]0;owned\x07\x1b[2J red \x9b31m text\x7f, café ✓"
    # The first job "failed" with that message, as a failed job's meta records it; its event lost.
    rq_redis.lrem(f"rq:queue:{TASK7_QUEUE}", 1, first)
    meta = json.dumps({ERROR_META_KEY: hostile})
    rq_redis.hset(Job.key_for(first), mapping={"status": "failed", "meta": meta})
    run_worker_here(course_queue(TASK7_QUEUE, rq_redis))
    output, errors, status = finish(creator)

    assert all(not CONTROL.search(line) for line in output), output
    shown = r"\x1b]0;owned\x07\x1b[2J red \x9b31m text\x7f, café ✓"
    assert f"Notification job {first} failed: {shown}" in output
    assert (errors, status) == ("", 0)


def test_an_unknown_job_status_is_reported_failed_by_a_waiting_creator(redis_url, rq_redis):
    creator, created, job_ids = start_creator("7_job_creator.py", redis_url)

    for job_id in job_ids:
        rq_redis.hset(Job.key_for(job_id), "status", "bogus")
    output, errors, status = finish(creator)

    assert sorted(output) == sorted(
        f"Notification job {job_id} failed: Job status bogus" for job_id in job_ids
    )
    assert (errors, status) == ("", 0)


def test_a_processor_fails_a_job_of_unknown_status_and_goes_on(processors, redis_url, rq_redis):
    creator, created, [job_id] = start_creator("6_job_creator.py", redis_url)
    rq_redis.hset(Job.key_for(job_id), "status", "bogus")

    processor = processors("6_job_processor.py")
    output, errors, status = finish(creator)
    # Still serving: the next creator's job runs.
    second, second_created, _ = start_creator("6_job_creator.py", redis_url)
    second_output, second_errors, second_status = finish(second)
    processor_lines, processor_errors = stopped_output(processor)

    assert created + output == [f"Notification job created: {job_id}", "Notification job failed"]
    assert (errors, status) == ("", 0)
    assert expected.check_task6_creator(second_created + second_output) == []
    assert (second_errors, second_status) == ("", 0)
    assert processor_lines == expected.TASK6_PROCESSOR
    assert processor_errors.splitlines() == [f"Job {job_id} failed without running: Job status bogus"]
    assert processor.returncode == 0


FORGED_META = {
    "not-json": (b"hello", "Job failed"),
    "not-an-object": (b"[1,2]", "Job failed"),
    "error-a-number": (json.dumps({ERROR_META_KEY: 7}).encode(), "Job failed"),
    "deep": (b"[" * 100_000, "Job failed"),
    "control-characters": (json.dumps({ERROR_META_KEY: "\x1b[2Jwiped"}).encode(), "\\x1b[2Jwiped"),
}


@pytest.fixture
def web_jobs_on(monkeypatch) -> Iterator[Callable[[fakeredis.FakeRedis], WebJobs]]:
    """A seat server's ``WebJobs`` on a fake Redis; its printing thread stopped after the test."""
    made: list[WebJobs] = []

    def make(connection: fakeredis.FakeRedis) -> WebJobs:
        monkeypatch.setattr(web_jobs, "redis_client", lambda **options: connection)
        made.append(WebJobs("reserve_seat", "Seat reservation job", {"100_seat.reserve_seat_job"}))
        return made[-1]

    yield make
    for jobs in made:
        jobs.stop_printing()


@pytest.mark.parametrize("meta, error", FORGED_META.values(), ids=FORGED_META.keys())
def test_a_servers_failed_job_whose_meta_is_forged_is_reported_safely(meta, error, web_jobs_on, capsys):
    """A server's outcome lines come from the job's hash: anyone's input, parsed and never trusted."""
    connection = fakeredis.FakeRedis()
    jobs = web_jobs_on(connection)
    job_id = jobs.enqueue("100_seat.reserve_seat_job", {})

    connection.hset(Job.key_for(job_id), mapping={"status": JobStatus.FAILED.value, "meta": meta})

    assert printed_lines(capsys, 1) == [f"Seat reservation job {job_id} failed: {error}"]


def test_a_servers_outcome_thread_outlives_errors_and_keeps_polling(web_jobs_on, monkeypatch, capsys):
    jobs = web_jobs_on(fakeredis.FakeRedis())
    calls = []

    def failing_poll(self: OutcomePoll) -> list:
        calls.append(len(calls))
        raise redis.ResponseError("OOM command not allowed") if len(calls) % 2 else KeyError("unforeseen")

    monkeypatch.setattr(OutcomePoll, "poll", failing_poll)
    monkeypatch.setattr(web_jobs, "POLL_SECONDS", 0.01)
    jobs.enqueue("100_seat.reserve_seat_job", {})
    deadline = time.monotonic() + EVENTS_TIMEOUT_SECONDS
    while len(calls) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    jobs.stop_printing()

    assert len(calls) >= 4
    # Redis refusing is said by the routes; anything else once per poll, on stderr, in one line.
    assert "Job outcomes: KeyError: 'unforeseen'" in capsys.readouterr().err.splitlines()


# Anything else in a queue or a job hash ------------------------------------------------------


def test_a_worker_drops_what_is_not_a_job_and_fails_what_it_cannot_read(
    burst_course_worker, rq_redis, capsys
):
    """On a real Redis: RQ takes a job with LMOVE onto its intermediate list there (fakeredis: LPOP)."""
    connection = rq_redis
    queue = course_queue(TASK7_QUEUE, connection)
    connection.rpush(queue.key, b"\xff not an id")
    no_data = queue.enqueue(TASK7_FUNCTION, expected.TASK7_JOBS[2])
    connection.hdel(no_data.key, "data")
    good = queue.enqueue(TASK7_FUNCTION, expected.TASK7_JOBS[2])

    # RQ's loop ends on the entry it cannot decode (a processor starts it again); the next
    # start's maintenance drops it from RQ's intermediate list.
    burst_course_worker(queue, {TASK7_FUNCTION})
    burst_course_worker(queue, {TASK7_FUNCTION})

    assert good.get_status() == JobStatus.FINISHED
    assert no_data.get_status() == JobStatus.FAILED
    assert queue.intermediate_queue.get_job_ids() == []
    assert queue.job_ids == []
    assert sorted(capsys.readouterr().err.splitlines()) == [
        "Dropped a queue entry that is not a job id: '\ufffd not an id'",
        f"Job {no_data.id} failed without running: Job could not be read: it holds no data",
    ]


def test_a_status_that_is_not_text_is_reported_not_a_crash():
    connection = fakeredis.FakeRedis()
    queue = course_queue(TASK7_QUEUE, connection)
    heard: list[JobEvent] = []

    with course_events.JobWatch(queue, on_event=heard.append) as watch:
        job_id = watch.enqueue_many(TASK7_FUNCTION, [expected.TASK7_JOBS[2]])[0]
        connection.hset(Job.key_for(job_id), "status", b"\xff\x1b")
        watch.check_rq_state()
        watch.check_rq_state()

    assert [event.line("Notification job") for event in heard] == [
        f"Notification job {job_id} failed: Job status \ufffd\\x1b"
    ]


def test_a_worker_posts_to_no_webhook_a_job_hash_lists(burst_course_worker, monkeypatch):
    """RQ posts a job's outcome to the URLs in its hash: a worker must not send requests where Redis says."""
    queue = course_queue(TASK7_QUEUE, fakeredis.FakeRedis())
    job = queue.enqueue(TASK7_FUNCTION, expected.TASK7_JOBS[2])
    hook = {"url": "http://127.0.0.1:9/", "job_status": "finished"}
    queue.connection.hset(job.key, "webhooks", json.dumps([hook]))
    sent = []
    monkeypatch.setattr(Webhook, "send", lambda webhook, job, **details: sent.append(webhook.url))

    burst_course_worker(queue, {TASK7_FUNCTION})

    assert job.get_status() == JobStatus.FINISHED
    assert sent == []


def test_a_worker_reads_its_queues_jobs_as_json_even_from_queues_made_without(rq_redis, tmp_path):
    """WorkerPool makes its workers' queues with RQ's defaults: RQ's maintenance would unpickle their meta."""
    plain = Queue(TASK7_QUEUE, connection=rq_redis)
    CourseWorker([plain], job_functions={TASK7_FUNCTION})
    job = course_queue(TASK7_QUEUE, rq_redis).enqueue(TASK7_FUNCTION, expected.TASK7_JOBS[2])
    marker = tmp_path / "from-meta"
    rq_redis.hset(job.key, "meta", touching(marker))

    read = plain.fetch_job(job.id)

    assert not marker.exists()
    assert read.meta == {"unserialized": touching(marker)}
