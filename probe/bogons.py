"""The bogon list: addresses no public service answers from.

OONI's netxlite bogon list (``netxlite/bogon.go``, taken from ipinfo.io/bogon): an answer
inside it is a forged DNS answer, unless it lies inside the target's
``expected_networks`` (the censorship lab lives in 198.18.0.0/15, itself a bogon).
Imports nothing of the project.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

# OONI netxlite bogon list (ipinfo.io/bogon), IPv4 then IPv6.
BOGON_NETWORKS: tuple[str, ...] = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "127.0.53.53/32",
    "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128", "::1/128", "::ffff:0:0/96", "::/96", "100::/64", "2001:10::/28",
    "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    # 6to4 and Teredo addresses that embed an IPv4 bogon.
    "2002::/24", "2002:a00::/24", "2002:7f00::/24", "2002:a9fe::/32", "2002:ac10::/28",
    "2002:c000::/40", "2002:c000:200::/40", "2002:c0a8::/32", "2002:c612::/31",
    "2002:c633:6400::/40", "2002:cb00:7100::/40", "2002:e000::/20", "2002:f000::/20",
    "2002:ffff:ffff::/48", "2001::/40", "2001:0:a00::/40", "2001:0:7f00::/40",
    "2001:0:a9fe::/48", "2001:0:ac10::/44", "2001:0:c000::/56", "2001:0:c000:200::/56",
    "2001:0:c0a8::/48", "2001:0:c612::/47", "2001:0:c633:6400::/56",
    "2001:0:cb00:7100::/56", "2001:0:e000::/36", "2001:0:f000::/36",
    "2001:0:ffff:ffff::/64",
)

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=1)
def _bogons() -> tuple[Net, ...]:
    return tuple(ipaddress.ip_network(n) for n in BOGON_NETWORKS)


@lru_cache(maxsize=512)
def _networks(expected: tuple[str, ...]) -> tuple[Net, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in expected)


def _inside(address: str, nets: Iterable[Net]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in nets)


def in_expected(address: str, expected: Sequence[str]) -> bool:
    return _inside(address, _networks(tuple(expected)))


def is_bogon(address: str, expected: Sequence[str] = ()) -> bool:
    """True for an address in the bogon list, unless it is inside ``expected``."""
    if expected and in_expected(address, expected):
        return False
    return _inside(address, _bogons())
