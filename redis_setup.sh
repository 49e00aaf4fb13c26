#!/usr/bin/env bash
# redis_setup.sh: the course's task 0 in one command. It gets a Redis that no client can
# crash (a supported release, or Debian's 7.0.15 with its security patches), compiles it
# once, starts it in the background bound to 127.0.0.1, sets Holberton=School and writes
# the course's dump.rdb at the project root.
#
# Usage: ./redis_setup.sh [start|stop|build|status]   (no argument = start)
#   start   build if needed, start the server (or find it running), SET/GET, write dump.rdb
#   stop    shut the server down (it saves first)
#   build   build if needed; the LAST line of stdout is the directory holding redis-server
#   status  exit 0 if the server is running, 3 if not
# Environment:
#   REDIS_PORT=6379           the server's port (loopback only)
#   REDIS_PASSWORD=...        start the server with this password (requirepass); start, stop
#                             and status use it. It is never put on a command line.
#   REDIS_SETUP_INSTALL_SYSTEM=1
#                             allow the last resort, as root: install the system's redis-server
#                             package with apt-get (which writes /usr/sbin/policy-rc.d for the
#                             install and stops the service the package starts). Off by default.
#   REDIS_SETUP_OFFICIAL_URL=URL
#                             get the official tarball from URL instead (a mirror, or file://
#                             in the tests); it must still match the pinned sha256, and no other
#                             source is tried.
#   XDG_CACHE_HOME            the build cache is $XDG_CACHE_HOME/queuing-system (default
#                             ~/.cache/queuing-system; with HOME unset, the home directory the
#                             password database gives the user).
# Two runs on one port take turns (a lock file, .redis/PORT/setup.lock): of two starts at once,
# one starts the server and the other finds it running.
set -euo pipefail

# The official release: 8.10.1, a security release of the newest stable line (8.10, July
# 2026), so CVE-2024-31228 (KEYS/SCAN with a huge pattern crashed 7.0.15; fixed upstream in
# 7.2.6 and 7.4.1) is fixed. Its sha256 is the one published for redis-8.10.1.tar.gz, which
# Homebrew's redis formula pins too; when bumping, take the new one from the redis/redis-hashes
# README. download.redis.io cannot be reached from the machines this project is developed and
# tested on (no DNS), so this path is not exercised there: they build the Debian path below.
# The default `make` builds core Redis only, as on 7.0 (8.x's modules need BUILD_WITH_MODULES).
readonly OFFICIAL_VERSION=8.10.1
readonly OFFICIAL_SHA256=60166c95ab7aedaa9dfe516de685be0a4dd87be95ded59ba429df14c13f1b663
readonly OFFICIAL_URL="${REDIS_SETUP_OFFICIAL_URL:-https://download.redis.io/releases/redis-${OFFICIAL_VERSION}.tar.gz}"
# Debian bookworm's source package: upstream 7.0.15 plus Debian's backported security
# patches. Debian repacks the upstream tarball, so its orig.tar.gz has its own pinned hash.
readonly DEBIAN_VERSION=7.0.15
readonly DEBIAN_ORIG_SHA256=4b1dc4ee6d622a09fff9c6777191209750fb5e5a725ef78ea012d6eef4c22982

# Paths are relative to this script, not to the caller's working directory, so the server's
# data always lands in this project whatever directory the script is started from.
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT_DIR
# The build is cached outside the clone: it survives `git clean` and is shared by every
# clone of the project on this machine. Each build's directory says what it holds
# (redis-8.10.1, or redis-7.0.15-debian-<Debian revision>), so a build from before the
# security patches (redis-7.0.15) is never taken for a patched one.
# CACHE_PARENT, OFFICIAL_CACHE_DIR, DEBIAN_CACHE_PREFIX: set by set_cache_paths.
readonly BUILD_MARKER=.build-complete
# How long a run waits for another run on the same port (a start waits at most 10 s for PING,
# then writes dump.rdb) before it gives up.
readonly PORT_LOCK_SECONDS=60

REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_PASSWORD="${REDIS_PASSWORD:-}"
# Only REDIS_PASSWORD says which password this script uses; one exported for other uses of
# redis-cli must not slip in.
unset REDISCLI_AUTH
# DATA_DIR, PID_FILE, LOG_FILE, PORT_LOCK: the server's files and this script's lock on the port, set by check_port_setting once the port is known.

