"""Host names and address literals: what a target, an option or a config may name.

RFC 1123 host names (letters, digits and hyphens in labels of at most 63 characters, 253
in all) or literal IPv4/IPv6 addresses. Used by the targets loader, the command line, the
lab and the runner; imports nothing of the project.

Names end up in configuration files of other programs (the lab's dnsmasq, nftables and
iptables run as root): a newline or another control character in one would start a new
directive there, so no name here may hold one (:func:`has_control_chars`), and patterns
match whole strings (``$`` would accept a trailing newline).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_SCOPE_RE = re.compile(r"[A-Za-z0-9_.-]{0,15}")
# Control characters (C0, DEL, C1), invisible format characters (bidi overrides ...) and
# the Unicode line and paragraph separators, which str.splitlines() also breaks on.
_CONTROL_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}


def has_control_chars(text: str) -> bool:
    """Whether ``text`` holds a newline, another control character or an invisible one."""
    return any(unicodedata.category(c) in _CONTROL_CATEGORIES for c in text)


def valid_hostname(name: str) -> bool:
    """A DNS host name (RFC 1123 labels) or a literal IPv4/IPv6 address."""
    if not isinstance(name, str) or has_control_chars(name) or " " in name:
        return False
    if is_ip_literal(name):
        return True
    if len(name) > 253 or not name or name.endswith(".."):
        return False
    labels = name.rstrip(".").split(".")
    return len(labels) >= 1 and all(_LABEL_RE.fullmatch(label) for label in labels)


def valid_dns_name(name: str) -> bool:
    """A DNS host name only (no address literal): what a resolver may be told to answer."""
    return valid_hostname(name) and not is_ip_literal(name)


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    # ipaddress takes anything after "%" as an IPv6 scope id: an interface name or number.
    return _SCOPE_RE.fullmatch(name.partition("%")[2]) is not None


def ipv4_first(addresses: list[str]) -> list[str]:
    """IPv4 addresses before IPv6 ones, each in their order: a host without IPv6 would
    see its AAAA addresses fail with ``network_unreachable``, which says nothing."""
    return [a for a in addresses if ":" not in a] + [a for a in addresses if ":" in a]
