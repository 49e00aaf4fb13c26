"""Task 1: connect to Redis and say whether it worked.

Run with ``python 0_redis_client.py``; the server comes from ``REDIS_URL``.
"""

from course.connection import connect, run


def main() -> None:
    with connect():
        pass


if __name__ == "__main__":
    run(main)
