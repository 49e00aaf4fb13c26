"""Which ``Host`` a course server answers: the names of the address it listens on.

A web page can make its own name resolve to 127.0.0.1 (DNS rebinding) and then call a server
on this machine as if it were its own site; the Host header still carries the page's name.
Bound to loopback (the default), a server answers ``127.0.0.1``, ``localhost`` and ``[::1]``,
with or without a port; bound to another address, that address only; bound to every
interface (``HOST=0.0.0.0`` or ``::``), any name: it is then meant to be reached by any.
"""

from __future__ import annotations

import ipaddress

# The names a client on this machine uses for loopback, as a Host header carries them.
LOOPBACK_HOST_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
# Addresses that mean "every interface".
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]"})


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
