"""Benchmark task 9's API against Redis itself: how much of Redis's speed does the API keep?

Starts ``python 9_stock.py`` on a free port against ``REDIS_URL`` (default: the project's
Redis on 127.0.0.1:6379). For each route, in each round:
1. ``redis-benchmark -t get -c 32`` on that Redis: the ceiling, in GET ops/s;
2. ``wrk -t1 -c32`` on the route for a few seconds, after a one-second warm-up.
The routes: ``GET /list_products/1`` (one GET per request) and ``GET /reserve_product/1``
(one Lua script per request; item 1's stock is raised so that every reservation is
confirmed, and put back as it was afterwards). Measuring Redis right before each route
keeps the ratio honest on a shared, noisy machine. Prints each route's median req/s,
p99 latency and req/s divided by Redis's GET ops/s. Needs ``wrk`` and ``redis-benchmark``
on PATH (Debian: ``apt-get install wrk redis-tools``).

    python bench/stock.py [--duration 5] [--connections 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course.connection import redis_url  # noqa: E402

from checker.tasks import free_port  # noqa: E402

ROUTES = ["/list_products/1", "/reserve_product/1"]
STOCK_KEY = "item.1"
# Enough units that no reservation of the run is refused: every request takes the write path.
BENCH_STOCK = 10**9
READY_TIMEOUT_SECONDS = 20


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"{tool} is not on PATH (Debian: apt-get install wrk redis-tools)")
    return path


def redis_get_ops(client: redis.Redis, connections: int) -> float:
    """Redis's own GET ops/s with as many connections as wrk will use."""
    options = client.connection_pool.connection_kwargs
    output = subprocess.run(
        [require("redis-benchmark"), "-h", options["host"], "-p", str(options["port"])]
        + ["-t", "get", "-c", str(connections), "-n", "200000", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"GET: ([\d.]+) requests per second", output)[1])


def to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, connections: int, seconds: float) -> tuple[float, float]:
    """(requests/s, p99 latency in ms) of one wrk run; fails on errors and on starved connections."""
    output = subprocess.run(
        [require("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        sys.exit(f"wrk saw errors on {url}:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])
    average = re.search(r"Latency\s+([\d.]+)(us|ms|s)\b", output)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", output)
    # Little's law: connections = rate x mean latency when every connection is served. A
    # server that serves a few connections and leaves the rest waiting shows a p99 that is
    # too good to be true; wrk counts no request that never got its answer.
    served = rate * to_ms(average[1], average[2]) / 1000
    if served < 0.8 * connections:
        sys.exit(f"only about {served:.0f} of {connections} connections were served on {url}:\n{output}")
    return rate, to_ms(p99[1], p99[2])


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PORT": str(port), "REDIS_URL": redis_url()}
    server = subprocess.Popen([sys.executable, "9_stock.py"], cwd=ROOT, env=env)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/list_products", timeout=1):
                return server
        except OSError:
            if server.poll() is not None:
                sys.exit("9_stock.py exited before answering")
            time.sleep(0.1)
    server.kill()
    sys.exit("9_stock.py did not answer in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per route (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per route, medians shown (default 3)")
    args = parser.parse_args()

    client = redis.Redis.from_url(redis_url())
    saved_stock = client.get(STOCK_KEY)
    port = free_port()
    server = start_server(port)
    try:
        client.set(STOCK_KEY, BENCH_STOCK)
        print(f"wrk -t1 -c{args.connections} -d{args.duration:g}s, median of {args.rounds} rounds")
        print(f"{'route':<22}{'req/s':>9}{'p99 ms':>8}{'redis GET/s':>13}{'ratio':>7}")
        for route in ROUTES:
            url = f"http://127.0.0.1:{port}{route}"
            rounds = []
            for _ in range(args.rounds):
                redis_ops = redis_get_ops(client, args.connections)
                wrk(url, args.connections, 1)  # warm-up: connections, threads, script cache
                rate, p99 = wrk(url, args.connections, args.duration)
                rounds.append((rate, p99, redis_ops, rate / redis_ops))
            rate, p99, redis_ops, ratio = (statistics.median(column) for column in zip(*rounds, strict=True))
            print(f"{route:<22}{rate:>9,.0f}{p99:>8.2f}{redis_ops:>13,.0f}{ratio:>7.3f}")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        if saved_stock is None:
            client.delete(STOCK_KEY)
        else:
            client.set(STOCK_KEY, saved_stock)


if __name__ == "__main__":
    main()
