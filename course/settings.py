"""The settings every program takes from ``REDIS_URL`` and its command line, checked before it starts.

A typo is said in one line naming the setting (``SettingError``: exit status 2), before
anything runs; a password is never repeated. A server's ``HOST`` and ``PORT``: ``course.hosts``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from urllib.parse import parse_qs, urlsplit

from redis.connection import URL_QUERY_ARGUMENT_PARSERS

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_URL_SCHEMES = ("redis", "rediss", "unix")
USAGE_ERROR = 2
QUIET = logging.CRITICAL + 1  # above CRITICAL: RQ's loggers at this level format no record
# What a URL's ?name=value may set beside redis-py's own parsed options (URL_QUERY_ARGUMENT_PARSERS):
# the connection's string settings. redis-py passes any other name on to the connection, which
# refuses it with a TypeError at the first command.
URL_TEXT_OPTIONS = frozenset({"client_name", "username", "password", "lib_name", "lib_version"})
# The TLS settings, for rediss:// only (a plain connection refuses them the same way).
URL_TLS_TEXT_OPTIONS = frozenset(
    f"ssl_{name}"
    for name in ("keyfile", "certfile", "cert_reqs", "ca_certs", "ca_path", "ca_data", "ciphers")
)
URL_OPTIONS = frozenset(URL_QUERY_ARGUMENT_PARSERS) | URL_TEXT_OPTIONS | URL_TLS_TEXT_OPTIONS


class SettingError(ValueError):
    """A malformed setting; the message names it and says what is wrong."""


def redis_url() -> str:
    """``REDIS_URL`` (or the local default), once it has the form of a Redis URL."""
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    check_redis_url(url)
    return url


def check_redis_url(url: str) -> None:
    """Raise ``SettingError`` for what redis-py would refuse later, with a traceback, or misread."""
    try:
        parts = urlsplit(url)
    except ValueError as error:  # an unclosed [ of an IPv6 address, say
        raise SettingError(f"REDIS_URL is not a URL: {error}") from None
    if parts.scheme not in REDIS_URL_SCHEMES:
        found = f", not {parts.scheme}://" if parts.scheme else ""
        raise SettingError(
            "REDIS_URL must start with redis://, rediss:// or unix:// "
            f"(for example {DEFAULT_REDIS_URL}){found}"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise SettingError("REDIS_URL names no socket file after unix://")
        check_url_options(parts.scheme, parts.query)
        return
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is not None and not 0 < port < 65536:
        raise SettingError("REDIS_URL has a port that is not a TCP port number (1-65535)")
    database = parts.path.lstrip("/")
    if database and not (database.isascii() and database.isdigit()):
        raise SettingError(f"REDIS_URL must end with a database number (like /0), not /{database}")
    check_url_options(parts.scheme, parts.query)


def check_url_options(scheme: str, query: str) -> None:
    """Raise ``SettingError`` for a ``?name=value`` redis-py fails on (a traceback, at the first command)."""
    for name, [value, *_] in parse_qs(query).items():
        if name not in URL_OPTIONS:
            raise SettingError(f"REDIS_URL has an option redis-py does not know: {name}")
        if name.startswith("ssl_") and scheme != "rediss":
            raise SettingError(f"REDIS_URL sets {name}, an option of rediss:// (TLS) URLs only")
        parse = URL_QUERY_ARGUMENT_PARSERS.get(name)
        if parse is not None:
            try:
                parse(value)
            except (TypeError, ValueError):
                raise SettingError(f"REDIS_URL has a value for {name} that is not valid: {value!r}") from None


def command_line_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose ``--help`` tells what the program does: the first line of its docstring."""
    return argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)


def parse_command_line(doc: str | None) -> argparse.Namespace:
    """The command line of a program that takes no arguments: only ``--help`` (argparse exits 2 on others)."""
    return command_line_parser(doc).parse_args()


def verbose_from_args(description: str) -> bool:
    """A creator's or processor's command line: ``--verbose`` shows more on stderr."""
    parser = command_line_parser(description)
    parser.add_argument("--verbose", action="store_true", help="show RQ's and the course's own log lines")
    verbose = parser.parse_args().verbose
    if verbose:
        course_logger = logging.getLogger("course")
        course_logger.addHandler(logging.StreamHandler(sys.stderr))
        course_logger.setLevel(logging.INFO)
    return verbose


def logging_level_from_args(description: str) -> str | int:
    """A processor's command line: ``--verbose`` shows RQ's own log lines. Returns RQ's level."""
    return rq_logging_level(verbose_from_args(description))


def rq_logging_level(verbose: bool) -> str | int:
    """The level to give RQ; quiet, RQ's loggers get a handler that drops everything, so RQ adds none."""
    if verbose:
        return "INFO"
    rq_logger = logging.getLogger("rq")
    rq_logger.addHandler(logging.NullHandler())
    rq_logger.propagate = False
    return QUIET
