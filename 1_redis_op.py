"""Task 2: SET a key, GET it back, and print replies the way node's redis.print did."""

from course.connection import connect, run
from course.settings import parse_command_line
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
    with connect() as client:
        display_school_value(client, "Holberton")
        set_new_school(client, "HolbertonSanFrancisco", "100")
        display_school_value(client, "HolbertonSanFrancisco")


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
