"""Task 1: connect to Redis and say whether it worked."""

from redis_connection import connect


def main() -> None:
    connect().close()


if __name__ == "__main__":
    main()
