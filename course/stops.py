"""How a processor stops: quietly before RQ's handlers are set, and never losing a stop.

Importing this module (``course.worker`` does) makes Ctrl-C or SIGTERM end the program at
once, with the worker processes forked so far: there is no job in hand before RQ's worker
or pool sets its own handlers. A stop's exception raised where CPython prints and drops it
(a fork hook, a ``__del__``, ``Thread.start``) is sent again a moment later instead
(``stopping_here_breaks``, ``send_again_later``). docs/processors.md tells each case found.
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

# True from the first fork hook to the last: the course's hooks run after those of the
# modules it imports, and a stop's exception raised in any of them would be lost.
forking = False


def hold_stop_signals() -> None:
    """Before a fork: a signal reaching the child before it can handle them would be dropped."""
    global forking
    forking = True
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def release_stop_signals() -> None:
    """After a fork: release the held stops; one that came meanwhile is sent again a moment later.

    signal's ``pthread_sigmask`` runs the handlers of the signals it releases before it
    returns, so here they meet ``send_again_later``, not the handler of the program.
    """
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
    """Whether a stop's exception raised in ``frame`` would be dropped (a fork hook, a ``__del__``)
    or break something (``Thread.start``: the new thread finds itself already forgotten)."""
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
    """End now, with the worker processes forked so far (a forked one ends alone).

    ``os._exit``: an exception raised here could land where Python drops it (a weakref
    callback during an import), and nothing has been taken from a queue yet.
    """
    if os.getpid() == PROCESSOR_PID:
        for child in multiprocessing.active_children():
            child.terminate()
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
