"""Task 3: the same operations as task 2, with redis.asyncio and async/await."""

import asyncio
import sys

import redis
import redis.asyncio
from redis_connection import CONNECTED, NOT_CONNECTED, REDIS_URL


async def set_new_school(client: redis.asyncio.Redis, school_name: str, value: str) -> None:
    reply = await client.set(school_name, value)
    print(f"Reply: {'OK' if reply else reply}")


async def display_school_value(client: redis.asyncio.Redis, school_name: str) -> None:
    print(await client.get(school_name))


async def main() -> int:
    client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except redis.ConnectionError as error:
        print(f"{NOT_CONNECTED}{error}")
        return 1
    print(CONNECTED)
    await display_school_value(client, "Holberton")
    await set_new_school(client, "HolbertonSanFrancisco", "100")
    await display_school_value(client, "HolbertonSanFrancisco")
    await client.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
