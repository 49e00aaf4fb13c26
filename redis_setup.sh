#!/usr/bin/env bash
# redis_setup.sh: the course's task 0 in one command. It gets Redis 7.0.15, compiles it once,
# starts it in the background bound to 127.0.0.1, sets Holberton=School and writes the
# course's dump.rdb at the project root.
#
# Usage: ./redis_setup.sh [start|stop|build|status]   (no argument = start)
#   start   build if needed, start the server (or find it running), SET/GET, write dump.rdb
#   stop    shut the server down (it saves first)
#   build   build if needed; the LAST line of stdout is the directory holding redis-server
#   status  exit 0 if the server is running, 3 if not
# Environment: REDIS_PORT (default 6379).
set -euo pipefail

readonly REDIS_VERSION=7.0.15
readonly OFFICIAL_URL="https://download.redis.io/releases/redis-${REDIS_VERSION}.tar.gz"
readonly OFFICIAL_SHA256=98066f5363504b26c34dd20fbcc3c957990d764cdf42576c836fc021073f4341
# Debian repacks the upstream tarball, so its orig.tar.gz has a different (also pinned) hash.
readonly DEBIAN_SHA256=4b1dc4ee6d622a09fff9c6777191209750fb5e5a725ef78ea012d6eef4c22982

# Paths are relative to this script, not to the caller's working directory, so the server's
# data always lands in this project whatever directory the script is started from.
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT_DIR
# The build is cached outside the clone: it survives `git clean` and is shared by every
# clone of the project on this machine.
readonly CACHE_PARENT="${XDG_CACHE_HOME:-$HOME/.cache}/queuing-system"
readonly CACHE_DIR="$CACHE_PARENT/redis-$REDIS_VERSION"
readonly BUILD_MARKER="$CACHE_DIR/.build-complete"

REDIS_PORT="${REDIS_PORT:-6379}"
DATA_DIR="$ROOT_DIR/.redis/$REDIS_PORT"
PID_FILE="$DATA_DIR/redis.pid"
LOG_FILE="$DATA_DIR/redis.log"

BIN_DIR=""  # set by ensure_redis: the directory holding redis-server and redis-cli
CLI=""      # the redis-cli used to talk to the server
LOCKED=""   # set while this run holds the build lock
TMP_DIRS=() # removed on exit, however the script ends

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

say() { printf '%s\n' "$*"; }

