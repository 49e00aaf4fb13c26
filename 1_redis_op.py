"""Task 2: SET a key, GET it back, and print replies the way node's redis.print did."""

from course.connection import announce_connection, run
from course.settings import parse_command_line, redis_url
from course.text import printable

from redis import Redis


def set_new_school(client: Redis, school_name: str, value: str) -> None:
    """Set the key and print the server's reply (``Reply: OK``)."""
    reply = client.set(school_name, value)
    print(f"Reply: {'OK' if reply else reply}")


def display_school_value(client: Redis, school_name: str) -> None:
    # printable: a value set by someone else shows its control characters as escapes (\x1b).
    print(printable(str(client.get(school_name))))


def main() -> None:
    # Replies as text; bytes that are not UTF-8 (someone else's value) read as U+FFFD.
    client = Redis.from_url(
        redis_url(), decode_responses=True, encoding_errors="replace", socket_connect_timeout=2
    )
    with client:
        announce_connection(client)
        display_school_value(client, "Holberton")
        set_new_school(client, "HolbertonSanFrancisco", "100")
        display_school_value(client, "HolbertonSanFrancisco")


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
