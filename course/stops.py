"""How a processor stops: at once before RQ's handlers are set, and never losing a stop.

Importing this module (``course.worker`` does) makes Ctrl-C or SIGTERM end the program, with
the worker processes forked so far, until RQ's worker or pool sets its handlers: there is no
job in hand before. A stop that would be dropped (in a fork hook, a ``__del__``) is sent again
a moment later. Each case found: docs/internals.md.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from types import FrameType

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
RESEND_STOP_SECONDS = 0.05
CHILD_STOP_SECONDS = 10.0

# True from the first fork hook to the last (the course's run first and last): a stop there is lost.
forking = False


def hold_stop_signals() -> None:
    """Before a fork: a signal reaching the child before it can handle them would be dropped."""
    global forking
    forking = True
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def release_stop_signals() -> None:
    """After a fork: release the held stops; one that came meanwhile meets ``send_again_later``."""
    global forking
    if threading.current_thread() is threading.main_thread():
        handlers = {stop: signal.signal(stop, send_again_later) for stop in STOP_SIGNALS}
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        for stop, handler in handlers.items():
            signal.signal(stop, signal.SIG_DFL if handler is None else handler)
    else:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    forking = False


def send_again_later(signum: int, frame: FrameType | None) -> None:
    """A stop that came where it cannot be acted on: sent again a moment later."""
    threading.Timer(RESEND_STOP_SECONDS, os.kill, (os.getpid(), signum)).start()


def stopping_here_breaks(frame: FrameType | None) -> bool:
    """Whether a stop raised in ``frame`` would be dropped (a fork hook, a ``__del__``) or break."""
    if forking:
        return True
    while frame is not None:
        if frame.f_code in (release_stop_signals.__code__, threading.Thread.start.__code__):
            return True
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def stop_quietly(signum: int, frame: FrameType | None) -> None:
    """End, once the workers forked so far (RQ's pool starts them before its handlers) stopped, and
    unregistered if they could; ``os._exit``, which nothing can drop. A forked one ends alone."""
    if os.getpid() == PROCESSOR_PID:
        children = multiprocessing.active_children()
        for child in children:
            child.terminate()
        for child in children:
            child.join(CHILD_STOP_SECONDS)
    with contextlib.suppress(OSError, ValueError):  # a reader gone, or stdout closed
        sys.stdout.flush()
    os._exit(0)


PROCESSOR_PID = os.getpid()
if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, stop_quietly)
    signal.signal(signal.SIGTERM, stop_quietly)
    os.register_at_fork(
        before=hold_stop_signals, after_in_parent=release_stop_signals, after_in_child=release_stop_signals
    )
