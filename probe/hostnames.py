"""Host names and address literals: what a target, an option or a config may name.

RFC 1123 host names (letters, digits and hyphens in labels of at most 63 characters, 253
in all) or literal IPv4/IPv6 addresses. Used by the targets loader, the command line and
the runner; imports nothing of the project.
"""

from __future__ import annotations

import ipaddress
import re

_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def valid_hostname(name: str) -> bool:
    """A DNS host name (RFC 1123 labels) or a literal IPv4/IPv6 address."""
    if is_ip_literal(name):
        return True
    if len(name) > 253 or not name or name.endswith(".."):
        return False
    labels = name.rstrip(".").split(".")
    return len(labels) >= 1 and all(_LABEL_RE.match(label) for label in labels)


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def ipv4_first(addresses: list[str]) -> list[str]:
    """IPv4 addresses before IPv6 ones, each in their order: a host without IPv6 would
    see its AAAA addresses fail with ``network_unreachable``, which says nothing."""
    return [a for a in addresses if ":" not in a] + [a for a in addresses if ":" in a]
