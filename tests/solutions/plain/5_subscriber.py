"""Task 5: a subscriber that prints what it receives until it is told KILL_SERVER."""

import sys

from redis_connection import CONNECTED, reach_redis, subscribe

CHANNEL = "holberton school channel"


def main() -> None:
    pubsub = subscribe(reach_redis(), CHANNEL)
    # Only once subscribed: a publisher started after this line is never missed.
    print(CONNECTED, flush=True)
    for message in pubsub.listen():
        if message["type"] != "message":
            continue
        print(message["data"], flush=True)
        if message["data"] == "KILL_SERVER":
            pubsub.unsubscribe(CHANNEL)
            pubsub.close()
            return


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C while waiting: a quiet stop, no traceback
