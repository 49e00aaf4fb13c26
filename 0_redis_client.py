"""Task 1: connect to Redis and say whether it worked.

Run with ``python 0_redis_client.py``; the server comes from ``REDIS_URL``.
"""

from course.connection import connect, run
from course.settings import parse_command_line


def main() -> None:
    # connect: redis.Redis.from_url(REDIS_URL) and a PING, printing the course's connected line
    # (or the failed-connection line for each of its tries); the with block closes the client.
    with connect():
        pass


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
