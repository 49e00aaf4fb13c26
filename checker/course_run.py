"""The course run of one folder: every task in order, each shown and given a verdict.

Used by ``make tour`` (this project's own folder, outside the sandbox, all 11 tasks required)
and, inside the sandbox, by ``make check`` (a solution's folder). Task 0 runs first, on a
server of its own; then the run's own Redis starts and tasks 1 to 10 run on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from checker import apis, redis_setup_task, tasks
from checker.report import ERROR, MISSING, Outcome, TaskResult, print_outcome
from checker.run import Lessons, RedisDidNotStart, RunRedis


@dataclass(frozen=True)
class Task:
    number: int
    title: str
    files: tuple[str, ...]
    run: Callable[[str, Lessons], Outcome]


TASKS = [
    Task(0, "A Redis server", ("redis_setup.sh",), redis_setup_task.task_redis_server),
    Task(1, "Connect to Redis", ("0_redis_client.py",), tasks.task_redis_client),
    Task(2, "SET and GET", ("1_redis_op.py",), tasks.task_redis_op),
    Task(3, "SET and GET with async/await", ("2_redis_op_async.py",), tasks.task_redis_op_async),
    Task(4, "A hash, field by field", ("4_redis_advanced_op.py",), tasks.task_redis_advanced_op),
    Task(5, "Publish and subscribe", ("5_subscriber.py", "5_publisher.py"), tasks.task_pubsub),
    Task(6, "A job and its processor", ("6_job_creator.py", "6_job_processor.py"), tasks.task_job_creator),
    Task(
        7, "Eleven jobs, two at a time", ("7_job_creator.py", "7_job_processor.py"), tasks.task_job_processor
    ),
    Task(8, "A function making jobs", ("8_job.py", "8_job_main.py"), tasks.task_job_function),
    Task(9, "The 'In stock?' API", ("9_stock.py",), apis.task_stock),
    Task(10, "'Can I have a seat?'", ("100_seat.py",), apis.task_seats),
]
COURSE_FILES = {file for task in TASKS for file in task.files}


def course_files() -> str:
    return ", ".join(file for task in TASKS for file in task.files)


def run_task(task: Task, url: str, lessons: Lessons, require_all: bool) -> TaskResult:
    """Run one task and print what it showed and its verdict."""
    print(f"\n== Task {task.number}: {task.title} ({', '.join(task.files)})", flush=True)
    missing = [name for name in task.files if not (lessons.folder / name).exists()]
    if missing and (len(missing) < len(task.files) or require_all):
        print(f"  ✗ Task {task.number}: missing {', '.join(missing)}")
        return TaskResult(task.number, ERROR if require_all else MISSING, f"missing {', '.join(missing)}")
    if missing:
        print(f"  - Task {task.number}: missing {', '.join(missing)}")
        return TaskResult(task.number, MISSING, f"missing {', '.join(missing)}")
    try:
        outcome = task.run(url, lessons)
    finally:
        lessons.clean_up()
    print_outcome(task.number, outcome)
    return TaskResult(task.number, outcome.verdict, outcome.reason)


def run_course(lessons: Lessons, redis_server: RunRedis, require_all: bool) -> list[TaskResult]:
    """Task 0, then the run's Redis and tasks 1 to 10 on it; every task's result."""
    results = [run_task(TASKS[0], "", lessons, require_all)]
    try:
        redis_server.start()
    except RedisDidNotStart as error:
        print(f"\nCould not start the run's own Redis:\n{error.args[0].strip()}")
        reason = "the check's own Redis did not start"
        return results + [TaskResult(task.number, ERROR, reason) for task in TASKS[1:]]
    try:
        results += [run_task(task, redis_server.url, lessons, require_all) for task in TASKS[1:]]
    finally:
        redis_server.stop()
    return results


def summary(folder: Path | str, results: list[TaskResult]) -> None:
    absent = [result.task for result in results if result.verdict == MISSING]
    if absent:
        print(f"\nNot in {folder}: task{'s' if len(absent) > 1 else ''} {', '.join(map(str, absent))}")
    matched = sum(result.verdict == "match" for result in results)
    print(f"\n{matched}/{len(TASKS)} tasks match the course", flush=True)
