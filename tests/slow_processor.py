"""Run a course processor that also runs ``time.sleep``: a job slow enough to stop or kill it mid-job.

``python tests/slow_processor.py 7_job_processor.py [--verbose]``, from the project root. The
course's processors run their own job function and nothing else; the tests that stop or kill
a processor mid-job need a job that lasts, so this adds one function to the allow-list, and
nothing else changes: signals, output and Redis handling are the processor's own.
"""

# As the processors do: a stop during start-up ends the program quietly.
import course.quiet_start  # noqa: F401

# isort: split
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLOW_JOB_FUNCTION = "time.sleep"


def main() -> None:
    script = sys.argv.pop(1)
    # The processor's worker imports the job functions from the project root, as when run from there.
    sys.path.insert(0, str(ROOT))
    processor = importlib.import_module(Path(script).stem)
    processor.JOB_FUNCTIONS = {*processor.JOB_FUNCTIONS, SLOW_JOB_FUNCTION}
    processor.run(processor.main)


if __name__ == "__main__":
    main()
