"""Shared fixtures: a real redis-server per test session, fakeredis, a URL where nothing listens.

The server binary comes from ``REDIS_BIN_DIR`` (``make test`` sets it from
``./redis_setup.sh build``), else ``redis-server`` on PATH, else redis_setup.sh's cache.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis
from pytest_redis import factories


def redis_bin_dir() -> Path:
    if os.environ.get("REDIS_BIN_DIR"):
        return Path(os.environ["REDIS_BIN_DIR"])
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path).parent
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "queuing-system" / "redis-7.0.15" / "src"


REDIS_BIN = redis_bin_dir()

redis_proc = factories.redis_proc(executable=str(REDIS_BIN / "redis-server"), port=None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def redis_url(redis_proc) -> Iterator[str]:
    """A URL to the session's real server, with database 0 emptied for each test."""
    url = f"redis://{redis_proc.host}:{redis_proc.port}/0"
    with redis.Redis.from_url(url) as client:
        client.flushall()
    yield url


@pytest.fixture
def real_redis(redis_url) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client


@pytest.fixture
def dead_redis_url() -> str:
    """A URL where nothing listens: the lessons must say so and exit, not crash."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)
