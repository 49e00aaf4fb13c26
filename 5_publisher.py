"""Task 5: publish four messages on a channel, each at its own time, as setTimeout did."""

import sched
import time

from course.connection import announce_connection, run
from course.settings import parse_command_line, redis_url

from redis import Redis

CHANNEL = "holberton school channel"
MESSAGES = [
    ("Holberton Student #1 starts course", 100),
    ("Holberton Student #2 starts course", 200),
    ("KILL_SERVER", 300),
    ("Holberton Student #3 starts course", 400),
]


def publish_message(timers: sched.scheduler, client: Redis, message: str, delay_ms: int) -> None:
    """In ``delay_ms`` milliseconds, announce the message and publish it.

    Like node's setTimeout, the delay counts from now: the four messages go out 100 ms apart,
    not each 100 ms after the one before, and in the order they fall due (one loop runs them
    all, as node's did; a thread per message could run late and out of turn).
    """

    def send() -> None:
        print(f"About to send {message}", flush=True)
        client.publish(CHANNEL, message)

    timers.enter(delay_ms / 1000, 0, send)


def main() -> None:
    with Redis.from_url(redis_url(), socket_connect_timeout=2) as client:
        announce_connection(client)
        timers = sched.scheduler(time.monotonic, time.sleep)
        for message, delay_ms in MESSAGES:
            publish_message(timers, client, message, delay_ms)
        timers.run()


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
