"""The README's scale-out, run on one machine: two processors and two API processes on one Redis.

Nothing a process keeps for itself decides an outcome: RQ hands each job to one worker,
the job ids come from one counter, and stock is taken by one Lua script, all in Redis.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

from course import expected

import pytest

from checker.lessons import lines, run_script
from tests.support import running, stopped_output

pytestmark = pytest.mark.long

UNITS = 10  # item 2's initial stock
RESERVATIONS = 60


def reserve_through_both(servers, item_id: int, count: int) -> Counter[str]:
    """``count`` simultaneous reservations, dealt round robin as a load balancer would."""
    barrier = Barrier(count)

    def reserve(number: int) -> str:
        barrier.wait()
        status, _, body = servers[number % len(servers)].request(f"/reserve_product/{item_id}")
        assert status == 200
        return body

    with ThreadPoolExecutor(max_workers=count) as pool:
        return Counter(pool.map(reserve, range(count)))


def test_two_processors_and_two_api_processes_share_one_redis(processors, redis_url):
    first_processor = processors("7_job_processor.py")
    second_processor = processors("7_job_processor.py")

    with running(redis_url) as first_api, running(redis_url) as second_api:
        creator = run_script("7_job_creator.py", redis_url, timeout=120)
        answers = reserve_through_both([first_api, second_api], 2, RESERVATIONS)

    sending = stopped_output(first_processor)[0] + stopped_output(second_processor)[0]
    assert expected.check_task7_creator(lines(creator.stdout)) == []
    # Each job ran once, on one processor or the other: together they print the 9 lines once.
    assert expected.check_task7_processor(sending) == []
    assert answers == {
        '{"status":"Reservation confirmed","itemId":2}': UNITS,
        '{"status":"Not enough stock available","itemId":2}': RESERVATIONS - UNITS,
    }
