"""Where a course server listens (``HOST``, ``PORT``), and which ``Host`` header it answers.

A web page can make its name resolve to 127.0.0.1 (DNS rebinding); its requests still name it
in the Host header. A server answers the names of the address it is bound to: on loopback
(the default) ``127.0.0.1``, ``localhost`` and ``[::1]``; on every interface, any name.
"""

from __future__ import annotations

import ipaddress
import os
import socket

from course.settings import SettingError

DEFAULT_HOST = "127.0.0.1"
LOOPBACK_HOST_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})  # as a Host header names loopback
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]"})  # "every interface"


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without its port, in lower case: ``localhost``, ``[::1]``."""
    if host.startswith("["):
        return host.partition("]")[0].lower() + "]"
    return host.partition(":")[0].lower()


def allowed_host_names(bind_host: str) -> frozenset[str] | None:
    """The ``Host`` names a server listening on ``bind_host`` answers; None: any name."""
    if bind_host in WILDCARD_HOSTS:
        return None
    name = host_name(f"[{bind_host}]" if ":" in bind_host and not bind_host.startswith("[") else bind_host)
    try:
        loopback = name == "localhost" or ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:  # a name, not an address
        loopback = False
    return LOOPBACK_HOST_NAMES | {name} if loopback else frozenset({name})


def host_from_env() -> str:
    """``HOST`` (default 127.0.0.1), once it names an address of this machine's resolver."""
    host = os.environ.get("HOST") or DEFAULT_HOST
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else "not a valid host name"
        raise SettingError(f"HOST {host!r} is not an address to listen on: {reason}") from None
    return host


def port_from_env(variable: str, default: int) -> int:
    """The TCP port in the environment variable ``variable``, or ``default``."""
    value = os.environ.get(variable) or str(default)
    if not (value.isascii() and value.isdigit() and 0 < int(value) < 65536):
        raise SettingError(f"{variable} must be a TCP port number (1-65535), not {value!r}")
    return int(value)
