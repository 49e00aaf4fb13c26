"""What the lessons share: the Redis connection and its lines, Kue's ids and events, the processors' worker.

Every lesson imports this package first: a Python without the project's dependencies is told
how to get them, instead of a ``ModuleNotFoundError`` traceback, and a Ctrl-C during start-up
ends the program without a traceback (one that Python dropped in a callback is sent again).
"""

import importlib.machinery
import sys

REQUIRED_MODULES = ("redis", "rq", "flask", "granian")


def quiet_keyboard_interrupt(kind, error, traceback) -> None:
    """``sys.excepthook``: an unhandled Ctrl-C prints nothing (a learner stopped it, nothing broke)."""
    if not issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, traceback)


def ctrl_c_sent_again(unraisable) -> None:
    """``sys.unraisablehook``: a Ctrl-C that Python dropped (raised in a weakref callback or a
    ``__del__``: "Exception ignored") is sent again a moment later."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)
        return
    import os
    import signal
    import threading

    threading.Timer(CTRL_C_AGAIN_SECONDS, os.kill, (os.getpid(), signal.SIGINT)).start()


CTRL_C_AGAIN_SECONDS = 0.05
sys.excepthook = quiet_keyboard_interrupt
sys.unraisablehook = ctrl_c_sent_again

# PathFinder, not importlib.util.find_spec: importlib.util takes 6 ms to import, PathFinder well under one.
missing = [name for name in REQUIRED_MODULES if importlib.machinery.PathFinder.find_spec(name) is None]
if missing:
    sys.exit(
        f"{', '.join(missing)} not installed for {sys.executable}: run `make install` in the project, "
        "then `source .venv/bin/activate` (or run the script with .venv/bin/python)"
    )
