"""Run a course processor that also runs ``time.sleep``: a job slow enough to stop or kill it mid-job.

``python tests/slow_processor.py 7_job_processor.py [--verbose]``, from the project root. The
course's processors run their own job function and nothing else; the tests that stop or kill
a processor mid-job need a job that lasts, so this adds one function to the allow-list, and
nothing else changes: signals, output and Redis handling are the processor's own.

With ``ABANDON_SOON=1`` in its environment, its workers also call a dead worker's job abandoned
sooner: ``SOON_GRACE_SECONDS`` after the job's timeout instead of RQ's 60 s, found by a
maintenance about every second. A test that kills a processor mid-job then waits for the
detection, not for RQ's timers.
"""

import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLOW_JOB_FUNCTION = "time.sleep"
SOON_GRACE_SECONDS = 2
SOON_MAINTENANCE_SECONDS = 1
# RQ's dequeue blocks for the worker TTL less 15 s (at least 1 s): maintenance comes between two.
SOON_WORKER_TTL_SECONDS = 16


def soon_abandoning(worker_class: type) -> type:
    """The processor's worker class, calling a dead worker's job abandoned soon."""

    class SoonAbandoningWorker(worker_class):
        def __init__(self, *args, **kwargs) -> None:
            kwargs.setdefault("maintenance_interval", SOON_MAINTENANCE_SECONDS)
            kwargs.setdefault("worker_ttl", SOON_WORKER_TTL_SECONDS)
            super().__init__(*args, **kwargs)

        def get_heartbeat_ttl(self, job) -> int:
            if job.timeout and job.timeout > 0:
                return job.timeout + SOON_GRACE_SECONDS
            return super().get_heartbeat_ttl(job)

    return SoonAbandoningWorker


def main() -> None:
    script = sys.argv.pop(1)
    # The processor's worker imports the job functions from the project root, as when run from there.
    sys.path.insert(0, str(ROOT))
    processor = importlib.import_module(Path(script).stem)
    worker_class = processor.NotificationWorker
    worker_class.job_functions = {*worker_class.job_functions, SLOW_JOB_FUNCTION}
    if os.environ.get("ABANDON_SOON") == "1":
        processor.NotificationWorker = soon_abandoning(worker_class)
    processor.run(processor.main)


if __name__ == "__main__":
    main()
