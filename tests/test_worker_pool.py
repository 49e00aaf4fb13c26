"""Task 7's pool of workers stops even when its stop reaches a worker it has just forked.

A signal that reaches a process between its fork and the moment CPython resets its signal
state there is dropped. The pool stops each worker with a signal, so a worker forked an
instant before the stop could miss it and run on, its pool waiting for it forever (seen
once in about 120 stops during the workers' start-up, on a loaded machine). The pool's stop
is also a flag the workers share, which a worker reads once its own handlers are in place.
"""

from __future__ import annotations

import signal

from course import events as course_events
from course import expected, settings, worker

import pytest
from rq import Worker

TASK7_QUEUE = "push_notification_code_2"
TASK7_FUNCTION = "7_job_processor.send_notification_job"


@pytest.fixture
def signal_handlers_kept():
    """A worker's ``work()`` installs its signal handlers: put the test process's back."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.fixture
def pool_and_worker(rq_redis, signal_handlers_kept):
    """One task 7 job queued, a pool, and a worker as RQ's run_worker makes it in a forked process."""
    queue = course_events.course_queue(TASK7_QUEUE, rq_redis)
    [job_id] = course_events.next_job_ids(rq_redis)
    course_events.enqueue_jobs(queue, TASK7_FUNCTION, [expected.TASK7_JOBS[2]], [job_id])
    pool = worker.CoursePool(
        [TASK7_QUEUE], connection=rq_redis, num_workers=2, job_functions={TASK7_FUNCTION}
    )
    return queue, job_id, pool, pool.worker_class([TASK7_QUEUE], connection=rq_redis)


def work(course_worker: worker.CourseWorker) -> bool:
    return course_worker.work(burst=True, logging_level=settings.rq_logging_level(False))


def test_a_worker_of_a_stopping_pool_takes_no_job(pool_and_worker, rq_redis):
    queue, job_id, pool, forked = pool_and_worker

    # The worker's own signal was lost: only the pool's stop tells it.
    pool.request_stop(signal.SIGTERM, None)

    assert work(forked) is False
    assert queue.job_ids == [job_id]
    assert Worker.all(connection=rq_redis) == []


def test_a_worker_of_a_running_pool_works(pool_and_worker):
    queue, job_id, _, forked = pool_and_worker

    assert work(forked) is True
    assert queue.job_ids == []
    assert queue.fetch_job(job_id).get_status() == "finished"
