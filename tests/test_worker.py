"""The course's worker is an ordinary RQ worker: RQ's own features work with the processors as started.

Each test runs on a real redis-server; the ones that say "the processor" start the lesson as
a learner does (``python 7_job_processor.py``). Also: RQ still calls the few methods the
course's worker overrides (if a newer RQ stopped calling one, its test here fails).
"""

from __future__ import annotations

import io
import signal
import threading
import time
from datetime import timedelta

from course import expected, settings
from course import retry as course_retry
from course.events import JobEvent
from course.events import watch as course_events
from course.jobs import course_queue
from course.retry import RedisPresence
from course.worker import ABANDONED_GRACE_SECONDS, CourseWorker

import pytest
import redis
from rq import Queue, Retry, SimpleWorker
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerPool

from tests.support import run_python, stopped_output

pytestmark = pytest.mark.timeout(120)

TASK7_QUEUE = "push_notification_code_2"
TASK7_FUNCTION = "7_job_processor.send_notification_job"
ALLOWED = expected.TASK7_JOBS[2]
BLACKLISTED = expected.TASK7_JOBS[0]
# Bounds for a broken run, not expectations of speed.
EVENTS_TIMEOUT_SECONDS = 60


class Task7Worker(CourseWorker):
    job_functions = {TASK7_FUNCTION}


@pytest.fixture(autouse=True)
def signal_handlers_kept():
    """A worker's ``work()`` installs its signal handlers: put the test process's back."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def quiet() -> int:
    return settings.rq_logging_level(False)


# RQ's features, with the course's processors as they are started ------------------------------


def test_a_job_enqueued_in_two_seconds_is_run_by_the_plain_processor_about_then(processors, rq_redis):
    processor = processors("7_job_processor.py")
    queue = Queue(TASK7_QUEUE, connection=rq_redis, serializer=JSONSerializer)

    enqueued_at = time.monotonic()
    job = queue.enqueue_in(timedelta(seconds=2), TASK7_FUNCTION, ALLOWED)
    assert job.get_status() == JobStatus.SCHEDULED
    while job.get_status() != JobStatus.FINISHED and time.monotonic() - enqueued_at < EVENTS_TIMEOUT_SECONDS:
        time.sleep(0.05)
    ran_after = time.monotonic() - enqueued_at
    output, errors = stopped_output(processor)

    assert job.get_status() == JobStatus.FINISHED
    # RQ keeps the time to the second, its scheduler looks every second; the upper bound: a broken run.
    assert 1.5 <= ran_after < 10, ran_after
    assert output == [expected.sending_line(ALLOWED["phoneNumber"], ALLOWED["message"])]
    assert (errors, processor.returncode) == ("", 0)


def test_a_retried_blacklisted_job_fails_three_times_then_for_good(processors, rq_redis):
    """Retry(max=2, interval=1): Kue's attempts and backoff. Each run reports 0%; the end is one failure."""
    processor = processors("7_job_processor.py")
    queue = course_queue(TASK7_QUEUE, rq_redis)
    heard: list[JobEvent] = []

    with course_events.JobWatch(queue, on_event=heard.append) as watch:
        [job_id] = watch.enqueue_many(TASK7_FUNCTION, [BLACKLISTED], retry=Retry(max=2, interval=1))
        assert watch.wait(timeout=EVENTS_TIMEOUT_SECONDS)
    output, errors = stopped_output(processor)

    error = expected.blacklisted_error(BLACKLISTED["phoneNumber"])
    assert [event.line("Notification job") for event in heard] == [
        *[f"Notification job {job_id} 0% complete"] * 3,
        f"Notification job {job_id} failed: {error}",
    ]
    job = queue.fetch_job(job_id)
    assert job.get_status() == JobStatus.FAILED
    assert job.retries_left == 0
    assert (output, errors) == ([], "")


def test_max_idle_time_ends_an_idle_worker(rq_redis):
    worker = Task7Worker([Queue(TASK7_QUEUE, connection=rq_redis)])
    started = time.monotonic()

    worked = worker.work(max_idle_time=2, logging_level=quiet())

    assert worked is False
    assert 2 <= time.monotonic() - started < 10
    assert worker.death_date is not None


