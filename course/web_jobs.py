"""A web server's jobs on one queue: those it queues, with their outcomes printed, and its processor.

Both belong to the web process that answered (granian serves from several), and neither may
outlive it::

    jobs = WebJobs("reserve_seat", "Seat reservation job", {"100_seat.reserve_seat_job"})
    jobs.enqueue("100_seat.reserve_seat_job", {})   # a Kue-style id; its outcome printed later
    jobs.start_processor()                           # an RQ worker beside this web process

The listener starts at a web process's first ``enqueue`` (threads do not survive a fork). The
processor, a ``CourseWorker`` in a fresh interpreter, is started again if it crashes, and stops
by itself if its web process is killed outright.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable

from course.connection import client_from_env, run, say
from course.events import JobEvent
from course.events.watch import JobListener
from course.settings import rq_logging_level
from course.web import redis_client, write_line

from rq import Queue

# A processor that ended with an error is started again after this, doubled while it fails soon.
RESTART_SECONDS = 0.5
RESTART_MAX_SECONDS = 8.0
# A processor that ended as asked: by itself, by a stop before RQ's handlers, or reaped elsewhere.
STOPPED = frozenset({0, -signal.SIGTERM, -signal.SIGINT, None})


def process_queue(queue_name: str, job_functions: Iterable[str]) -> None:
    """The processor, in a process of its own (RQ's stop handling needs a main thread): an RQ worker."""
    one_write_per_line()
    # Imported here, in the processor's own process: importing course.worker sets its signal handlers.
    from course.worker import CourseWorker

    def work() -> None:
        logging_level = rq_logging_level(verbose=False)
        connection = client_from_env(decode_responses=False)
        worker = CourseWorker([queue_name], connection=connection, job_functions=job_functions)
        worker.work(logging_level=logging_level)

    threading.Thread(target=stop_when_orphaned, daemon=True).start()
    run(work)


def one_write_per_line() -> None:
    """Each line of stdout in one system call: unbuffered, ``print`` writes a line's text and its
    newline apart, and two processors' lines were glued (``...serverRedis client...``)."""
    sys.stdout.reconfigure(line_buffering=True, write_through=False)


def stop_when_orphaned() -> None:
    """Stop this processor, as SIGTERM does, once its web process is gone (killed outright, say)."""
    multiprocessing.connection.wait([multiprocessing.parent_process().sentinel])
    os.kill(os.getpid(), signal.SIGTERM)


class WebJobs:
    """This web process's listener and processor for one queue (see the module doc)."""

    # A fresh interpreter: a child forked from a process running threads could inherit a held lock.
    CONTEXT = multiprocessing.get_context("spawn")
    PROCESSOR_NAME = "queue processor"

    def __init__(self, queue_name: str, subject: str, job_functions: Iterable[str]) -> None:
        self.queue_name = queue_name
        self.subject = subject
        self.job_functions = sorted(job_functions)
        self.lock = threading.Lock()
        self.listener: JobListener | None = None
        self.processor: multiprocessing.process.BaseProcess | None = None

    def print_outcome(self, event: JobEvent) -> None:
        """Its line in one write: the web processes share one output, and no line may be cut."""
        say(event.line(self.subject))

    def enqueue(self, function_name: str, data: dict) -> str:
        """Queue one job with a Kue-style id (``JobIdsError`` for a counter that cannot grow); its
        outcome is printed when it ends."""
        with self.lock:
            if self.listener is None:
                connection = redis_client(decode_responses=False)
                self.listener = JobListener(Queue(self.queue_name, connection=connection), self.print_outcome)
                self.listener.start()
        return self.listener.enqueue(function_name, data)

    def stop_listener(self) -> None:
        """Stop the listener if it was started; the next ``enqueue`` starts a new one."""
        with self.lock:
            listener, self.listener = self.listener, None
        if listener is not None:
            listener.stop()

    def start_processor(self) -> None:
        """Start the processor unless it runs; a second call starts nothing."""
        with self.lock:
            if self.processor is None or not self.processor.is_alive():
                self.processor = self.new_processor(RESTART_SECONDS)

    def new_processor(self, restart_delay: float) -> multiprocessing.process.BaseProcess:
        # Daemonic: when this web process exits, multiprocessing stops it (SIGTERM: the job in
        # hand is finished) and reaps it.
        processor = self.CONTEXT.Process(
            target=process_queue,
            args=(self.queue_name, self.job_functions),
            name=self.PROCESSOR_NAME,
            daemon=True,
        )
        processor.start()
        watch = threading.Thread(target=self.restart_if_crashed, args=(processor, restart_delay), daemon=True)
        watch.start()
        return processor

    def restart_if_crashed(self, processor: multiprocessing.process.BaseProcess, delay: float) -> None:
        """Reap ``processor``; one that ended with an error (not ``STOPPED``) is started again, after
        twice the delay if it failed soon after it started, up to ``RESTART_MAX_SECONDS``."""
        started = time.monotonic()
        processor.join()
        if processor.exitcode in STOPPED:
            return
        if processor.exitcode < 0:
            write_line(f"Queue processor killed by signal {-processor.exitcode}: restarting it", sys.stderr)
        lived_long = time.monotonic() - started > RESTART_MAX_SECONDS
        delay = RESTART_SECONDS if lived_long else min(delay * 2, RESTART_MAX_SECONDS)
        time.sleep(delay)
        with self.lock:
            if self.processor is processor:
                self.processor = self.new_processor(delay)
