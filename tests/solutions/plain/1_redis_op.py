"""Task 2: set and read string keys with redis-py."""

from redis_connection import connect

client = connect()


def set_new_school(school_name: str, value: str) -> None:
    """Sets the key and prints the reply the way node_redis's redis.print did."""
    reply = client.set(school_name, value)
    print(f"Reply: {'OK' if reply else reply}")


def display_school_value(school_name: str) -> None:
    print(client.get(school_name))


def main() -> None:
    display_school_value("Holberton")
    set_new_school("HolbertonSanFrancisco", "100")
    display_school_value("HolbertonSanFrancisco")
    client.close()


if __name__ == "__main__":
    main()