def test_a_worker_built_from_queue_objects_takes_their_connection_and_works(rq_redis):
    queue = Queue(TASK7_QUEUE, connection=rq_redis, serializer=JSONSerializer)
    job = queue.enqueue(TASK7_FUNCTION, ALLOWED)

    Task7Worker([queue]).work(burst=True, logging_level=quiet())

    assert job.get_status() == JobStatus.FINISHED


def test_job_timeout_depends_on_cancel_and_max_jobs(rq_redis):
    queue = Queue(TASK7_QUEUE, connection=rq_redis, serializer=JSONSerializer)

    class SleepingWorker(CourseWorker):
        job_functions = {TASK7_FUNCTION, "time.sleep"}

    timed_out = queue.enqueue("time.sleep", 5, job_timeout=1)
    first = queue.enqueue(TASK7_FUNCTION, ALLOWED)
    after_first = queue.enqueue(TASK7_FUNCTION, ALLOWED, depends_on=first)
    canceled = queue.enqueue(TASK7_FUNCTION, ALLOWED)
    canceled.cancel()

    assert SleepingWorker([queue]).work(max_jobs=1, logging_level=quiet()) is True
    assert timed_out.get_status() == JobStatus.FAILED
    assert first.get_status() == JobStatus.QUEUED
    SleepingWorker([queue]).work(burst=True, logging_level=quiet())

    assert "JobTimeoutException" in timed_out.latest_result().exc_string
    assert (first.get_status(), after_first.get_status()) == (JobStatus.FINISHED, JobStatus.FINISHED)
    assert canceled.get_status() == JobStatus.CANCELED


def test_a_worker_pool_of_course_workers_runs_jobs_and_the_allow_list(rq_redis):
    queue = course_queue(TASK7_QUEUE, rq_redis)
    allowed = queue.enqueue(TASK7_FUNCTION, ALLOWED)
    refused = queue.enqueue("os.getcwd")
    pool = WorkerPool([TASK7_QUEUE], connection=rq_redis, num_workers=2, worker_class=Task7Worker)

    pool.start(burst=True, logging_level=quiet())

    assert allowed.get_status() == JobStatus.FINISHED
    assert refused.get_status() == JobStatus.FAILED
    assert (
        queue.fetch_job(refused.id).meta["error"] == "Job function os.getcwd is not one this processor runs"
    )


def test_verbose_shows_rqs_job_lines(processors, rq_redis):
    processor = processors("6_job_processor.py", "--verbose")
    queue = Queue("push_notification_code", connection=rq_redis, serializer=JSONSerializer)
    job = queue.enqueue("6_job_processor.send_notification_job", expected.TASK6_JOB)
    while job.get_status() != JobStatus.FINISHED:
        time.sleep(0.05)

    output, _ = stopped_output(processor)

    # RQ's own lines (on stdout, as `rq worker` prints them): the job taken, and its end.
    assert any(f"({job.id})" in line and "push_notification_code" in line for line in output), output
    assert any("Job OK" in line for line in output), output


# The overrides RQ must still call -----------------------------------------------------------


def test_a_job_taken_and_never_started_goes_back_to_its_queue_when_rq_runs_maintenance(rq_redis):
    """A worker stopped between RQ's LMOVE and the job's start left it in RQ's intermediate list.

    RQ alone fails such a job a minute after its maintenance first sees it ("stuck in
    intermediate queue"). The course's worker puts it back at the front of its queue; this
    runs RQ's own loop, so it fails if RQ stopped calling ``clean_registries``.
    """
    queue = course_queue(TASK7_QUEUE, rq_redis)
    stranded = queue.enqueue(TASK7_FUNCTION, ALLOWED)
    rq_redis.lmove(queue.key, queue.intermediate_queue_key)
    # As if RQ's maintenance had first seen it there longer ago than the grace, and a minute ago.
    seen = time.time() - max(ABANDONED_GRACE_SECONDS, 60) - 1
    rq_redis.set(queue.intermediate_queue.get_first_seen_key(stranded.id), seen)

    Task7Worker([queue]).work(burst=True, logging_level=quiet())

    assert stranded.get_status() == JobStatus.FINISHED
    assert queue.intermediate_queue.get_job_ids() == []
    assert queue.failed_job_registry.get_job_ids() == []


