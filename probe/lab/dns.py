"""The lab resolver: dnsmasq (Debian ``dnsmasq-base``) serving the lab zone.

The configuration is generated from a :class:`DnsZone`: one ``host-record`` per lab host
(the real host names answered with lab addresses), ``txt-record`` entries added with
:meth:`DnsZone.add_txt` (identity/ASN lookups), and the resolver-side censor rules:
NXDOMAIN (``address=/name/``), SERVFAIL (the name is forwarded to an upstream that answers
SERVFAIL, see :mod:`probe.lab.servers`) and bogon answers (the record's address replaced).
Every other name is NXDOMAIN (``address=/#/``). dnsmasq is restarted when the zone changes.

dnsmasq runs as root and reads one directive per line: every name, address and text is
checked as it is written (:func:`_safe_name`, :func:`_safe_address`), so nothing a scenario
or a targets file says can add a directive (``conf-file=``, ``log-facility=`` ...), even if
the loaders that validate them first let something through.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from probe.hostnames import has_control_chars
from probe.lab import addresses as A

# Labels of letters, digits, "-" and "_" (service names such as _stun._udp): nothing that
# dnsmasq reads as a separator ("/", ",", "#", spaces) or as the end of a line.
_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*")


@dataclass
class DnsZone:
    records: dict[str, list[str]] = field(default_factory=dict)  # name -> A records
    txt: dict[str, list[str]] = field(default_factory=dict)
    nxdomain: set[str] = field(default_factory=set)
    servfail: set[str] = field(default_factory=set)
    bogon: dict[str, str] = field(default_factory=dict)  # name -> address answered instead

    def add_a(self, name: str, address: str) -> None:
        self.records.setdefault(_norm(name), [])
        if address not in self.records[_norm(name)]:
            self.records[_norm(name)].append(address)

    def add_txt(self, name: str, text: str) -> None:
        self.txt.setdefault(_norm(name), []).append(text)

    def clear_rules(self) -> None:
        self.nxdomain.clear()
        self.servfail.clear()
        self.bogon.clear()

    def dnsmasq_conf(self, listen: str = A.RESOLVER) -> str:
        lines = ["no-resolv", "no-hosts", "no-negcache", "cache-size=0", "bind-interfaces",
                 f"listen-address={_safe_address(listen)}", "port=53", "log-queries",
                 "log-facility=-"]
        for name in sorted(self.records):
            if name in self.nxdomain or name in self.servfail:
                continue
            addrs = [self.bogon[name]] if name in self.bogon else self.records[name]
            lines += [f"host-record={_safe_name(name)},{_safe_address(addr)}" for addr in addrs]
        for name in sorted(self.bogon.keys() - self.records.keys()):
            lines.append(f"host-record={_safe_name(name)},{_safe_address(self.bogon[name])}")
        for name in sorted(self.txt):
            for text in self.txt[name]:
                if has_control_chars(text):
                    raise ValueError(f"dnsmasq TXT record for {name!r}: {text!r} holds a "
                                     "control character")
                quoted = text.replace("\\", "\\\\").replace('"', '\\"')
                lines.append(f'txt-record={_safe_name(name)},"{quoted}"')
        for name in sorted(self.nxdomain):
            lines.append(f"address=/{_safe_name(name)}/")
        for name in sorted(self.servfail):
            lines.append(f"server=/{_safe_name(name)}/{_safe_address(A.SERVFAIL_UPSTREAM)}")
        lines.append("address=/#/")  # everything else: NXDOMAIN, never forwarded
        return "\n".join(lines) + "\n"


def _norm(name: str) -> str:
    return name.lower().rstrip(".")


def _safe_name(name: str) -> str:
    """``name`` if dnsmasq can only read it as one name; ValueError otherwise."""
    if not _NAME_RE.fullmatch(name) or len(name) > 253:
        raise ValueError(f"refusing to write {name!r} into the dnsmasq configuration: "
                         "not a host name")
    return name


def _safe_address(address: str) -> str:
    """``address`` if it is a plain IPv4/IPv6 address; ValueError otherwise."""
    try:
        ipaddress.ip_address(address)
        ok = re.fullmatch(r"[0-9A-Fa-f:.]+", address) is not None  # no "%scope"
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"refusing to write {address!r} into the dnsmasq configuration: "
                         "not an IP address")
    return address