die() {
    printf '%s\n' "$*" >&2
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

cleanup() {
    local dir
    for dir in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do
        rm -rf -- "$dir"
    done
}

# Makes a temporary directory that the EXIT trap removes and stores its path in the variable
# named $1 (not printed: in a $(...) subshell the TMP_DIRS list would not be updated).
# $2: optional parent (the build uses the cache's own filesystem so its final mv is atomic).
make_temp_dir() {
    local -n result="$1"
    result="$(mktemp -d "${2:-${TMPDIR:-/tmp}}/redis-setup.XXXXXX")"
    TMP_DIRS+=("$result")
}

check_port_setting() {
    if ! [[ $REDIS_PORT =~ ^[0-9]+$ ]] || ((10#$REDIS_PORT < 1 || 10#$REDIS_PORT > 65535)); then
        die "REDIS_PORT must be a TCP port number (1-65535), not '$REDIS_PORT'"
    fi
    REDIS_PORT=$((10#$REDIS_PORT))
    DATA_DIR="$ROOT_DIR/.redis/$REDIS_PORT"
    PID_FILE="$DATA_DIR/redis.pid"
    LOG_FILE="$DATA_DIR/redis.log"
}

sha256_matches() { # $1: file, $2: expected sha256
    [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]
}

# ---------------------------------------------------------------------------------------------
# Getting the source (official tarball, else Debian's source package)
# ---------------------------------------------------------------------------------------------

# Downloads the official release tarball into $1. Short timeouts: where the site cannot be
# reached (no DNS, no route) we want to move on to the next source quickly.
fetch_official_tarball() {
    local dest="$1"
    if ! have curl || ! curl -fsSL --connect-timeout 5 -m 120 -o "$dest" "$OFFICIAL_URL" 2>/dev/null; then
        say "Official download site unreachable"
        return 1
    fi
    if ! sha256_matches "$dest" "$OFFICIAL_SHA256"; then
        say "Official tarball downloaded but its sha256 does not match: not using it"
        return 1
    fi
}

# Downloads Debian bookworm's redis source package and copies its orig tarball into $1.
# A private sources list, lists directory and cache keep the system's apt configuration and
# state untouched. apt checks the file against the signed Sources index; we also check our
# pinned sha256, so a different upload can never slip in.
# Only the upstream orig tarball is used: Debian's .debian.tar.xz (its packaging and its
# backported security patches) is NOT applied, so the build is plain upstream 7.0.15.
fetch_debian_source() {
    local dest="$1" tmp orig
    have apt-get || return 1
    make_temp_dir tmp
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/dl"
    printf '%s\n' \
        "deb-src http://deb.debian.org/debian bookworm main" \
        "deb-src http://deb.debian.org/debian-security bookworm-security main" \
        >"$tmp/sources.list"
    # As root apt downloads as the unprivileged _apt user; let it reach these directories
    # (they only hold public files) instead of warning and downloading as root.
    if ((EUID == 0)) && id _apt >/dev/null 2>&1; then
        chmod 755 "$tmp"
        chown _apt "$tmp/lists/partial" "$tmp/dl"
    fi
    local -a apt_opts=(
        -q
        -o "Dir::Etc::SourceList=$tmp/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$tmp/lists"
        -o "Dir::Cache=$tmp/cache"
    )
    apt-get "${apt_opts[@]}" update >"$tmp/apt.log" 2>&1 || return 1
    (cd "$tmp/dl" && apt-get "${apt_opts[@]}" source --download-only redis) \
        >>"$tmp/apt.log" 2>&1 || return 1
    orig="$tmp/dl/redis_${REDIS_VERSION}.orig.tar.gz"
    if [[ ! -f $orig ]]; then
        say "Debian's redis source package is not version $REDIS_VERSION: not using it"
        return 1
    fi
    if ! sha256_matches "$orig" "$DEBIAN_SHA256"; then
        say "Debian's redis_${REDIS_VERSION}.orig.tar.gz has an unexpected sha256: not using it"
        return 1
    fi
    mv "$orig" "$dest"
}

# Gets a verified source tarball into $1; says which source it used.
fetch_source() {
    local dest="$1"
    if fetch_official_tarball "$dest"; then
        say "Redis source: official tarball (sha256 verified)"
        return 0
    fi
    say "Trying Debian's source package"
    if fetch_debian_source "$dest"; then
        say "Redis source: Debian source package redis $REDIS_VERSION (sha256 verified)"
        return 0
    fi
    return 1
}

# ---------------------------------------------------------------------------------------------
# Building (once; cached)
# ---------------------------------------------------------------------------------------------

is_cached() {
    [[ -f $BUILD_MARKER ]] && "$CACHE_DIR/src/redis-server" --version >/dev/null 2>&1
}

have_compiler() {
    have make && { have cc || have gcc; }
}

# TLS support costs nothing when OpenSSL's headers are there, and lets TLS be tried later.
tls_flags() {
    if { have pkg-config && pkg-config --exists openssl; } || [[ -f /usr/include/openssl/ssl.h ]]; then
        printf '%s\n' BUILD_TLS=yes
    fi
}

# Compiles the tarball $1 in a temporary directory next to the cache, then renames it into
# place: an interrupted or failed build never leaves a half-built cache behind.
compile_redis() {
    local tarball="$1" work src started log
    mkdir -p "$CACHE_PARENT"
    # Work directories left by a killed build (SIGKILL skips our EXIT trap). Only safe to
    # remove while holding the lock: otherwise one could be another run's build in progress.
    if [[ -n $LOCKED ]]; then
        rm -rf -- "$CACHE_PARENT"/redis-setup.*
    fi
    make_temp_dir work "$CACHE_PARENT"
    tar -xzf "$tarball" -C "$work"
    src="$work/redis-$REDIS_VERSION"
    [[ -f $src/Makefile ]] || die "The Redis tarball did not unpack to redis-$REDIS_VERSION/"
    log="$src/build.log"
    local -a flags
    mapfile -t flags < <(tls_flags)
    say "Compiling Redis $REDIS_VERSION${flags[*]:+ with ${flags[*]}} (takes a few minutes)"
    started=$SECONDS
    if ! make -C "$src" -j"$(nproc)" "${flags[@]+"${flags[@]}"}" >"$log" 2>&1; then
        # The work directory is removed on exit: keep the log where it can be read.
        cp "$log" "$CACHE_PARENT/build-failed.log"
        tail -n 30 "$log" >&2
        die "Compiling Redis failed; full log: $CACHE_PARENT/build-failed.log"
    fi
    "$src/src/redis-server" --version >/dev/null ||
        die "The freshly built redis-server does not run"
    printf 'redis %s built %s\n' "$REDIS_VERSION" "$(date -u +%FT%TZ)" >"$src/.build-complete"
    rm -rf -- "$CACHE_DIR" # a leftover without the marker: never a finished build
    mv -T "$src" "$CACHE_DIR"
    say "Redis build: compiled in $((SECONDS - started))s ($CACHE_DIR)"
}

# Last resort: a redis-server from the system's package manager.
use_system_redis() {
    if ! { have redis-server && have redis-cli; }; then
        install_system_redis || return 1
    fi
    local server
    server="$(command -v redis-server)"
    BIN_DIR="$(dirname "$server")"
    [[ -x $BIN_DIR/redis-cli ]] || return 1
    say "Redis binary: system package ($server, $("$server" --version | cut -d' ' -f3))"
}

# Installs Debian/Ubuntu's redis-server without letting it start a service: that service
# would hold port 6379 and our own server could not start there.
install_system_redis() {
    ((EUID == 0)) && have apt-get || return 1
    # Already installed but not on PATH: nothing to install, and its service is not ours to stop.
    if have dpkg-query && [[ "$(dpkg-query -W -f='${Status}' redis-server 2>/dev/null)" == *" installed" ]]; then
        return 1
    fi
    say "Installing redis-server from the system's package manager"
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [[ ! -e $policy ]]; then
        # Exit status 101 = "action forbidden": invoke-rc.d and deb-systemd-invoke skip the start.
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=yes
    fi
    local -a install=(apt-get install -y -q --no-install-recommends redis-server redis-tools)
    local ok=yes
    if ! DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null 2>&1; then
        # Maybe the package lists are empty (as in slim containers): refresh them once.
        apt-get update -q >/dev/null 2>&1 &&
            DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null 2>&1 || ok=""
    fi
    if [[ -n $made_policy ]]; then
        rm -f "$policy"
    fi
    [[ -n $ok ]] || return 1
    stop_system_service
    have redis-server && have redis-cli
}

# In case a service was started anyway (policy-rc.d already present and permissive).
stop_system_service() {
    if have systemctl && systemctl is-active --quiet redis-server 2>/dev/null; then
        systemctl disable --now redis-server >/dev/null 2>&1 || true
    elif have service; then
        service redis-server stop >/dev/null 2>&1 || true
    fi
    local pidfile=/run/redis/redis-server.pid pid
    if [[ -f $pidfile ]]; then
        pid="$(cat "$pidfile")"
        if [[ $pid =~ ^[0-9]+$ ]]; then
            kill "$pid" 2>/dev/null || true
        fi
    fi
}

# Makes sure a Redis is available and sets BIN_DIR to the directory holding its binaries.
ensure_redis() {
    if is_cached; then
        BIN_DIR="$CACHE_DIR/src"
        say "Redis build: cached ($CACHE_DIR)"
        return 0
    fi
    mkdir -p "$CACHE_PARENT"
    # Two runs at once (two terminals, parallel tests) must not compile twice. The lock is
    # released before the server starts, or the daemon would inherit it.
    if have flock; then
        exec 9>"$CACHE_PARENT/.lock"
        flock 9
        LOCKED=yes
    fi
    if is_cached; then # another run finished the build while we waited
        BIN_DIR="$CACHE_DIR/src"
        say "Redis build: cached ($CACHE_DIR)"
    elif have_compiler; then
        local tmp
        make_temp_dir tmp
        if fetch_source "$tmp/redis-$REDIS_VERSION.tar.gz"; then
            compile_redis "$tmp/redis-$REDIS_VERSION.tar.gz"
            BIN_DIR="$CACHE_DIR/src"
        else
            say "Debian source package unavailable; looking for a system package"
            use_system_redis ||
                die "Could not get Redis: official site unreachable, Debian source package unavailable, no system package"
        fi
    else
        say "No C compiler (make and cc); looking for a system package"
        use_system_redis ||
            die "No C compiler: install make and gcc (e.g. apt-get install build-essential) to build Redis, or install the redis-server package"
    fi
    if [[ -n $LOCKED ]]; then
        exec 9>&-
        LOCKED=""
    fi
}

# Finds redis-cli without building anything (stop and status must not download or compile).
find_cli() {
    if is_cached; then
        printf '%s\n' "$CACHE_DIR/src/redis-cli"
    elif have redis-cli; then
        command -v redis-cli
    else
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------

cli() { "$CLI" -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

ping_ok() { [[ "$(cli ping 2>/dev/null)" == PONG ]]; }

# Something accepts connections on the port (bash's /dev/tcp: needs no extra tool).
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null
}

# A process that has exited but not yet been reaped (a zombie) still answers kill -0; in a
# container whose init reaps slowly that can last seconds, so zombies count as gone.
process_alive() {
    local state=""
    kill -0 "$1" 2>/dev/null || return 1
    if [[ -r /proc/$1/stat ]]; then
        state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
    fi
    [[ $state != Z ]]
}

pid_from_file() {
    local pid
    [[ -f $PID_FILE ]] || return 1
    pid="$(cat "$PID_FILE")"
    [[ $pid =~ ^[0-9]+$ ]] && process_alive "$pid" || return 1
    printf '%s\n' "$pid"
}

# Prints the pid of OUR server on the port: the pidfile's process is alive, the port answers
# PONG, and the server there reports that same pid (so a reused pid or another Redis on the
# port is never mistaken for ours).
our_server_pid() {
    local pid reported
    pid="$(pid_from_file)" || return 1
    [[ -n ${CLI:-} ]] || return 1
    ping_ok || return 1
    reported="$(cli info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')"
    [[ $reported == "$pid" ]] || return 1
    printf '%s\n' "$pid"
}

wait_for_pong() {
    local i
    for ((i = 0; i < 100; i++)); do
        ping_ok && return 0
        sleep 0.1
    done
    return 1
}

launch_server() {
    mkdir -p "$DATA_DIR"
    rm -f "$PID_FILE" # stale: its process is gone
    # AOF (fsync every second) plus RDB snapshots: the course's data survives a restart.
    # `redis-cli --rdb` (dump.rdb below) is served like a replica's full sync, which by default
    # waits 5 s for more replicas to join; with no delay the snapshot is immediate.
    "$BIN_DIR/redis-server" \
        --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DATA_DIR" \
        --daemonize yes --pidfile "$PID_FILE" --logfile "$LOG_FILE" \
        --appendonly yes --appendfsync everysec \
        --save "3600 1 300 100 60 10000" --protected-mode yes \
        --repl-diskless-sync-delay 0 >/dev/null 2>&1 || true
    if ! wait_for_pong; then
        if [[ -f $LOG_FILE ]]; then
            tail -n 20 "$LOG_FILE" >&2
        fi
        die "Redis did not answer PING on 127.0.0.1:$REDIS_PORT within 10 s (log: .redis/$REDIS_PORT/redis.log)"
    fi
}

# The course's steps: PING, SET Holberton School, GET it back, keep dump.rdb at the root.
course_checks() {
    local value tmp_rdb="$DATA_DIR/dump.rdb.partial" # git-ignored even if left behind
    ping_ok || die "PING did not answer PONG"
    say "PING -> PONG"
    [[ "$(cli set Holberton School 2>&1)" == OK ]] || die "SET Holberton School failed"
    value="$(cli get Holberton 2>&1)"
    [[ $value == School ]] || die "GET Holberton answered '$value', not 'School'"
    say "GET Holberton -> School"
    # --rdb asks the server for a fresh snapshot: the deliverable holds Holberton=School.
    # Written to a temporary file then renamed, so dump.rdb is never half-written.
    rm -f "$tmp_rdb"
    if ! cli --rdb "$tmp_rdb" >/dev/null 2>&1 || [[ ! -s $tmp_rdb ]]; then
        rm -f "$tmp_rdb"
        die "Could not write dump.rdb (redis-cli --rdb failed)"
    fi
    mv -f "$tmp_rdb" "$ROOT_DIR/dump.rdb"
    say "dump.rdb written"
}

cmd_start() {
    local pid
    ensure_redis
    CLI="$BIN_DIR/redis-cli"
    if pid="$(our_server_pid)"; then
        say "Redis already running on 127.0.0.1:$REDIS_PORT (pid $pid)"
    else
        if port_in_use; then
            die "Port $REDIS_PORT is already in use by another program; set REDIS_PORT to a free port"
        fi
        launch_server
        pid="$(pid_from_file)" || die "Redis answered PING but its pidfile is missing"
        say "Redis running on 127.0.0.1:$REDIS_PORT (pid $pid), data in .redis/$REDIS_PORT"
    fi
    course_checks
}

cmd_stop() {
    local pid i
    CLI="$(find_cli)" || CLI=""
    if ! pid="$(our_server_pid)"; then
        say "Redis is not running on port $REDIS_PORT"
        return 0
    fi
    # SHUTDOWN saves the data first (save points and AOF are configured).
    cli shutdown >/dev/null 2>&1 || true
    for ((i = 0; i < 100; i++)); do
        process_alive "$pid" || break
        sleep 0.1
    done
    if process_alive "$pid"; then
        die "Redis (pid $pid) did not stop within 10 s; see .redis/$REDIS_PORT/redis.log"
    fi
    say "Redis on port $REDIS_PORT stopped"
}

cmd_status() {
    local pid
    CLI="$(find_cli)" || CLI=""
    if pid="$(our_server_pid)"; then
        say "Redis running on 127.0.0.1:$REDIS_PORT (pid $pid), data in .redis/$REDIS_PORT"
        return 0
    fi
    say "Redis is not running on port $REDIS_PORT"
    return 3
}

cmd_build() {
    ensure_redis
    # Last line, alone: callers read it with `| tail -1`.
    say "$BIN_DIR"
}

main() {
    trap cleanup EXIT
    # Turn signals into a normal exit so the EXIT trap removes temporary directories.
    trap 'exit 130' INT
    trap 'exit 143' TERM
    check_port_setting
    case "${1:-start}" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        build) cmd_build ;;
        status) cmd_status ;;
        -h | --help | help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
        *) die "Usage: $0 [start|stop|build|status]" ;;
    esac
}

main "$@"