def test_rq_alone_would_fail_that_job_unrun(rq_redis):
    """What the override is for: the same job, a plain RQ SimpleWorker."""
    queue = course_queue(TASK7_QUEUE, rq_redis)
    stranded = queue.enqueue(TASK7_FUNCTION, ALLOWED)
    rq_redis.lmove(queue.key, queue.intermediate_queue_key)
    rq_redis.set(queue.intermediate_queue.get_first_seen_key(stranded.id), time.time() - 61)

    SimpleWorker([queue], serializer=JSONSerializer).work(burst=True, logging_level=quiet())

    assert stranded.get_status() == JobStatus.FAILED
    assert "stuck in intermediate queue" in stranded.latest_result().exc_string


def test_rq_calls_the_methods_the_course_worker_overrides(rq_redis):
    """``perform_job`` (the allow-list) and ``clean_registries`` (the put-back), from RQ's own loop."""
    called: set[str] = set()
    overrides = ("perform_job", "clean_registries")

    def recording(name: str):
        def method(self, *args, **kwargs):
            called.add(name)
            return getattr(Task7Worker, name)(self, *args, **kwargs)

        return method

    spy = type("SpyWorker", (Task7Worker,), {name: recording(name) for name in overrides})
    queue = course_queue(TASK7_QUEUE, rq_redis)
    queue.enqueue(TASK7_FUNCTION, ALLOWED)

    spy([queue]).work(burst=True, logging_level=quiet())

    assert called == set(overrides)


# A stop during a fork, in a process of its own: the child must end quietly, the stop not lost.
FORKED_CHILD = """
import os, signal, sys, threading, time  # threading first: its fork hook before the test's, as in a program
{before_import}
import course.worker
import course.stops

real_signal = signal.signal
parent = os.getpid()


def stopped_as_handlers_come_back(signum, handler):
    # In the child only: SIGTERM arrives just after its handler is back, inside the fork hook.
    previous = real_signal(signum, handler)
    if {after_restore} and os.getpid() != parent and signum == signal.SIGTERM:
        if handler is not course.stops.send_again_later:
            os.kill(os.getpid(), signal.SIGTERM)
    return previous


signal.signal = stopped_as_handlers_come_back
child = os.fork()
if child == 0:
    time.sleep(5)
    os._exit(3)
print(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
"""
STOPPED_WHILE_HELD = "os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGTERM))"
# As when another thread, which does not hold the signals, takes the stop during logging's hook.
STOPPED_IN_ANOTHER_HOOK = """
def let_in_and_stopped():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    os.kill(os.getpid(), signal.SIGTERM)
os.register_at_fork(after_in_child=let_in_and_stopped)
"""


@pytest.mark.parametrize(
    "before_import, after_restore",
    [(STOPPED_WHILE_HELD, False), (STOPPED_IN_ANOTHER_HOOK, False), ("", True)],
    ids=["while-held", "in-another-hook", "as-the-handler-comes-back"],
)
def test_a_stop_during_a_fork_ends_the_child_quietly(before_import, after_restore):
    """Run inside the fork hook, a handler's SystemExit was printed and ignored: the child ran on."""
    program = FORKED_CHILD.format(before_import=before_import, after_restore=after_restore)
    result = run_python(program)
    assert (result.stdout, result.stderr) == ("0\n", "")


