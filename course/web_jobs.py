"""A web server's jobs on one queue, in the web process that answered (granian serves from several).

``enqueue`` gives a job a Kue-style id; a thread, started then (threads do not survive a fork),
prints the course's line for each once RQ's state says it ended (``course.outcomes``).
``start_processor`` starts an RQ worker, a program of its own (``course.queue_processor``),
started again if it crashes, stopped with its web process.
"""

from __future__ import annotations

import atexit
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from course.connection import say
from course.ids import next_job_ids
from course.jobs import COMPLETED_CALLBACK, FAILED_CALLBACK, course_queue
from course.outcomes import OutcomePoll
from course.text import printable
from course.web import redis_client

import redis
from rq import Callback

ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.2
POLL_BATCH = 100  # jobs read per poll: 500 a second, more than processors end
# A processor that ended with an error is started again after this, doubled while it fails soon.
RESTART_SECONDS = 0.5
RESTART_MAX_SECONDS = 8.0
# A processor that ended as asked: by itself, or by a stop.
STOPPED = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


def outcome_line(subject: str, job_id: str, error: str | None) -> str:
    """The course's line for a job that ended: ``Seat reservation job 7 completed``, or ``failed: ...``."""
    ended = f"failed: {printable(error)}" if error else "completed"
    return f"{subject} {printable(job_id)} {ended}"


class WebJobs:
    """This web process's jobs and processor for one queue."""

    def __init__(self, queue_name: str, subject: str, job_functions: Iterable[str]) -> None:
        self.queue_name = queue_name
        self.subject = subject
        self.job_functions = sorted(job_functions)
        self.lock = threading.Lock()
        self.outcomes: OutcomePoll | None = None
        self.processor: subprocess.Popen | None = None
        atexit.register(self.stop_processor)

    def enqueue(self, function_name: str, data: dict) -> str:
        """Queue one job, its outcome printed when it ends (``JobIdsError``: a counter that cannot grow)."""
        outcomes = self.watched_outcomes()
        [job_id] = next_job_ids(outcomes.connection)
        course_queue(self.queue_name, outcomes.connection).enqueue(
            function_name,
            data,
            job_id=job_id,
            on_success=Callback(COMPLETED_CALLBACK),
            on_failure=Callback(FAILED_CALLBACK),
        )
        outcomes.add([job_id])
        return job_id

    def watched_outcomes(self) -> OutcomePoll:
        with self.lock:
            if self.outcomes is None:
                self.outcomes = OutcomePoll(redis_client(decode_responses=False), POLL_BATCH)
                printing = threading.Thread(target=self.print_outcomes, args=(self.outcomes,), daemon=True)
                printing.start()
            return self.outcomes

    def print_outcomes(self, outcomes: OutcomePoll) -> None:
        """Each job's line once it ended, in one write (the web processes share one output)."""
        while self.outcomes is outcomes:
            time.sleep(POLL_SECONDS)
            try:
                ended = outcomes.poll()
            except redis.RedisError:
                continue  # Redis away or refusing: the polls catch up once it answers
            except Exception as error:
                # A thread that died would leave this process deaf to its jobs for good.
                say(printable(f"Job outcomes: {type(error).__name__}: {error}"), sys.stderr)
                continue
            for job_id, error in ended:
                say(outcome_line(self.subject, job_id, error))

    def stop_printing(self) -> None:
        """``print_outcomes`` ends at its next poll; the next ``enqueue`` starts another."""
        with self.lock:
            self.outcomes = None

    def start_processor(self) -> None:
        """Start the processor unless it runs; a second call starts nothing."""
        with self.lock:
            if self.processor is None or self.processor.poll() is not None:
                self.processor = self.new_processor(RESTART_SECONDS)

    def new_processor(self, restart_delay: float) -> subprocess.Popen:
        # Its standard input is a pipe only this process holds: it ends with this process, however
        # that ends, and the processor then stops (course/queue_processor.py).
        processor = subprocess.Popen(
            [sys.executable, "-m", "course.queue_processor", self.queue_name, *self.job_functions],
            stdin=subprocess.PIPE,
            cwd=ROOT,
        )
        watch = threading.Thread(target=self.restart_if_crashed, args=(processor, restart_delay), daemon=True)
        watch.start()
        return processor

    def restart_if_crashed(self, processor: subprocess.Popen, delay: float) -> None:
        """Reap ``processor``; one that ended with an error (not ``STOPPED``) is started again, after
        twice the delay if it failed soon after it started, up to ``RESTART_MAX_SECONDS``."""
        started = time.monotonic()
        if processor.wait() in STOPPED:
            return
        if processor.returncode < 0:
            say(f"Queue processor killed by signal {-processor.returncode}: restarting it", sys.stderr)
        lived_long = time.monotonic() - started > RESTART_MAX_SECONDS
        delay = RESTART_SECONDS if lived_long else min(delay * 2, RESTART_MAX_SECONDS)
        time.sleep(delay)
        with self.lock:
            if self.processor is processor:
                self.processor = self.new_processor(delay)

    def stop_processor(self) -> None:
        """At this process's exit: the processor stops as SIGTERM asks (the job in hand finished)."""
        processor = self.processor
        if processor is not None and processor.poll() is None:
            processor.terminate()
            processor.wait()
