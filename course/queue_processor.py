"""A web server's queue processor, a program of its own: python -m course.queue_processor QUEUE FUNCTION...

``course.web_jobs`` starts one beside a web process asked to ``/process``: an RQ worker
(``CourseWorker``) running the job functions named. It stops as SIGTERM stops it (the job in
hand finished) once its standard input ends, which is when its web process is gone, even
killed outright: that process holds the only other end of the pipe.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from course.connection import client_from_env, run
from course.settings import rq_logging_level
from course.worker import CourseWorker


def stop_when_input_ends() -> None:
    # os.read, not sys.stdin: a thread blocked in Python's reader holds its lock, and an exit then aborts.
    while os.read(sys.stdin.fileno(), 4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queue")
    parser.add_argument("functions", nargs="+", metavar="function", help="a job function's import path")
    arguments = parser.parse_args()
    threading.Thread(target=stop_when_input_ends, daemon=True).start()
    logging_level = rq_logging_level(verbose=False)
    connection = client_from_env(decode_responses=False)
    worker = CourseWorker([arguments.queue], connection=connection, job_functions=arguments.functions)
    worker.work(logging_level=logging_level)


if __name__ == "__main__":
    run(main)
