"""Kue-style job events for RQ, carried over Redis pub/sub.

RQ publishes no job events, so the jobs publish their own on a channel named after their queue:
progress from inside the job, completed and failed from RQ's on_success and on_failure callbacks
(which run in the worker, right after the job). A creator subscribes to that channel before it
enqueues anything (pub/sub keeps nothing for late listeners), then follows its own jobs' events.
"""

import json
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from redis.client import PubSub
from redis_connection import subscribe
from rq import Callback
from rq.job import Job

ENDINGS = ("completed", "failed")


def channel(queue_name: str) -> str:
    return f"{queue_name}:job_events"


def publish(connection: redis.Redis, job: Job, event: str, **details: Any) -> None:
    connection.publish(channel(job.origin), json.dumps({"id": job.id, "event": event, **details}))


def set_progress(job: Job, percent: int) -> None:
    """Kue's job.progress(percent, 100): kept in the job's meta, and announced."""
    job.meta["progress"] = percent
    job.save_meta()
    publish(job.connection, job, "progress", percent=percent)


def on_completed(job: Job, connection: redis.Redis, result: Any) -> None:
    publish(connection, job, "completed")


def on_failed(job: Job, connection: redis.Redis, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    publish(connection, job, "failed", error=str(exc_value))


# Pass to Queue.enqueue: queue.enqueue(function, data, **CALLBACKS)
CALLBACKS = {"on_success": Callback(on_completed), "on_failure": Callback(on_failed)}


def listen(connection: redis.Redis, queue_name: str) -> PubSub:
    """Subscribed to the queue's job events: call before enqueueing."""
    return subscribe(connection, channel(queue_name))


def follow(pubsub: PubSub, job_ids: Iterable[str]) -> Iterator[dict]:
    """The events of these jobs as they arrive, until each one has completed or failed."""
    running = set(job_ids)
    if not running:
        return
    for message in pubsub.listen():
        if message["type"] != "message":
            continue
        event = json.loads(message["data"])
        if event["id"] not in running:
            continue  # another creator's job
        yield event
        if event["event"] in ENDINGS:
            running.discard(event["id"])
            if not running:
                return


def print_notification_events(pubsub: PubSub, job_ids: Iterable[str]) -> None:
    """Tasks 7 and 8: each event of these jobs printed as it arrives, until all have ended."""
    for event in follow(pubsub, job_ids):
        print(notification_line(event), flush=True)
    pubsub.close()


def notification_line(event: dict) -> str:
    """An event as tasks 7 and 8 print it."""
    job = f"Notification job {event['id']}"
    if event["event"] == "progress":
        return f"{job} {event['percent']}% complete"
    if event["event"] == "failed":
        return f"{job} failed: {event['error']}"
    return f"{job} completed"
