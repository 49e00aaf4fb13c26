"""Keys the project owns in Redis, read defensively: someone may have written them by hand.

A count the project keeps (``item.1``, ``available_seats``, the job id counter) is an integer
as INCR writes one; anything else is ``UnreadableStateError``, naming the key (``make reset``).
"""

from __future__ import annotations

import re

from course.text import text_of

# What an answer about state changed by hand in Redis says the learner can do.
RESET_HINT = "make reset restores the course's state"
NOT_A_NUMBER = "in Redis does not hold a number"
# A number as Redis's INCR and DECR write one, within Redis's 64-bit integers.
NUMBER = re.compile(r"-?[0-9]{1,19}")
COUNT_RANGE = range(-(2**63), 2**63)


class UnreadableStateError(Exception):
    """A key of the project's state holds what it cannot read: someone else wrote it (by hand, say)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} {NOT_A_NUMBER}")


def stored_number(key: str, value: str | bytes) -> int:
    """The integer a key of the project's state holds; ``UnreadableStateError`` for anything else."""
    text = text_of(value)
    if not NUMBER.fullmatch(text) or int(text) not in COUNT_RANGE:
        raise UnreadableStateError(key)
    return int(text)
