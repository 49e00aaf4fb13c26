"""Text that came out of Redis, made safe: decoded whatever its bytes, printed without control characters.

What Redis holds was written by someone else (a job, a message, a key set by hand), so it
may hold bytes that are not UTF-8, or characters a terminal acts on (``\\x1b[2J`` clears it).
"""

from __future__ import annotations

import re

# C0 controls, DEL and C1 controls: a terminal acts on them (colours, cursor moves, titles).
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


def text_of(raw: bytes | str) -> str:
    """A value read from Redis as text, whatever its bytes (what is not UTF-8 shows as U+FFFD)."""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def printable(text: str) -> str:
    """``text`` safe to print: each control character shown as an escape (``\\x1b``), the rest kept."""
    return CONTROL_CHARACTERS.sub(lambda match: f"\\x{ord(match[0]):02x}", text)
