#!/usr/bin/env bash
# Task 0: a Redis server as the course sets one up. Builds Redis from its source tarball (unless
# a redis-server is installed already), starts it on 127.0.0.1:${REDIS_PORT:-6379}, checks that
# it answers PONG, stores Holberton=School, stops it and keeps its dump.rdb in this folder.
set -euo pipefail
cd "$(dirname "$0")"

VERSION=7.2.5
# The official Docker image's checksum for this tarball.
SHA256=5981179706f8391f03be91d951acafaeda91af7fac56beffb2701963103e423d
PORT="${REDIS_PORT:-6379}"

if command -v redis-server >/dev/null; then
    BIN_DIR="$(dirname "$(command -v redis-server)")"
else
    BIN_DIR="redis-$VERSION/src"
    if [ ! -x "$BIN_DIR/redis-server" ]; then
        curl -fsSL -o "redis-$VERSION.tar.gz" "https://download.redis.io/releases/redis-$VERSION.tar.gz"
        echo "$SHA256  redis-$VERSION.tar.gz" | sha256sum -c --quiet
        tar xzf "redis-$VERSION.tar.gz"
        make -C "redis-$VERSION" >/dev/null
    fi
fi
echo "Using $BIN_DIR/redis-server"

cli() { "$BIN_DIR/redis-cli" -h 127.0.0.1 -p "$PORT" "$@"; }

if cli ping >/dev/null 2>&1; then
    echo "Port $PORT is taken: a server answers there already" >&2
    exit 1
fi
"$BIN_DIR/redis-server" --bind 127.0.0.1 --port "$PORT" --dir "$PWD" --dbfilename dump.rdb >/dev/null &
server=$!
for _ in $(seq 50); do
    [ "$(cli ping 2>/dev/null)" = PONG ] && break
    kill -0 "$server" 2>/dev/null || { echo "redis-server did not start" >&2; exit 1; }
    sleep 0.1
done
cli ping
cli set Holberton School
[ "$(cli get Holberton)" = School ] || { echo "GET Holberton did not answer School" >&2; exit 1; }
cli shutdown save
wait "$server" || true
echo "Saved $PWD/dump.rdb"
