"""What a web server runs beside its requests: a job listener per web process, a processor per web process.

``100_seat.py`` queues jobs from its request handlers and prints their outcomes; ``/process``
starts a processor. Both belong to the web process that answered (course/web.py serves
from several), and neither may outlive it:

- ``ProcessJobListener``: this web process's ``JobListener``, started by its first use.
  Each web process needs its own: threads do not survive a fork.
- ``QueueProcessor``: an RQ worker (``CourseWorker``) on one queue, in a process of its own
  started from a fresh interpreter, kept until the web process stops, and stopping by
  itself if the web process is killed outright.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable, Iterable

from course.connection import client_from_env, run
from course.events import JobEvent, JobListener
from course.settings import rq_logging_level

import redis
from rq import Queue


class ProcessJobListener:
    """This web process's job listener, started by its first call: ``listener().enqueue(...)``.

    ``connect`` makes the listener's Redis client (with ``decode_responses=False``, as RQ
    needs), called once, when the listener starts. A request thread may find the listener
    missing at the same moment as another: one starts it.
    """

    def __init__(
        self, queue_name: str, on_event: Callable[[JobEvent], None], connect: Callable[[], redis.Redis]
    ) -> None:
        self.queue_name = queue_name
        self.on_event = on_event
        self.connect = connect
        self._lock = threading.Lock()
        self._listener: JobListener | None = None

    def __call__(self) -> JobListener:
        with self._lock:
            if self._listener is None:
                queue = Queue(self.queue_name, connection=self.connect())
                self._listener = JobListener(queue, on_event=self.on_event).start()
            return self._listener

    def stop(self) -> None:
        """Stop the listener if it was started; the next call starts a new one."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()


def process_queue(queue_name: str, job_functions: Iterable[str]) -> None:
    """The processor, in a process of its own: an RQ worker on the queue, until it is stopped.

    RQ's worker handles SIGINT and SIGTERM by finishing the job in hand, then stopping;
    it needs the main thread of a process for that, never a thread of the web server.
    """

    # Imported here, in the processor's own process: importing course.worker sets its signal handlers.
    from course.worker import CourseWorker

    def work() -> None:
        logging_level = rq_logging_level(verbose=False)
        connection = client_from_env(decode_responses=False)
        worker = CourseWorker([queue_name], connection=connection, job_functions=job_functions)
        worker.work(logging_level=logging_level)

    threading.Thread(target=stop_when_orphaned, daemon=True).start()
    run(work)


def stop_when_orphaned() -> None:
    """Stop this processor, as SIGTERM does, once its web process is gone.

    A web process stops its processor when it stops; one killed outright (SIGKILL) cannot,
    and the processor would otherwise run on, with nobody left to hear about its jobs.
    """
    multiprocessing.connection.wait([multiprocessing.parent_process().sentinel])
    os.kill(os.getpid(), signal.SIGTERM)


class QueueProcessor:
    """The processor of this web process: started by its first ``ensure_started``, kept until it stops.

    A second call here finds it running and starts nothing. Another web process, or another
    server, starts its own processor; the jobs' functions must make that safe (taking a seat
    is one step in Redis), and it keeps each processor's life tied to one web process, with
    no lock in Redis to expire or to leave behind when a server is killed.
    """

    # A fresh interpreter: a child forked from a process running threads (the web server's,
    # the job listener's) could inherit a lock held by one of them, and hang.
    CONTEXT = multiprocessing.get_context("spawn")
    NAME = "queue processor"

    def __init__(self, queue_name: str, job_functions: Iterable[str]) -> None:
        self.queue_name = queue_name
        self.job_functions = sorted(job_functions)
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None

    def ensure_started(self) -> None:
        """Start the processor unless it runs; one that ended early (a crash) is reaped here."""
        with self._lock:
            if self._process is not None and self._process.is_alive():
                return
            # Daemonic: when this web process exits, multiprocessing stops it (SIGTERM, so the
            # job in hand is finished) and reaps it. Nothing else waits for it: two waiters
            # would race to reap it, and one would not learn how it ended.
            self._process = self.CONTEXT.Process(
                target=process_queue,
                args=(self.queue_name, self.job_functions),
                name=self.NAME,
                daemon=True,
            )
            self._process.start()