BIN_DIR=""    # set by ensure_redis: the directory holding redis-server and redis-cli
CLI=""        # the redis-cli used to talk to the server
SERVER_PID="" # set by find_our_server
LOCKED=""     # set while this run holds the build lock
TMP_DIRS=()   # removed on exit, however the script ends

# What went wrong with each source, for the final message when none worked.
OFFICIAL_PROBLEM=""
DEBIAN_PROBLEM=""
SYSTEM_PROBLEM=""

# The source fetch_source got: compile_redis builds it into SOURCE_CACHE_DIR.
SOURCE_TARBALL=""
SOURCE_VERSION=""
SOURCE_CACHE_DIR=""
SOURCE_DEBIAN_TARBALL="" # Debian's packaging and patches, for the Debian source only
SOURCE_DESCRIPTION=""
PATCHES_APPLIED="" # set by apply_debian_patches: how many, and the CVE ids they fix

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

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -n 's/^# \{0,1\}//p'
}

# Makes a temporary directory that the EXIT trap removes and stores its path in the variable
# named $1 (not printed: in a $(...) subshell the TMP_DIRS list would not be updated).
# $2: optional parent (the build uses the cache's own filesystem so its final mv is atomic).
make_temp_dir() {
    local -n result="$1"
    result="$(mktemp -d "${2:-${TMPDIR:-/tmp}}/redis-setup.XXXXXX")"
    TMP_DIRS+=("$result")
}

# The directory the user's caches go in: XDG_CACHE_HOME, else ~/.cache. HOME may be unset (env -i,
# cron, some service managers): the home directory is then the password database's, as for
# Python's expanduser.
cache_home() {
    local home="${HOME:-}"
    if [[ -n ${XDG_CACHE_HOME:-} ]]; then
        printf '%s\n' "$XDG_CACHE_HOME"
        return 0
    fi
    if [[ -z $home ]] && have getent; then
        home="$(getent passwd "$(id -u)" | cut -d: -f6)" || home=""
    fi
    [[ -n $home ]] || die "HOME is not set and the password database gives no home directory: set XDG_CACHE_HOME (the Redis build is cached in \$XDG_CACHE_HOME/queuing-system)"
    printf '%s/.cache\n' "$home"
}

set_cache_paths() {
    local home
    home="$(cache_home)" # a plain assignment: its failure ends the script (set -e)
    readonly CACHE_PARENT="$home/queuing-system"
    readonly OFFICIAL_CACHE_DIR="$CACHE_PARENT/redis-$OFFICIAL_VERSION"
    readonly DEBIAN_CACHE_PREFIX="$CACHE_PARENT/redis-$DEBIAN_VERSION-debian-"
}

