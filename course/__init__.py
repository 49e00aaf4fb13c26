"""What several lessons share: the Redis connection, job events, the course's expected output.

Every lesson imports this package first, so a Python without the project's dependencies is
told here how to get them, instead of a bare ``ModuleNotFoundError`` traceback.
"""

import importlib.machinery
import sys

REQUIRED_MODULES = ("redis", "rq", "flask", "granian")

# PathFinder, not importlib.util.find_spec: the processors import this package first of all, to
# be stoppable quietly as soon as possible (course.quiet_start), and importlib.util takes 6 ms
# to import, PathFinder well under one.
_missing = [name for name in REQUIRED_MODULES if importlib.machinery.PathFinder.find_spec(name) is None]
if _missing:
    sys.exit(
        f"{', '.join(_missing)} not installed for {sys.executable}: run `make install` in the project, "
        "then `source .venv/bin/activate` (or run the script with .venv/bin/python)"
    )
