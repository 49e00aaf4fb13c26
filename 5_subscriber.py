"""Task 5: subscribe to a channel and print what is published there, until KILL_SERVER.

Pub/sub keeps nothing: a message published before the server has registered the
subscription is gone. So the connected line waits for the server's confirmation of
SUBSCRIBE; a publisher started after that line is never missed.
"""

from course.connection import CONNECTED, run
from course.settings import parse_command_line, redis_url
from course.text import printable

from redis import Redis
from redis.client import PubSub

CHANNEL = "holberton school channel"
KILL_MESSAGE = "KILL_SERVER"


def subscribe(pubsub: PubSub, channel: str) -> None:
    """Subscribe and wait until the server confirms it: from then on, nothing published is missed."""
    pubsub.subscribe(channel)
    for message in pubsub.listen():
        if message["type"] == "subscribe":
            return


def print_messages(pubsub: PubSub) -> None:
    """Print each message, one per line; leave the channel after KILL_SERVER."""
    for message in pubsub.listen():
        if message["type"] != "message":
            continue
        # printable: a message from anyone on the channel shows its control characters as escapes.
        print(printable(message["data"]), flush=True)
        if message["data"] == KILL_MESSAGE:
            pubsub.unsubscribe()
            return


def main() -> None:
    client = Redis.from_url(
        redis_url(), decode_responses=True, encoding_errors="replace", socket_connect_timeout=2
    )
    with client, client.pubsub() as pubsub:
        subscribe(pubsub, CHANNEL)
        print(CONNECTED, flush=True)
        print_messages(pubsub)


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