check_port_setting() {
    if ! [[ $REDIS_PORT =~ ^[0-9]+$ ]] || ((10#$REDIS_PORT < 1 || 10#$REDIS_PORT > 65535)); then
        die "REDIS_PORT must be a TCP port number (1-65535), not '$REDIS_PORT'"
    fi
    REDIS_PORT=$((10#$REDIS_PORT))
    DATA_DIR="$ROOT_DIR/.redis/$REDIS_PORT"
    PID_FILE="$DATA_DIR/redis.pid"
    LOG_FILE="$DATA_DIR/redis.log"
    PORT_LOCK="$DATA_DIR/setup.lock"
}

# One run at a time on the port, until this run ends: two starts at once would both launch a
# server; the second's fails to bind, but only after it removed the first's pidfile, and that
# server then runs on where neither stop nor status can see it. A port with no data directory
# has no server of ours to wait for. Without flock (macOS) runs are not kept apart.
lock_port() {
    [[ -d $DATA_DIR ]] && have flock || return 0
    exec 8>>"$PORT_LOCK"
    flock -w "$PORT_LOCK_SECONDS" 8 ||
        die "Another redis_setup.sh run on port $REDIS_PORT has held .redis/$REDIS_PORT/setup.lock for $PORT_LOCK_SECONDS s; try again once it is done"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Unpacks a tarball with this run's umask, not the archive's modes: as root, tar otherwise
# keeps the modes (and owners) stored in the archive, which left group-writable files.
unpack() { # $1: tarball, $2: directory
    tar --no-same-owner --no-same-permissions -xf "$1" -C "$2"
}

# ---------------------------------------------------------------------------------------------
# Getting the source (official tarball, else Debian's source package)
# ---------------------------------------------------------------------------------------------

# Downloads the official release tarball into $1. Short timeouts: where the site cannot be
# reached (no DNS, no route) we want to move on to the next source quickly.
fetch_official_tarball() {
    local dest="$1" error actual
    if ! have curl; then
        OFFICIAL_PROBLEM="curl is not installed"
        say "Official tarball not tried: $OFFICIAL_PROBLEM"
        return 1
    fi
    if ! error="$(curl -fsSL --connect-timeout 5 -m 120 -o "$dest" "$OFFICIAL_URL" 2>&1)"; then
        OFFICIAL_PROBLEM="unreachable: $OFFICIAL_URL (${error:-curl failed})"
        say "Official tarball $OFFICIAL_PROBLEM"
        return 1
    fi
    actual="$(sha256_of "$dest")"
    if [[ $actual != "$OFFICIAL_SHA256" ]]; then
        OFFICIAL_PROBLEM="sha256 mismatch: $OFFICIAL_URL has sha256 $actual, not the pinned $OFFICIAL_SHA256"
        say "Official tarball downloaded, but not used: $OFFICIAL_PROBLEM"
        return 1
    fi
    SOURCE_TARBALL="$dest"
    SOURCE_VERSION="$OFFICIAL_VERSION"
    SOURCE_CACHE_DIR="$OFFICIAL_CACHE_DIR"
    SOURCE_DEBIAN_TARBALL=""
    SOURCE_DESCRIPTION="redis $OFFICIAL_VERSION (official tarball, sha256 verified)"
}

# Downloads Debian bookworm's redis source package into the directory $1: the orig tarball
# (checked against our pinned sha256, so a different upstream can never slip in) and the
# .debian.tar.xz with Debian's patches. apt checks both files against the signed Sources
# index. A private sources list, lists directory and cache keep the system's apt
# configuration and state untouched.
fetch_debian_source() {
    local dest="$1" tmp orig dsc revision
    if ! have apt-get; then
        DEBIAN_PROBLEM="apt-get is not available"
        return 1
    fi
    make_temp_dir tmp
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/dl"
    printf '%s\n' \
        "deb-src http://deb.debian.org/debian bookworm main" \
        "deb-src http://deb.debian.org/debian-security bookworm-security main" \
        >"$tmp/sources.list"
    # As root apt downloads as the unprivileged _apt user; let it reach these directories
    # (they only hold public files) instead of warning and downloading as root.
    if ((EUID == 0)) && id _apt >/dev/null 2>&1; then
        chmod 755 "$tmp" "$tmp/lists"
        chown _apt "$tmp/lists/partial" "$tmp/dl"
    fi
    local -a apt_opts=(
        -q
        -o "Dir::Etc::SourceList=$tmp/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$tmp/lists"
        -o "Dir::Cache=$tmp/cache"
    )
    if ! apt-get "${apt_opts[@]}" update >"$tmp/apt.log" 2>&1; then
        DEBIAN_PROBLEM="apt-get update failed (deb.debian.org unreachable?): $(tail -n 1 "$tmp/apt.log")"
        return 1
    fi
    if ! (cd "$tmp/dl" && apt-get "${apt_opts[@]}" source --download-only redis) >>"$tmp/apt.log" 2>&1; then
        DEBIAN_PROBLEM="apt-get source redis failed: $(tail -n 1 "$tmp/apt.log")"
        return 1
    fi
    orig="$tmp/dl/redis_${DEBIAN_VERSION}.orig.tar.gz"
    if [[ ! -f $orig ]]; then
        DEBIAN_PROBLEM="Debian's redis source package is not version $DEBIAN_VERSION"
        return 1
    fi
    if [[ "$(sha256_of "$orig")" != "$DEBIAN_ORIG_SHA256" ]]; then
        DEBIAN_PROBLEM="sha256 mismatch: redis_${DEBIAN_VERSION}.orig.tar.gz is not the pinned upstream tarball"
        return 1
    fi
    dsc="$(compgen -G "$tmp/dl/redis_${DEBIAN_VERSION}-*.dsc" | head -n 1)" || true
    revision="${dsc##*/redis_"${DEBIAN_VERSION}"-}"
    revision="${revision%.dsc}"
    if [[ -z $dsc || ! -f $tmp/dl/redis_${DEBIAN_VERSION}-$revision.debian.tar.xz ]]; then
        DEBIAN_PROBLEM="Debian's source package has no .debian.tar.xz (its security patches)"
        return 1
    fi
    mv "$orig" "$dest/redis-$DEBIAN_VERSION.tar.gz"
    mv "$tmp/dl/redis_${DEBIAN_VERSION}-$revision.debian.tar.xz" "$dest/debian.tar.xz"
    SOURCE_TARBALL="$dest/redis-$DEBIAN_VERSION.tar.gz"
    SOURCE_VERSION="$DEBIAN_VERSION"
    SOURCE_CACHE_DIR="$DEBIAN_CACHE_PREFIX$revision"
    SOURCE_DEBIAN_TARBALL="$dest/debian.tar.xz"
    SOURCE_DESCRIPTION="redis $DEBIAN_VERSION, Debian source package $DEBIAN_VERSION-$revision"
}

# Gets a verified source into the directory $1; says which source it used.
fetch_source() {
    local dest="$1"
    if fetch_official_tarball "$dest/official.tar.gz"; then
        say "Redis source: $SOURCE_DESCRIPTION"
        return 0
    fi
    # A URL the user chose is the only source they want: falling back would hide its problem.
    if [[ -n ${REDIS_SETUP_OFFICIAL_URL:-} ]]; then
        die "Could not get Redis from REDIS_SETUP_OFFICIAL_URL: $OFFICIAL_PROBLEM"
    fi
    say "Trying Debian's source package"
    if fetch_debian_source "$dest"; then
        say "Redis source: $SOURCE_DESCRIPTION (sha256 verified)"
        return 0
    fi
    say "Debian source package unavailable: $DEBIAN_PROBLEM"
    return 1
}

# ---------------------------------------------------------------------------------------------
# Debian's security patches
# ---------------------------------------------------------------------------------------------

# The patches of debian/patches/series that fix a CVE: those whose file name or header (the
# text before the diff) names one. The others are left out, on purpose:
# - debian-packaging/*: Debian's redis.conf defaults (daemonize, /var/log paths) for its
#   system service; this script passes its own settings and never reads redis.conf.
# - Fix-FTBFS-on-kFreeBSD, Use-get_current_dir_name-over-PATHMAX: portability to kFreeBSD
#   and the Hurd; no change on Linux.
# - Add-CPPFLAGS-to-upstream-makefiles: lets Debian's hardening flags into the vendored
#   libraries' builds; upstream's own flags build them here.
# - Add-support-for-USE_SYSTEM_JEMALLOC-flag: links Debian's libjemalloc instead of the
#   vendored deps/jemalloc, and is harmful here: its `#if USE_SYSTEM_JEMALLOC == yes` holds
#   even with the flag unset (both names undefined: 0 == 0), which renames the je_* calls
#   the vendored jemalloc provides to the system library's names.
# The CVE patches apply to the upstream tarball without them (checked with 7.0.15-1~deb12u10).
security_patches() { # $1: the unpacked debian/ directory
    local debian="$1" name
    while read -r name _; do
        [[ -n $name && $name != \#* ]] || continue
        if [[ $name =~ CVE-[0-9]{4}-[0-9]+ ]] || sed '/^diff \|^--- /q' "$debian/patches/$name" | grep -q 'CVE-[0-9]\{4\}-[0-9]\+'; then
            printf '%s\n' "$name"
        fi
    done <"$debian/patches/series"
}

# The CVE ids the patch $1 names, one a line.
cve_ids_of() {
    { printf '%s\n' "${1##*/}"; sed '/^diff \|^--- /q' "$1"; } | grep -o 'CVE-[0-9]\{4\}-[0-9]\+' | sort -u
}

# Applies Debian's security patches to the source tree $1 from the .debian.tar.xz $2, and
# says which. Any failure stops the build: an unpatched build must never pass for a patched one.
apply_debian_patches() {
    local src="$1" debian_tarball="$2" pkg name log="$1/patches.log"
    local -a patches cves
    have patch || die "Applying Debian's security patches needs the patch command (apt-get install patch)"
    pkg="$src/.debian-package"
    mkdir -p "$pkg"
    unpack "$debian_tarball" "$pkg" || die "Could not unpack Debian's .debian.tar.xz"
    [[ -f $pkg/debian/patches/series ]] || die "Debian's .debian.tar.xz has no debian/patches/series"
    mapfile -t patches < <(security_patches "$pkg/debian")
    ((${#patches[@]} > 0)) || die "Debian's debian/patches/series lists no security patch: not building an unpatched Redis"
    for name in "${patches[@]}"; do
        # --fuzz=0, as Debian's own tooling: a patch whose context has moved is not applied.
        if ! patch -d "$src" -p1 -N --batch --fuzz=0 --no-backup-if-mismatch \
            <"$pkg/debian/patches/$name" >>"$log" 2>&1; then
            cp "$log" "$CACHE_PARENT/patch-failed.log"
            die "Applying Debian's security patch $name failed (log: $CACHE_PARENT/patch-failed.log): not building an unpatched Redis"
        fi
    done
    mapfile -t cves < <(for name in "${patches[@]}"; do cve_ids_of "$pkg/debian/patches/$name"; done | sort -u -V)
    rm -rf -- "$pkg"
    PATCHES_APPLIED="${#patches[@]} patches, ${cves[*]}"
    say "Debian security patches applied ($PATCHES_APPLIED)"
}

# ---------------------------------------------------------------------------------------------
# Building (once; cached)
# ---------------------------------------------------------------------------------------------

is_complete_build() { # $1: a cache directory
    [[ -f $1/$BUILD_MARKER ]] && "$1/src/redis-server" --version >/dev/null 2>&1
}

# Prints the cache directory of a finished build: the official release if built, else the
# newest Debian revision built. A newer Debian revision is only fetched once the cached one
# is removed (rm -rf ~/.cache/queuing-system/redis-*): the build is made once, as promised.
cached_build() {
    local dir
    local -a debian_builds=()
    mapfile -t debian_builds < <(compgen -G "$DEBIAN_CACHE_PREFIX*" | sort -r -V)
    for dir in "$OFFICIAL_CACHE_DIR" "${debian_builds[@]+"${debian_builds[@]}"}"; do
        if is_complete_build "$dir"; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 1
}

# Sets BIN_DIR to a finished build's binaries, if there is one; says which.
use_cached_build() {
    local dir
    dir="$(cached_build)" || return 1
    BIN_DIR="$dir/src"
    say "Redis build: cached ($dir)"
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

# Compiles the fetched source (patched first, for Debian's) in a temporary directory next to
# the cache, then renames it into place: an interrupted or failed build never leaves a
# half-built cache behind.
compile_redis() {
    local work src started log
    # Work directories left by a killed build (SIGKILL skips our EXIT trap). Only safe to
    # remove while holding the lock: otherwise one could be another run's build in progress.
    if [[ -n $LOCKED ]]; then
        rm -rf -- "$CACHE_PARENT"/redis-setup.*
    fi
    make_temp_dir work "$CACHE_PARENT"
    unpack "$SOURCE_TARBALL" "$work"
    src="$work/redis-$SOURCE_VERSION"
    [[ -f $src/Makefile ]] || die "The Redis tarball did not unpack to redis-$SOURCE_VERSION/"
    if [[ -n $SOURCE_DEBIAN_TARBALL ]]; then
        apply_debian_patches "$src" "$SOURCE_DEBIAN_TARBALL"
    fi
    log="$src/build.log"
    local -a flags
    mapfile -t flags < <(tls_flags)
    say "Compiling Redis $SOURCE_VERSION${flags[*]:+ with ${flags[*]}} (takes a few minutes)"
    started=$SECONDS
    if ! make -C "$src" -j"$(nproc)" "${flags[@]+"${flags[@]}"}" >"$log" 2>&1; then
        # The work directory is removed on exit: keep the log where it can be read.
        cp "$log" "$CACHE_PARENT/build-failed.log"
        tail -n 30 "$log" >&2
        die "Compiling Redis failed; full log: $CACHE_PARENT/build-failed.log"
    fi
    "$src/src/redis-server" --version >/dev/null ||
        die "The freshly built redis-server does not run"
    printf '%s\nsecurity patches: %s\nbuilt %s\n' "$SOURCE_DESCRIPTION" \
        "${PATCHES_APPLIED:-none needed (upstream release)}" "$(date -u +%FT%TZ)" >"$src/$BUILD_MARKER"
    # Nothing in the cache is writable by anyone but its owner, whatever modes make left.
    chmod -R go-w "$src"
    rm -rf -- "$SOURCE_CACHE_DIR" # a leftover without the marker: never a finished build
    mv -T "$src" "$SOURCE_CACHE_DIR"
    BIN_DIR="$SOURCE_CACHE_DIR/src"
    say "Redis build: compiled in $((SECONDS - started))s ($SOURCE_CACHE_DIR)"
}

# Last resort: a redis-server from PATH, or (only when REDIS_SETUP_INSTALL_SYSTEM=1) from the
# system's package manager.
use_system_redis() {
    if ! { have redis-server && have redis-cli; }; then
        if [[ ${REDIS_SETUP_INSTALL_SYSTEM:-} != 1 ]]; then
            SYSTEM_PROBLEM="no redis-server on PATH; set REDIS_SETUP_INSTALL_SYSTEM=1 to let this script install the system's redis-server package (as root, with apt-get)"
            return 1
        fi
        install_system_redis || return 1
    fi
    local server
    server="$(command -v redis-server)"
    BIN_DIR="$(dirname "$server")"
    if [[ ! -x $BIN_DIR/redis-cli ]]; then
        SYSTEM_PROBLEM="$BIN_DIR has redis-server but no redis-cli"
        return 1
    fi
    say "Redis binary: system package ($server, $("$server" --version | cut -d' ' -f3))"
}

# Installs Debian/Ubuntu's redis-server without letting it start a service: that service
# would hold port 6379 and our own server could not start there.
install_system_redis() {
    if ! { ((EUID == 0)) && have apt-get; }; then
        SYSTEM_PROBLEM="installing the system package needs root and apt-get"
        return 1
    fi
    # Already installed but not on PATH: nothing to install, and its service is not ours to stop.
    if have dpkg-query && [[ "$(dpkg-query -W -f='${Status}' redis-server 2>/dev/null)" == *" installed" ]]; then
        SYSTEM_PROBLEM="the redis-server package is installed but redis-server is not on PATH"
        return 1
    fi
    say "Installing redis-server from the system's package manager (REDIS_SETUP_INSTALL_SYSTEM=1)"
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
    if [[ -z $ok ]]; then
        SYSTEM_PROBLEM="apt-get install redis-server failed"
        return 1
    fi
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

# Sets BIN_DIR to a Redis when no finished build is cached: one compiled from source, else the
# system's. Called as a plain command (never in a condition, where set -e would not apply).
get_redis() {
    local tmp
    if ! have_compiler; then
        say "No C compiler (make and cc); looking for a Redis on PATH"
        use_system_redis ||
            die "No C compiler: install make and gcc (e.g. apt-get install build-essential) to build Redis (system package: $SYSTEM_PROBLEM)"
        return 0
    fi
    make_temp_dir tmp
    if fetch_source "$tmp"; then
        compile_redis
    else
        say "Looking for a Redis on PATH"
        use_system_redis ||
            die "Could not get Redis: official tarball $OFFICIAL_PROBLEM; Debian source package: $DEBIAN_PROBLEM; system package: $SYSTEM_PROBLEM"
    fi
}

# Makes sure a Redis is available and sets BIN_DIR to the directory holding its binaries.
ensure_redis() {
    mkdir -p "$CACHE_PARENT"
    # Two runs at once (two terminals, parallel tests) must not compile twice: the cache is
    # looked at under a lock, so a run started while another compiles waits for that build
    # and then uses it. The lock is released before the server starts, or the server would
    # inherit it.
    if have flock; then
        exec 9>"$CACHE_PARENT/.lock"
        flock 9
        LOCKED=yes
    fi
    if ! use_cached_build; then
        get_redis
    fi
    if [[ -n $LOCKED ]]; then
        exec 9>&-
        LOCKED=""
    fi
}

# Finds redis-cli without building anything (stop and status must not download or compile).
find_cli() {
    local dir
    if dir="$(cached_build)"; then
        printf '%s\n' "$dir/src/redis-cli"
    elif have redis-cli; then
        command -v redis-cli
    else
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------

# redis-cli reads the password from REDISCLI_AUTH: in its environment, never on its command line.
cli() {
    if [[ -n $REDIS_PASSWORD ]]; then
        REDISCLI_AUTH="$REDIS_PASSWORD" "$CLI" -h 127.0.0.1 -p "$REDIS_PORT" "$@"
    else
        "$CLI" -h 127.0.0.1 -p "$REDIS_PORT" "$@"
    fi
}

ping_reply() { cli ping 2>/dev/null || true; }

ping_ok() { [[ "$(ping_reply)" == PONG ]]; }

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

# Prints $1 if it is the pid of a live process.
live_pid() {
    [[ $1 =~ ^[0-9]+$ ]] && process_alive "$1" && printf '%s\n' "$1"
}

pid_from_file() {
    [[ -f $PID_FILE ]] && live_pid "$(cat "$PID_FILE")"
}

# The pid of the server last started in the data directory, if it still runs: Redis logs
# "... pid=PID, just started" as it starts.
pid_from_log() {
    [[ -f $LOG_FILE ]] && live_pid "$(sed -n 's/.*[ ,]pid=\([0-9][0-9]*\), just started.*/\1/p' "$LOG_FILE" | tail -n 1)"
}

# Our server answers, but refuses us: say what to do about the password.
password_refused() {
    if [[ -z $REDIS_PASSWORD ]]; then
        die "Redis on 127.0.0.1:$REDIS_PORT requires a password: set REDIS_PASSWORD to the one it was started with"
    fi
    die "Redis on 127.0.0.1:$REDIS_PORT refused REDIS_PASSWORD: set it to the password the server was started with"
}

# Sets SERVER_PID to the pid of OUR server on the port: the pidfile's process (or, with no
# pidfile, the last server started in this data directory, by its log) is alive, the port answers
# PONG, and the server there reports that same pid (so a reused pid or another Redis on the port
# is never mistaken for ours). A pidfile can be gone while its server runs (removed by hand, or by
# two starts at once before runs took the port's lock): its log still finds it, so stop and status
# see every server this script started. Not run in $(...): a refused password must end the
# script, not a subshell.
find_our_server() {
    local pid reply reported
    SERVER_PID=""
    pid="$(pid_from_file)" || pid="$(pid_from_log)" || return 1
    [[ -n ${CLI:-} ]] || return 1
    reply="$(ping_reply)"
    case "$reply" in
        PONG) ;;
        NOAUTH* | WRONGPASS*) password_refused ;;
        *) return 1 ;;
    esac
    reported="$(cli info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')"
    [[ $reported == "$pid" ]] || return 1
    SERVER_PID="$pid"
}

# The password for the server's stdin, each byte as \xHH inside quotes: Redis's config
# parser reads that back exactly, whatever characters the password has (spaces, quotes, #).
server_config() {
    local hex
    [[ -n $REDIS_PASSWORD ]] || return 0
    hex="$(printf '%s' "$REDIS_PASSWORD" | od -An -v -tx1 | tr -d ' \n' | sed 's/../\\x&/g')"
    printf 'requirepass "%s"\n' "$hex"
}

# The directories and files holding the server's data are its owner's only: the data is what
# the course's job processors act on, and may be private. Earlier runs made them readable.
private_data_dir() {
    mkdir -p "$DATA_DIR"
    chmod 700 "$ROOT_DIR/.redis"
    chmod -R go-rwx "$DATA_DIR"
}

# Why the server just exited: the warnings (" # ") it logged since byte $1 of its log once
# running as a server (role M; role C lines are its start-up banner), else its last lines
# (errors in its settings are printed before logging starts).
exit_reason() {
    local reason
    [[ -f $LOG_FILE ]] || return 0
    reason="$(tail -c +"$(($1 + 1))" "$LOG_FILE" | sed -n 's/^[0-9]*:M [^#]* # //p')"
    if [[ -z $reason ]]; then
        reason="$(tail -c +"$(($1 + 1))" "$LOG_FILE" | sed '/^[[:space:]]*$/d' | tail -n 5)"
    fi
    printf '%s\n' "$reason"
}

# Waits until the server started as process $1 answers PING. If it exits first (a port it
# may not bind, a bad setting), says why at once, from its log (read from byte $2).
wait_for_server() {
    local pid="$1" log_start="$2" i reason
    for ((i = 0; i < 100; i++)); do
        ping_ok && return 0
        if ! process_alive "$pid"; then
            reason="$(exit_reason "$log_start")"
            printf '%s\n' "$reason" >&2
            die "redis-server exited at once on 127.0.0.1:$REDIS_PORT: $(head -n 1 <<<"$reason") (log: .redis/$REDIS_PORT/redis.log)"
        fi
        sleep 0.1
    done
    tail -n 20 "$LOG_FILE" >&2 || true
    die "Redis did not answer PING on 127.0.0.1:$REDIS_PORT within 10 s (log: .redis/$REDIS_PORT/redis.log)"
}

launch_server() {
    local pid log_start=0
    rm -f "$PID_FILE" # stale: its process is gone
    if [[ -f $LOG_FILE ]]; then
        log_start="$(wc -c <"$LOG_FILE")"
    fi
    local -a detach=()
    if have setsid; then
        # Its own session: a Ctrl-C or hang-up meant for the terminal does not reach it. In a
        # script, a background job is no process group leader, so setsid execs without a fork
        # and $! is the server's own pid.
        detach=(setsid)
    fi
    # Run in the background rather than with --daemonize, so its pid is known at once and
    # an early exit is seen at once. The config read from stdin ("-") holds the password, so
    # no command line shows it; nor does the server's environment.
    # AOF (fsync every second) plus RDB snapshots: the course's data survives a restart.
    # `redis-cli --rdb` (dump.rdb below) is served like a replica's full sync, which by default
    # waits 5 s for more replicas to join; with no delay the snapshot is immediate.
    # The server does not keep this run's lock on the port (fd 8): it would hold it as long as it runs.
    server_config | (
        unset REDIS_PASSWORD
        exec 8>&-
        exec "${detach[@]+"${detach[@]}"}" "$BIN_DIR/redis-server" - \
            --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DATA_DIR" \
            --daemonize no --pidfile "$PID_FILE" --logfile "$LOG_FILE" \
            --appendonly yes --appendfsync everysec \
            --save "3600 1 300 100 60 10000" --protected-mode yes \
            --repl-diskless-sync-delay 0 >>"$LOG_FILE" 2>&1
    ) &
    pid=$!
    wait_for_server "$pid" "$log_start"
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
    chmod 600 "$tmp_rdb"
    mv -f "$tmp_rdb" "$ROOT_DIR/dump.rdb"
    say "dump.rdb written"
}

# A server already running keeps the password it was started with: say so when asked for one.
check_running_has_password() {
    [[ -n $REDIS_PASSWORD ]] || return 0
    if [[ "$("$CLI" -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; then
        die "Redis on 127.0.0.1:$REDIS_PORT is running without a password: stop it (./redis_setup.sh stop) and start it again with REDIS_PASSWORD set"
    fi
}

cmd_start() {
    local pid
    ensure_redis
    CLI="$BIN_DIR/redis-cli"
    private_data_dir
    lock_port
    if find_our_server; then
        check_running_has_password
        say "Redis already running on 127.0.0.1:$REDIS_PORT (pid $SERVER_PID)"
    else
        if port_in_use; then
            die "Port $REDIS_PORT is already in use by another program; set REDIS_PORT to a free port"
        fi
        launch_server
        pid="$(pid_from_file)" || die "Redis answered PING but its pidfile is missing"
        say "Redis running on 127.0.0.1:$REDIS_PORT (pid $pid)${REDIS_PASSWORD:+ with a password}, data in .redis/$REDIS_PORT"
    fi
    course_checks
}

cmd_stop() {
    local pid i
    CLI="$(find_cli)" || CLI=""
    lock_port
    if ! find_our_server; then
        say "Redis is not running on port $REDIS_PORT"
        return 0
    fi
    pid="$SERVER_PID"
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
    CLI="$(find_cli)" || CLI=""
    lock_port
    if find_our_server; then
        say "Redis running on 127.0.0.1:$REDIS_PORT (pid $SERVER_PID), data in .redis/$REDIS_PORT"
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
    # Everything this script creates (the build cache, the server's data, log, pidfile and
    # dump.rdb) is its user's alone: files 0600 (0700 if executable), directories 0700.
    umask 077
    trap cleanup EXIT
    # Turn signals into a normal exit so the EXIT trap removes temporary directories.
    trap 'exit 130' INT
    trap 'exit 143' TERM
    set_cache_paths
    check_port_setting
    case "${1:-start}" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        build) cmd_build ;;
        status) cmd_status ;;
        -h | --help | help) usage ;;
        *) die "Usage: $0 [start|stop|build|status]" ;;
    esac
}

main "$@"
