"""Benchmark: task 7's creator and processor on N notification jobs, against redis-benchmark.

Runs ``7_job_processor.py`` in the background as a learner does, then creates N jobs with
task 7's creator code (events included, its lines kept out of the terminal) and waits for
every job's last event. Prints creation and processing rates, and each divided by
``redis-benchmark -t get -c 32`` on the same Redis in the same run, beside the ratios of
the Node.js original (Kue); then the Redis commands and round trips per job, end to end
(creator and processor), from the server's own counters (INFO stats and commandstats), which
do not depend on the machine's speed. Usage, from the project root, with the project's Redis
running:

    python bench/jobs.py [--jobs 2000]
    python bench/jobs.py --stock-rq [--jobs 4000]
    python bench/jobs.py --versus-stock-rq [--rounds 3]   # the two in turns: their ratio
    python bench/jobs.py --profile-worker [--jobs 1000]   # one worker alone, under cProfile

REDIS_URL picks the server; redis-benchmark is taken from REDIS_BIN_DIR, else from the
directory ``./redis_setup.sh build`` prints last.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import io
import os
import pstats
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import redis
from rq import Queue, Worker
from rq.job import Job
from rq.serializers import JSONSerializer

ROOT = Path(__file__).resolve().parent.parent
# Run as `python bench/jobs.py`: the course's modules live at the project root.
sys.path.insert(0, str(ROOT))

from course import expected  # noqa: E402
from course.connection import client_from_env, redis_url, run  # noqa: E402
from course.events import JobEvent  # noqa: E402
from course.events.watch import JobWatch  # noqa: E402
from course.ids import next_job_ids  # noqa: E402
from course.jobs import course_queue  # noqa: E402
from course.settings import rq_logging_level  # noqa: E402
from course.worker import CourseWorker  # noqa: E402

from checker.lessons import RedisBuildError, redis_bin_dir  # noqa: E402

creator = importlib.import_module("7_job_creator")

# The Node.js original (a public solution of the course: kue 0.11.6, concurrency 2), measured on the
# same kind of 2-core machine: jobs/s over redis-benchmark GET ops/s in the same run.
NODE_CREATION_RATIO = 0.066
NODE_PROCESSING_RATIO = 0.0195
WORKERS = 2
STARTUP_TIMEOUT_SECONDS = 30
# The commands the report names, busiest first.
COMMANDS_SHOWN = 10
# The functions a profile shows, by their own time.
PROFILE_LINES = 25
# --stock-rq: plain `rq worker`s on a queue of their own, running a function that does nothing.
STOCK_QUEUE_NAME = "bench_stock_rq"
STOCK_JOB_FUNCTION = "time.time"
STOCK_RESULT_TTL_SECONDS = 600


def redis_benchmark_path() -> Path:
    """Where redis-benchmark is: beside the redis-server the tests use (``checker.lessons.redis_bin_dir``)."""
    try:
        return redis_bin_dir() / "redis-benchmark"
    except RedisBuildError as error:
        raise SystemExit(str(error)) from None


def redis_get_ops_per_second(requests: int) -> float:
    """``redis-benchmark -t get -c 32`` on REDIS_URL's server: GET requests per second."""
    url = urlparse(redis_url())
    result = subprocess.run(
        [
            str(redis_benchmark_path()),
            *("-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379)),
            *("-t", "get", "-c", "32", "-n", str(requests), "-q"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(re.search(r"GET: ([\d.]+) requests per second", result.stdout)[1])


@dataclass(frozen=True)
class RedisCounters:
    """The server's counters: commands run, reads from clients (one per round trip), calls per command."""

    commands: int
    reads: int
    calls: dict[str, int]

    @classmethod
    def read(cls, connection: redis.Redis) -> RedisCounters:
        stats = connection.info("stats")
        calls = {
            name.removeprefix("cmdstat_"): fields["calls"]
            for name, fields in connection.info("commandstats").items()
        }
        return cls(stats["total_commands_processed"], stats["total_reads_processed"], calls)

    def since(self, before: RedisCounters) -> RedisCounters:
        # The INFO calls that read `before` count too: two commands, two reads.
        calls = {name: count - before.calls.get(name, 0) for name, count in self.calls.items()}
        calls["info"] = calls.get("info", 0) - 2
        return RedisCounters(self.commands - before.commands - 2, self.reads - before.reads - 2, calls)


def notification_jobs(count: int) -> list[dict]:
    """Task 7's eleven jobs, repeated up to ``count`` (two in eleven fail: blacklisted numbers)."""
    return [expected.TASK7_JOBS[index % len(expected.TASK7_JOBS)] for index in range(count)]


def start_processor(queue: Queue) -> subprocess.Popen[bytes]:
    processor = subprocess.Popen(
        [sys.executable, "7_job_processor.py"],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_url()},
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while len(Worker.all(queue=queue)) < WORKERS:
        if time.monotonic() > deadline or processor.poll() is not None:
            processor.kill()
            raise SystemExit("7_job_processor.py did not start its workers")
        time.sleep(0.05)
    return processor


def stop_processor(processor: subprocess.Popen[bytes]) -> None:
    os.killpg(processor.pid, signal.SIGINT)
    processor.wait()


def create_and_process(queue: Queue, jobs: list[dict]) -> tuple[float, float, list[JobEvent], RedisCounters]:
    """Seconds to create the jobs, seconds from then until the last one ended, the events, Redis's counts.

    The jobs are created and followed as task 7's creator does it (its own functions), its
    lines written to a buffer instead of the terminal.
    """
    events: list[JobEvent] = []

    def on_event(event: JobEvent) -> None:
        events.append(event)
        creator.print_event(event)

    with contextlib.redirect_stdout(io.StringIO()):
        counters_before = RedisCounters.read(queue.connection)
        started = time.perf_counter()
        with JobWatch(queue, on_event=on_event) as job_events:
            job_ids = job_events.new_job_ids(len(jobs))
            for job in creator.enqueue_notification_jobs(queue, jobs, job_ids):
                print(f"Notification job created: {job.id}", flush=True)
            created = time.perf_counter()
            job_events.wait()
            ended = time.perf_counter()
        counters = RedisCounters.read(queue.connection).since(counters_before)
    return created - started, ended - created, events, counters


def expected_event_count(jobs: list[dict]) -> int:
    return sum(len(expected.task7_events(job, 0)) for job in jobs)


def report_counters(count: int, counters: RedisCounters) -> None:
    """Commands and round trips per job, and the commands that make most of them."""
    print(
        f"Redis, end to end: {counters.commands / count:.1f} commands per job,"
        f" {counters.reads / count:.1f} round trips per job"
    )
    busiest = sorted(counters.calls.items(), key=lambda item: -item[1])[:COMMANDS_SHOWN]
    print("  per job: " + ", ".join(f"{name} {calls / count:.1f}" for name, calls in busiest if calls > 0))


def report(count: int, creation_rate: float, processing_rate: float, get_ops: float) -> None:
    print(f"{count} jobs on {creator.QUEUE_NAME}, {WORKERS} workers")
    print(f"redis-benchmark -t get -c 32: {get_ops:,.0f} ops/s (mean of a run before and one after)")
    print(
        f"creation:   {creation_rate:8,.0f} jobs/s   ratio {creation_rate / get_ops:.4f}"
        f"   (Node/Kue {NODE_CREATION_RATIO})"
    )
    print(
        f"processing: {processing_rate:8,.0f} jobs/s   ratio {processing_rate / get_ops:.4f}"
        f"   (Node/Kue {NODE_PROCESSING_RATIO})"
    )


def profile_one_worker(queue: Queue, jobs: list[dict]) -> None:
    """One ``CourseWorker`` in burst mode on ``jobs`` (enqueued first), under cProfile: its top functions."""
    with JobWatch(queue, on_event=print) as watch:
        watch.enqueue_many(creator.JOB_FUNCTION, jobs)
    course_worker = CourseWorker([queue], job_functions={creator.JOB_FUNCTION})
    profile = cProfile.Profile()
    counters_before = RedisCounters.read(queue.connection)
    with contextlib.redirect_stdout(io.StringIO()):
        profile.runcall(course_worker.work, burst=True, logging_level=rq_logging_level(False))
    counters = RedisCounters.read(queue.connection).since(counters_before)
    print(f"one worker, {len(jobs)} jobs enqueued first")
    report_counters(len(jobs), counters)
    pstats.Stats(profile).sort_stats("tottime").print_stats(PROFILE_LINES)


def working_seconds(connection: redis.Redis, ended: list[Job]) -> float:
    """From the first job's start to the last one's end, as RQ recorded them; the jobs are then deleted."""
    seconds = (max(job.ended_at for job in ended) - min(job.started_at for job in ended)).total_seconds()
    with connection.pipeline(transaction=False) as pipeline:
        for job in ended:
            job.delete(pipeline=pipeline)
        pipeline.execute()
    return seconds


def stock_rq_rate(connection: redis.Redis, count: int) -> tuple[float, RedisCounters]:
    """RQ's own floor: ``WORKERS`` plain ``rq worker``s (SimpleWorker, JSON) on jobs that do nothing.

    No allow-list, no events, no callbacks: what RQ's job handling costs by itself. Timed from
    the first job's start to the last one's end, as RQ recorded them, so the workers' start-up
    is left out. Returns jobs per second and Redis's counters; the jobs are deleted afterwards.
    """
    queue = Queue(STOCK_QUEUE_NAME, connection=connection, serializer=JSONSerializer)
    if queue.count or Worker.all(queue=queue):
        raise SystemExit(f"{queue.name} must be idle: empty it and stop its workers first")
    job_ids = queue.enqueue_many(
        [Queue.prepare_data(STOCK_JOB_FUNCTION, result_ttl=STOCK_RESULT_TTL_SECONDS) for _ in range(count)]
    )
    job_ids = [job.id for job in job_ids]
    counters_before = RedisCounters.read(connection)
    command = [
        *(str(Path(sys.executable).with_name("rq")), "worker", "--burst", "--quiet"),
        *("--worker-class", "rq.worker.SimpleWorker", "--serializer", "rq.serializers.JSONSerializer"),
        *("--url", redis_url(), queue.name),
    ]
    workers = [subprocess.Popen(command, stdout=subprocess.DEVNULL) for _ in range(WORKERS)]
    if any(worker.wait() != 0 for worker in workers):
        raise SystemExit("an rq worker failed")
    counters = RedisCounters.read(connection).since(counters_before)
    ended = Job.fetch_many(job_ids, connection=connection, serializer=JSONSerializer)
    if any(job is None or job.get_status() != "finished" for job in ended):
        raise SystemExit("not every job finished")
    return count / working_seconds(connection, ended), counters


def stock_rq_floor(connection: redis.Redis, count: int, get_requests: int) -> None:
    """``stock_rq_rate``, with its ratio to redis-benchmark GET in the same run."""
    get_ops_before = redis_get_ops_per_second(get_requests)
    rate, counters = stock_rq_rate(connection, count)
    get_ops = (get_ops_before + redis_get_ops_per_second(get_requests)) / 2
    print(f"{count} jobs that do nothing ({STOCK_JOB_FUNCTION}), {WORKERS} plain rq workers (SimpleWorker)")
    print(f"redis-benchmark -t get -c 32: {get_ops:,.0f} ops/s (mean of a run before and one after)")
    print(
        f"processing: {rate:8,.0f} jobs/s   ratio {rate / get_ops:.4f}   (Node/Kue {NODE_PROCESSING_RATIO})"
    )
    report_counters(count, counters)


def course_processing_rate(queue: Queue, jobs: list[dict]) -> tuple[float, float, RedisCounters]:
    """Task 7's processor on ``jobs``, created and followed as task 7's creator does it.

    Returns the creation and processing rates (jobs per second) and Redis's counters.
    """
    processor = start_processor(queue)
    try:
        creation_seconds, processing_seconds, events, counters = create_and_process(queue, jobs)
    finally:
        stop_processor(processor)
    if len(events) != expected_event_count(jobs):
        raise SystemExit(f"expected {expected_event_count(jobs)} events, got {len(events)}")
    return len(jobs) / creation_seconds, len(jobs) / processing_seconds, counters


def ended_count(queue: Queue) -> int:
    return queue.finished_job_registry.count + queue.failed_job_registry.count


def processor_rate(queue: Queue, jobs: list[dict]) -> float:
    """Task 7's processor on ``jobs`` enqueued first, timed as ``stock_rq_rate`` times plain RQ.

    The jobs are task 7's creator's (Kue-style ids, the event callbacks) and report their
    progress as they run; nobody listens, as nobody listens to plain RQ's. Returns jobs per
    second from the first job's start to the last one's end; the jobs are deleted afterwards.
    """
    ended_before = ended_count(queue)
    job_ids = next_job_ids(queue.connection, len(jobs))
    creator.enqueue_notification_jobs(queue, jobs, job_ids)
    processor = start_processor(queue)
    try:
        # Two ZCARDs every 0.1 s: next to nothing beside the workers' commands.
        while ended_count(queue) < ended_before + len(jobs):
            time.sleep(0.1)
    finally:
        stop_processor(processor)
    ended = Job.fetch_many(job_ids, connection=queue.connection, serializer=JSONSerializer)
    return len(jobs) / working_seconds(queue.connection, ended)


def versus_stock_rq(queue: Queue, jobs: list[dict], stock_jobs: int, rounds: int) -> None:
    """Task 7's processor against plain RQ workers, in turns on the same Redis, timed the same way.

    The two measure the same machine within seconds of each other, so a drift of the machine's
    speed between runs (redis-benchmark's own figure moves by half here) cancels out.
    """
    ratios = []
    for round_number in range(1, rounds + 1):
        stock_rate, _ = stock_rq_rate(queue.connection, stock_jobs)
        course_rate = processor_rate(queue, jobs)
        ratios.append(course_rate / stock_rate)
        print(
            f"round {round_number}: plain RQ {stock_rate:6,.0f} jobs/s, task 7's processor"
            f" {course_rate:6,.0f} jobs/s: {ratios[-1]:.2f}x"
        )
    print(f"task 7's processor / plain RQ, median of {rounds} rounds: {statistics.median(ratios):.2f}x")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, help="how many jobs (default 2000; 1000 with --profile-worker)")
    parser.add_argument(
        "--get-requests", type=int, default=200_000, help="redis-benchmark's GETs per run (default 200000)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--profile-worker", action="store_true", help="profile one worker alone instead (cProfile)"
    )
    mode.add_argument(
        "--versus-stock-rq",
        action="store_true",
        help="task 7's processor (2000 jobs) and plain rq workers (4000) in turns: the ratio of their rates",
    )
    mode.add_argument(
        "--stock-rq",
        action="store_true",
        help="RQ's own floor instead: plain rq workers on jobs that do nothing (default 4000 jobs)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --versus-stock-rq (default 3)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    connection = client_from_env(decode_responses=False)
    if args.stock_rq:
        stock_rq_floor(connection, args.jobs or 4000, args.get_requests)
        return
    queue = course_queue(creator.QUEUE_NAME, connection)
    if queue.count or Worker.all(queue=queue):
        raise SystemExit(f"{queue.name} must be idle: empty it and stop its processors first")
    if args.profile_worker:
        profile_one_worker(queue, notification_jobs(args.jobs or 1000))
        return
    jobs = notification_jobs(args.jobs or 2000)
    if args.versus_stock_rq:
        versus_stock_rq(queue, jobs, args.jobs or 4000, args.rounds)
        return

    # redis-benchmark before and after the jobs: the machine's speed drifts within a run.
    get_ops_before = redis_get_ops_per_second(args.get_requests)
    creation_rate, processing_rate, counters = course_processing_rate(queue, jobs)
    get_ops = (get_ops_before + redis_get_ops_per_second(args.get_requests)) / 2
    report(len(jobs), creation_rate, processing_rate, get_ops)
    report_counters(len(jobs), counters)


if __name__ == "__main__":
    run(main)
