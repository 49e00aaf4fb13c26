"""Imported first by the processors: a stop during their start-up ends them quietly, with status 0.

Python turns Ctrl-C into a KeyboardInterrupt wherever the program is, and a processor spends
its first few tenths of a second importing RQ: a learner pressing Ctrl-C then got a traceback.
Until the processor installs its own handlers (``course.worker``), SIGINT and SIGTERM simply
end it: nothing has been taken from a queue yet. This module imports only the standard library,
so that it takes effect before anything slow is loaded.
"""

# signal's C half, which Python loaded at start-up: the module signal adds enums to it, and
# importing enum took 4 ms more before these handlers were in place.
import _signal


def exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


_signal.signal(_signal.SIGINT, exit_quietly)
_signal.signal(_signal.SIGTERM, exit_quietly)