# RQ raises its stop from the handler wherever an idle worker is: here, where that broke.
STOPPED_IDLE = """
import gc, os, signal, threading, time
import fakeredis
from course.worker import CourseWorker

worker = CourseWorker(["q"], connection=fakeredis.FakeRedis())
signal.signal(signal.SIGTERM, worker.request_stop)
{stop}
time.sleep(0.5)
print(f"stopping: {{worker.stopping}}")
"""
# Thread.start: the new thread, forgotten by the start that raised, printed a traceback.
AS_A_THREAD_STARTS = """
start_new_thread = threading._start_new_thread


def stopped_as_it_starts(*args):
    # The first thread only: the stop's own handling may start one.
    threading._start_new_thread = start_new_thread
    ident = start_new_thread(*args)
    os.kill(os.getpid(), signal.SIGTERM)
    return ident


threading._start_new_thread = stopped_as_it_starts
threading.Thread(target=time.sleep, args=(0.2,)).start()
"""
# An object's __del__ (redis-py's ConnectionPool's, say): Python printed the exception and dropped it.
IN_A_DEL = """
class Stopped:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(1000))


Stopped()
gc.collect()
"""


@pytest.mark.parametrize("stop", [AS_A_THREAD_STARTS, IN_A_DEL], ids=["as-a-thread-starts", "in-a-del"])
def test_a_stop_of_an_idle_worker_is_kept_for_its_next_wait(stop):
    program = STOPPED_IDLE.format(stop=stop)
    result = run_python(program)
    assert (result.stdout, result.stderr) == ("stopping: True\n", "")


FORKED_AFTER_A_FIRST_STOP = """
import os, signal, time
import fakeredis
from course.worker import CourseWorker

worker = CourseWorker(["q"], connection=fakeredis.FakeRedis())
signal.signal(signal.SIGTERM, worker.request_stop)
os.kill(os.getpid(), signal.SIGTERM)  # held for the next wait; RQ's cold-stop handler from now on
time.sleep(0.1)
child = os.fork()
if child == 0:
    # As RQ's scheduler: stopped by its worker before it sets its own handler.
    os.kill(os.getpid(), signal.SIGTERM)
    stopped = []
    time.sleep(0.2)
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.append(signum))
    time.sleep(1)
    os._exit(0 if stopped else 3)
print(f"stopping: {worker.stopping}, child: {os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])}")
"""


def test_a_process_forked_after_a_first_stop_gets_its_own_stop_once_it_can_act():
    """RQ's scheduler, forked then, ignored its worker's SIGTERM as a duplicate: the worker waited."""
    result = run_python(FORKED_AFTER_A_FIRST_STOP)
    assert (result.stdout, result.stderr) == ("stopping: True, child: 0\n", "")


def test_a_command_that_went_through_takes_no_lock_shared_with_the_other_processes():
    """A worker stopped while holding the lock waited for its scheduler, blocked on it after a command."""
    presence = RedisPresence()
    with presence.state.get_lock():
        other = threading.Thread(target=presence.back, args=(False,), daemon=True)
        other.start()
        other.join(timeout=5)
        assert not other.is_alive()


class WritesRecorded(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_each_line_about_redis_is_one_write_that_no_other_process_can_split(monkeypatch):
    """Unbuffered, print wrote a line and its newline apart: another worker's job line landed between."""
    stdout = WritesRecorded()
    monkeypatch.setattr("sys.stdout", stdout)
    presence = RedisPresence()

    presence.lost(redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."))
    presence.lost(redis.ConnectionError("Connection refused"))
    presence.back(failed_first=True)

    assert stdout.writes == [
        "Redis refuses writes: command not allowed when used memory > 'maxmemory'.\n",
        "Redis client not connected to the server: Connection refused\n",
        "Redis client connected to the server\n",
    ]


def test_a_redis_back_and_still_loading_its_data_is_not_said_lost_again(monkeypatch, capsys):
    """Back after a long outage, a command went through, the next met "LOADING" (CI: four lines)."""
    monkeypatch.setattr(course_retry, "RETRY_SECONDS", 0)
    presence = RedisPresence()

    presence.lost(redis.ConnectionError("Connection closed by server."))
    presence.back(failed_first=False)
    presence.lost(redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"))
    presence.back(failed_first=True)

    assert capsys.readouterr().out.splitlines() == [
        "Redis client not connected to the server: Connection closed by server.",
        "Redis client connected to the server",
    ]
