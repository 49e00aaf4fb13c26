"""Task 1: connect to Redis and say whether it worked.

node_redis announced itself with its ``connect`` and ``error`` events. redis-py connects at
the first command, so the lesson sends one, PING, and prints the course's line for what
happened. Run with ``python 0_redis_client.py``; the server comes from ``REDIS_URL``.
"""

from course.connection import announce_connection, run
from course.settings import parse_command_line, redis_url

from redis import Redis


def main() -> None:
    # A host that never answers is given up after 2 s rather than the system's minutes.
    with Redis.from_url(redis_url(), socket_connect_timeout=2) as client:
        # announce_connection: PING; the connected line, or the not-connected line for each of 3 tries.
        announce_connection(client)


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
