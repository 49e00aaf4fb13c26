"""The course's Redis connection, shared by every script of this solution.

Connecting prints the course's connected line, or the failed-connection line and exits with
status 1. Redis is where the course has it: 127.0.0.1, port 6379.
"""

import sys

import redis
from redis.client import PubSub

REDIS_URL = "redis://127.0.0.1:6379"
CONNECTED = "Redis client connected to the server"
NOT_CONNECTED = "Redis client not connected to the server: "


def reach_redis(decode_responses: bool = True) -> redis.Redis:
    """A client that answered PING, or the failed-connection line and exit status 1.

    RQ stores pickled bytes: the job scripts pass decode_responses=False.
    """
    client = redis.Redis.from_url(REDIS_URL, decode_responses=decode_responses)
    try:
        client.ping()
    except redis.ConnectionError as error:
        print(f"{NOT_CONNECTED}{error}", flush=True)
        sys.exit(1)
    return client


def connect(decode_responses: bool = True) -> redis.Redis:
    """reach_redis(), then the connected line."""
    client = reach_redis(decode_responses)
    print(CONNECTED, flush=True)
    return client


def subscribe(client: redis.Redis, channel: str) -> PubSub:
    """A PubSub subscribed to channel: the server has confirmed it when this returns,
    so nothing published afterwards can be missed."""
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    confirmation = None
    while confirmation is None:
        confirmation = pubsub.get_message(timeout=1.0)
    return pubsub
