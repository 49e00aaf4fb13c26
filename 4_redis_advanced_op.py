"""Task 4: a hash built one field at a time with HSET, then read back whole with HGETALL."""

from course.connection import announce_connection, run
from course.settings import parse_command_line, redis_url

from redis import Redis

HOLBERTON_SCHOOLS = {
    "Portland": "50",
    "Seattle": "80",
    "New York": "20",
    "Bogota": "20",
    "Cali": "40",
    "Paris": "2",
}


def create_hash(client: Redis, key: str, fields: dict[str, str]) -> None:
    """One HSET per field, printing each reply: 1 for a new field, 0 for an existing one."""
    for field, value in fields.items():
        print(f"Reply: {client.hset(key, field, value)}")


def display_hash(client: Redis, key: str) -> None:
    print(client.hgetall(key))


def main() -> None:
    client = Redis.from_url(
        redis_url(), decode_responses=True, encoding_errors="replace", socket_connect_timeout=2
    )
    with client:
        announce_connection(client)
        create_hash(client, "HolbertonSchools", HOLBERTON_SCHOOLS)
        display_hash(client, "HolbertonSchools")


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
