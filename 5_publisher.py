"""Task 5: publish four messages on a channel, each at its own time, as setTimeout did."""

import threading

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


def publish_message(client: Redis, message: str, time: int) -> threading.Timer:
    """In ``time`` milliseconds, announce the message and publish it.

    Like node's setTimeout, the timer starts now: the four messages go out 100 ms apart,
    not each 100 ms after the one before.
    """

    def send() -> None:
        print(f"About to send {message}", flush=True)
        client.publish(CHANNEL, message)

    timer = threading.Timer(time / 1000, send)
    timer.start()
    return timer


def main() -> None:
    with Redis.from_url(redis_url(), socket_connect_timeout=2) as client:
        announce_connection(client)
        timers = [publish_message(client, message, time) for message, time in MESSAGES]
        for timer in timers:
            timer.join()


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
