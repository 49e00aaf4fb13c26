"""Kue-style job ids: 1, 2, 3... where RQ names its jobs with UUIDs.

One counter per database (``JOB_IDS_KEY``), shared by every queue; INCRBY hands out a whole
block at once and never repeats, which matters: RQ silently overwrites a job whose id is reused.
"""

from __future__ import annotations

from course.keys import UnreadableStateError

import redis

JOB_IDS_KEY = "course:job-ids"


class JobIdsError(UnreadableStateError):
    """``JOB_IDS_KEY`` holds what INCRBY cannot count on from: not a number, another type, or 2**63 - 1."""

    def __init__(self) -> None:
        Exception.__init__(self, f"{JOB_IDS_KEY} in Redis does not hold a job id counter that can grow")


def next_job_ids(connection: redis.Redis, count: int = 1) -> list[str]:
    """Reserve ``count`` consecutive Kue-style ids, as RQ job ids (strings of digits)."""
    if count == 0:
        return []
    try:
        last = connection.incrby(JOB_IDS_KEY, count)
    except (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError):
        raise
    except redis.ResponseError:
        # Not an integer, a key of another type, or an increment past Redis's 64-bit range.
        raise JobIdsError() from None
    return [str(job_id) for job_id in range(last - count + 1, last + 1)]
