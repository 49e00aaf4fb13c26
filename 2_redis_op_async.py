"""Task 3: task 2 again with ``redis.asyncio``: every command is awaited, in order.

The course wrapped node_redis's callbacks with ``promisify``; redis-py ships the
async client, so ``async``/``await`` is all it takes.
"""

import asyncio

from course.connection import announce_connection_async, run
from course.settings import parse_command_line, redis_url
from course.text import printable

from redis.asyncio import Redis


async def set_new_school(client: Redis, school_name: str, value: str) -> None:
    reply = await client.set(school_name, value)
    print(f"Reply: {'OK' if reply else reply}")


async def display_school_value(client: Redis, school_name: str) -> None:
    print(printable(str(await client.get(school_name))))


async def lesson() -> None:
    client = Redis.from_url(
        redis_url(), decode_responses=True, encoding_errors="replace", socket_connect_timeout=2
    )
    async with client:
        await announce_connection_async(client)
        await display_school_value(client, "Holberton")
        await set_new_school(client, "HolbertonSanFrancisco", "100")
        await display_school_value(client, "HolbertonSanFrancisco")


def main() -> None:
    asyncio.run(lesson())


if __name__ == "__main__":
    parse_command_line(__doc__)
    run(main)
