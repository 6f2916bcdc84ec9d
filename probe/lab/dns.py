"""The lab resolver: dnsmasq (Debian ``dnsmasq-base``) serving the lab zone.

The configuration is generated from a :class:`DnsZone`: one ``host-record`` per lab host
(the real host names answered with lab addresses), ``txt-record`` entries added with
:meth:`DnsZone.add_txt` (identity/ASN lookups), and the resolver-side censor rules:
NXDOMAIN (``address=/name/``), SERVFAIL (the name is forwarded to an upstream that answers
SERVFAIL, see :mod:`probe.lab.servers`) and bogon answers (the record's address replaced).
Every other name is NXDOMAIN (``address=/#/``). dnsmasq is restarted when the zone changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from probe.lab import addresses as A


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
                 f"listen-address={listen}", "port=53", "log-queries", "log-facility=-"]
        for name in sorted(self.records):
            if name in self.nxdomain or name in self.servfail:
                continue
            addrs = [self.bogon[name]] if name in self.bogon else self.records[name]
            lines += [f"host-record={name},{addr}" for addr in addrs]
        for name in sorted(self.bogon.keys() - self.records.keys()):
            lines.append(f"host-record={name},{self.bogon[name]}")
        for name in sorted(self.txt):
            for text in self.txt[name]:
                quoted = text.replace("\\", "\\\\").replace('"', '\\"')
                lines.append(f'txt-record={name},"{quoted}"')
        for name in sorted(self.nxdomain):
            lines.append(f"address=/{name}/")
        for name in sorted(self.servfail):
            lines.append(f"server=/{name}/{A.SERVFAIL_UPSTREAM}")
        lines.append("address=/#/")  # everything else: NXDOMAIN, never forwarded
        return "\n".join(lines) + "\n"


def _norm(name: str) -> str:
    return name.lower().rstrip(".")
