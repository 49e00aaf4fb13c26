"""Task 5: a publisher that sends four messages at set times, like node's setTimeout."""

import threading

from redis_connection import connect

CHANNEL = "holberton school channel"

client = connect()


def publish_message(message: str, time: int) -> threading.Timer:
    """Waits time milliseconds in the background, then announces and publishes the message."""

    def send() -> None:
        print(f"About to send {message}", flush=True)
        client.publish(CHANNEL, message)

    timer = threading.Timer(time / 1000, send)
    timer.start()
    return timer


def main() -> None:
    timers = [
        publish_message("Holberton Student #1 starts course", 100),
        publish_message("Holberton Student #2 starts course", 200),
        publish_message("KILL_SERVER", 300),
        publish_message("Holberton Student #3 starts course", 400),
    ]
    for timer in timers:
        timer.join()
    client.close()


if __name__ == "__main__":
    main()
