"""The lab's censor: named rules, one function each (the lab's counterpart of OONI's netem
DPI rules), and everything that installs, starts, counts and clears them.

Packet rules live in the censor namespace (hop 2): an nftables table ``inet censor`` with a
``forward`` chain (every rule has a counter, see :func:`rule_counters`), iptables-nft for
the ``string`` match (SNI filtering, STUN REALM DPI), and the scapy injector
(:mod:`probe.lab.injector`) for on-path DNS and TCP RST injection. Resolver rules change
the lab resolver's zone (:mod:`probe.lab.dns`).

The censor works on a :class:`CensorHost`: what it needs of a lab (run a command in the
censor namespace, spawn and stop a helper process there, the resolver's zone, the lab's
hosts and addresses). :class:`probe.lab.lab.Lab` is one; this module imports nothing of it.

Each rule is ``rule(lab, sel, **params)`` where ``sel`` is a :class:`Selection` (addresses,
host names and ports the rule targets, resolved by :func:`select` from ``service``/
``function``/``hosts``/``addresses``/``ports`` keys). :data:`RULES` maps the names used in
scenario files to the functions and to the keys each accepts; :func:`apply` applies one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from probe import stun
from probe.lab import addresses as A
from probe.lab.dns import DnsZone
from probe.lab.dpi.nfq import DEFAULT_QUEUE, CensorConfig
from probe.lab.labtargets import LabTargets
from probe.lab.netns import LabError


class CensorHost(Protocol):
    """What the censor needs of a lab (:class:`probe.lab.lab.Lab` satisfies it)."""

    @property
    def dir(self) -> Path:
        """The lab's state directory (helpers' configuration files go there)."""

    @property
    def dns(self) -> DnsZone:
        """The lab resolver's zone; resolver rules change it, then :meth:`reload_dns`."""

    @property
    def targets(self) -> LabTargets:
        """The lab's hosts and their addresses, by service and function."""

    def censor_exec(self, args: list[str], **kwargs: Any) -> Any:
        """Run a command in the censor's namespace (``input_text=`` feeds its stdin)."""

    def spawn(self, role: str, name: str, args: list[str], ready: str | None = None,
              timeout_s: float = 10.0) -> None:
        """Start a helper process ``name`` in ``role``'s namespace; wait for ``ready``."""

    def stop(self, name: str) -> None:
        """Stop the helper process ``name``."""

    def processes(self) -> list[str]:
        """The names of the helper processes running."""

    def reload_dns(self) -> None:
        """Serve the zone as it is now."""


NFT_BASE = """\
table inet censor {
    chain forward {
        type filter hook forward priority 0; policy accept;
    }
}
"""
# The STUN magic cookie, 4 bytes into the UDP payload (8-byte header + 4).
STUN_COOKIE = f"@th,96,32 {stun.MAGIC_COOKIE:#010x}"


@dataclass(frozen=True)
class AppStun:
    """What marks one app's STUN for a DPI engine, looked for only in STUN datagrams (the
    magic cookie 4 bytes into the UDP payload). One definition for the lab's rules and for
    the fake network's censor (:mod:`probe.testing`)."""

    types: tuple[tuple[int, int], ...] = ()             # message type ranges (payload 0-1)
    first_attributes: tuple[tuple[int, int], ...] = ()  # first attribute's type (payload 20-21)
    realm: str | None = None                            # a string anywhere in the datagram

    def matches(self, payload: bytes) -> bool:
        """Whether the lab's ``app_stun_dpi`` rule for this flavour drops ``payload``."""
        if not is_stun(payload):
            return False
        msg_type = int.from_bytes(payload[0:2], "big")
        first = int.from_bytes(payload[20:22], "big") if len(payload) >= 22 else None
        return (any(lo <= msg_type <= hi for lo, hi in self.types)
                or (first is not None and any(lo <= first <= hi
                                              for lo, hi in self.first_attributes))
                or (self.realm is not None and self.realm.encode() in payload))

    def nft_matches(self) -> list[str]:
        """The nftables payload matches (one rule each) for the types and first attributes."""
        return [f"{field} {_nft_values(ranges)}" for field, ranges in (
            ("@th,64,16", self.types), ("@th,224,16", self.first_attributes)) if ranges]


def _nft_values(ranges: tuple[tuple[int, int], ...]) -> str:
    items = [f"{lo:#06x}" if lo == hi else f"{lo:#06x}-{hi:#06x}" for lo, hi in ranges]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def is_stun(payload: bytes) -> bool:
    """A UDP payload carrying the STUN magic cookie (what ``stun_dpi`` drops)."""
    return len(payload) >= 8 and payload[4:8] == stun.MAGIC_COOKIE.to_bytes(4, "big")


APP_STUN: dict[str, AppStun] = {
    # WhatsApp's non-IANA STUN message types and attributes (research/endpoints.md, nDPI S6).
    "whatsapp": AppStun(types=((0x0800, 0x0802),), first_attributes=((0x4000, 0x4007),)),
    # Teams/Skype: a first attribute among Microsoft's (nDPI "Skype_TeamsCall").
    "teams": AppStun(first_attributes=tuple((a, a) for a in (0x8054, 0x8055, 0x8070, 0x8095))),
    # A REALM naming the app (iptables string match).
    "viber": AppStun(realm="viber"),
    "google": AppStun(realm="google.com"),
    "signal": AppStun(realm="signal.org"),
}


@dataclass
class Selection:
    addresses: list[str] = field(default_factory=list)  # empty: any address
    hosts: list[str] = field(default_factory=list)      # host names (DNS rules)
    ports: list[int] = field(default_factory=list)      # empty: any port

    def nft_daddr(self) -> str:
        return f"ip daddr {{ {', '.join(self.addresses)} }} " if self.addresses else ""

    def nft_saddr(self) -> str:
        return f"ip saddr {{ {', '.join(self.addresses)} }} " if self.addresses else ""

    def nft_dport(self, proto: str) -> str:
        if not self.ports:
            return f"meta l4proto {proto} "
        return f"{proto} dport {{ {', '.join(str(p) for p in self.ports)} }} "


def nft(lab: CensorHost, script: str) -> None:
    lab.censor_exec(["nft", "-f", "-"], input_text=script)


def iptables(lab: CensorHost, args: list[str]) -> None:
    lab.censor_exec(["iptables", *args])


def _nft(lab: CensorHost, *rules: str) -> None:
    nft(lab, "".join(f"add rule inet censor forward {rule} counter {verdict}\n"
                     for rule, verdict in (r.rsplit(" | ", 1) for r in rules)))


def drop_endpoint(lab: CensorHost, sel: Selection, proto: str = "tcp") -> None:
    """Silently drop packets to the selected addresses (and ports): a blackhole."""
    _nft(lab, f"{sel.nft_daddr()}{sel.nft_dport(proto)}| drop")


def reset_endpoint(lab: CensorHost, sel: Selection) -> None:
    """Answer TCP SYNs to the selected endpoints with a RST (the client sees a reset)."""
    _nft(lab, f"{sel.nft_daddr()}{sel.nft_dport('tcp')}| reject with tcp reset")


def reject_endpoint(lab: CensorHost, sel: Selection, proto: str = "tcp") -> None:
    """Answer with ICMP admin-prohibited (what a filtering router that says so sends)."""
    _nft(lab, f"{sel.nft_daddr()}{sel.nft_dport(proto)}| reject with icmp type admin-prohibited")


def drop_udp_ports(lab: CensorHost, sel: Selection) -> None:
    """Drop UDP to the selected ports (any address unless selected)."""
    _nft(lab, f"{sel.nft_daddr()}{sel.nft_dport('udp')}| drop")


def reject_udp_ports(lab: CensorHost, sel: Selection) -> None:
    """Answer UDP to the selected ports (any address unless selected) with ICMP port
    unreachable from the censor (iptables ``-j REJECT``'s default): the client is told
    "nothing listens" by a router on the path, not by the server."""
    _nft(lab, f"{sel.nft_daddr()}{sel.nft_dport('udp')}| reject with icmp type "
              "port-unreachable")


def stun_dpi(lab: CensorHost, sel: Selection) -> None:
    """Drop any UDP datagram carrying the STUN magic cookie (any port unless selected);
    random bytes on the same 5-tuple pass."""
    _nft(lab, f"{sel.nft_daddr()}{sel.nft_dport('udp')}{STUN_COOKIE} | drop")


def app_stun_dpi(lab: CensorHost, sel: Selection, flavor: str = "whatsapp") -> None:
    """Drop app-flavoured STUN only (:data:`APP_STUN`): WhatsApp's message types
    0x0800-0x0802 or a first attribute in 0x4000-0x4007, Teams' Microsoft first attributes
    (nft payload matches), or a REALM string (iptables string match) for
    ``viber``/``google``/``signal``. Plain RFC 8489 STUN passes."""
    marker = APP_STUN[flavor]
    if marker.nft_matches():
        _nft(lab, *(f"{sel.nft_daddr()}{sel.nft_dport('udp')}{STUN_COOKIE} {match} | drop"
                    for match in marker.nft_matches()))
    if marker.realm is None:
        return
    for address in sel.addresses or ["0.0.0.0/0"]:
        args = ["-A", "FORWARD", "-p", "udp", "-d", address]
        if sel.ports:
            args += ["-m", "multiport", "--dports", ",".join(str(p) for p in sel.ports)]
        # Only STUN datagrams (the cookie 4 bytes into the UDP payload of an option-less
        # IPv4 packet, bytes 32-35), as a DPI engine classifies STUN first: a DNS query for
        # a name containing the realm must not be caught.
        iptables(lab, [*args, "-m", "string", "--hex-string", f"|{stun.MAGIC_COOKIE:08x}|",
                       "--algo", "bm", "--from", "32", "--to", "36", "-m", "string",
                       "--string", marker.realm, "--algo", "bm", "-j", "DROP"])


NDPI_PREFIX = "ndpi-"


def _queue_rules(sel: Selection, queue: int) -> list[list[str]]:
    """iptables arguments queueing the selected UDP, both directions (nftables' own
    ``queue`` statement needs the nft_queue module, which not every kernel has; iptables-nft
    uses xt_NFQUEUE)."""
    target = ["-j", "NFQUEUE", "--queue-num", str(queue)]
    if not sel.addresses and not sel.ports:
        return [["-A", "FORWARD", "-p", "udp", *target]]
    ports = ",".join(str(p) for p in sel.ports)
    rules = []
    for addr_flag, port_flag in (("-d", "--dports"), ("-s", "--sports")):
        for address in sel.addresses or [""]:
            args = ["-A", "FORWARD", "-p", "udp"]
            if address:
                args += [addr_flag, address]
            if ports:
                args += ["-m", "multiport", port_flag, ports]
            rules.append([*args, *target])
    return rules


def ndpi_block(lab: CensorHost, sel: Selection, apps: list[str] | None = None,
               residual_s: int = 0, passive: bool = False, inspect_packets: int = 10) -> Path:
    """A real DPI engine inline: drop the UDP flows nDPI labels with one of ``apps``
    (``WhatsAppCall``, ``STUN.ViberVoip``, ...), run as :mod:`probe.lab.dpi.nfq` in the
    censor namespace behind an NFQUEUE (both directions of the selected UDP, after the
    process said ``ready``; nothing bypasses the queue, so a dead censor drops the queued
    UDP and shows in every test). ``residual_s``: block the client's 3-tuple to that server
    port for that long after a detection; ``passive``: a tap, the revealing packet passes.
    Returns the censor's log (its decisions, :func:`probe.lab.dpi.rule.decisions`)."""
    index = len(list(lab.dir.glob(f"{NDPI_PREFIX}*.json"))) + 1
    name = f"{NDPI_PREFIX}{index}"
    queue = DEFAULT_QUEUE + index - 1
    config: dict[str, Any] = {"block": list(apps or []), "residual_s": residual_s,
                              "passive": passive, "inspect_packets": inspect_packets,
                              "queue": queue}
    CensorConfig.from_json(config)  # a bad option fails here, before anything starts
    path = lab.dir / f"{name}.json"
    path.write_text(json.dumps(config))
    lab.spawn("censor", name, [sys.executable, "-m", "probe.lab.dpi.nfq", str(path)],
              ready="ready", timeout_s=30)
    for args in _queue_rules(sel, queue):
        iptables(lab, args)
    return lab.dir / "logs" / f"{name}.log"


def sni_reset(lab: CensorHost, sel: Selection) -> None:
    """Reset TLS connections whose ClientHello names a selected host (iptables string
    match on the SNI, REJECT with tcp-reset); the same address with another SNI passes."""
    for host in sel.hosts:
        args = ["-A", "FORWARD", "-p", "tcp"]
        if sel.ports:
            args += ["-m", "multiport", "--dports", ",".join(str(p) for p in sel.ports)]
        iptables(lab, [*args, "-m", "string", "--string", host, "--algo", "bm",
                       "-j", "REJECT", "--reject-with", "tcp-reset"])


def sni_residual(lab: CensorHost, sel: Selection, seconds: int = 10) -> None:
    """Like ``sni_reset``, and then keep resetting every new TCP connection to that server
    (the selected ports, or any) for ``seconds`` after the last trigger, whatever its SNI:
    GFW-style residual blocking (iptables ``recent`` match remembers the server address)."""
    ports = ["-m", "multiport", "--dports", ",".join(str(p) for p in sel.ports)] \
        if sel.ports else []
    recent = ["-m", "recent", "--name", "vpresidual", "--rdest"]
    reset = ["-j", "REJECT", "--reject-with", "tcp-reset"]
    iptables(lab, ["-A", "FORWARD", "-p", "tcp", *ports, *recent, "--rcheck", "--seconds",
                   str(seconds), *reset])
    for host in sel.hosts:
        iptables(lab, ["-A", "FORWARD", "-p", "tcp", *ports, "-m", "string", "--string", host,
                       "--algo", "bm", *recent, "--set", *reset])


def dns_nxdomain(lab: CensorHost, sel: Selection) -> None:
    """The resolver answers NXDOMAIN for the selected names."""
    lab.dns.nxdomain.update(sel.hosts)
    lab.reload_dns()


def dns_servfail(lab: CensorHost, sel: Selection) -> None:
    """The resolver answers SERVFAIL for the selected names."""
    lab.dns.servfail.update(sel.hosts)
    lab.reload_dns()


def dns_bogon(lab: CensorHost, sel: Selection, answer: str = A.BOGON_ANSWER) -> None:
    """The resolver answers the selected names with a bogon address."""
    for host in sel.hosts:
        lab.dns.bogon[host] = answer
    lab.reload_dns()


def dns_injection(lab: CensorHost, sel: Selection, answer: str = A.INJECTED_ANSWER) -> None:
    """An on-path injector on the censor answers queries for the selected names with a
    forged reply that wins the race; the real answer still arrives afterwards."""
    start_injector(lab, "dns", names=sel.hosts, answer=answer)


def rst_injection(lab: CensorHost, sel: Selection) -> None:
    """An on-path injector on the censor forges RSTs (to both ends) for TCP connections
    to the selected endpoints, or for those whose payload names a selected host."""
    start_injector(lab, "rst", addresses=sel.addresses, ports=sel.ports, names=sel.hosts)


def random_loss(lab: CensorHost, sel: Selection, percent: int = 10) -> None:
    """Drop ``percent`` % of forwarded packets at random, both directions (nft numgen)."""
    if sel.addresses:
        _nft(lab, f"{sel.nft_daddr()}numgen random mod 100 < {percent} | drop",
             f"{sel.nft_saddr()}numgen random mod 100 < {percent} | drop")
    else:
        _nft(lab, f"numgen random mod 100 < {percent} | drop")


def throttle(lab: CensorHost, sel: Selection, kbytes_per_s: int = 16) -> None:
    """Police traffic to and from the selected addresses (or all) to a rate (nft limit)."""
    _nft(lab, f"{sel.nft_daddr()}limit rate over {kbytes_per_s} kbytes/second | drop",
         f"{sel.nft_saddr()}limit rate over {kbytes_per_s} kbytes/second | drop")


def throttle_udp_ports(lab: CensorHost, sel: Selection, kbytes_per_s: int = 4) -> None:
    """Police UDP to and from the selected ports (all ports if none) to a rate, shared by
    every flow (nft limit): a call connects, then its media starves. Other UDP passes."""
    ports = ", ".join(str(p) for p in sel.ports)
    dport = f"udp dport {{ {ports} }} " if ports else "meta l4proto udp "
    sport = f"udp sport {{ {ports} }} " if ports else "meta l4proto udp "
    # A small burst (2 kB): a policer, not a buffer that lets the first second through.
    limit = f"limit rate over {kbytes_per_s} kbytes/second burst 2 kbytes"
    _nft(lab, f"{sel.nft_daddr()}{dport}{limit} | drop", f"{sel.nft_saddr()}{sport}{limit} | drop")


def offline(lab: CensorHost, sel: Selection) -> None:
    """Drop everything the censor forwards: the network is down."""
    _nft(lab, " | drop")


@dataclass(frozen=True)
class RuleSpec:
    fn: Callable[..., object]
    params: dict[str, type]            # extra keys and their types
    needs: str                         # "addresses", "hosts", or "" (no selection needed)
    at: tuple[str, ...] = ("censor",)  # where it may be applied


RULES: dict[str, RuleSpec] = {
    "drop_endpoint": RuleSpec(drop_endpoint, {"proto": str}, "addresses"),
    "reset_endpoint": RuleSpec(reset_endpoint, {}, "addresses"),
    "reject_endpoint": RuleSpec(reject_endpoint, {"proto": str}, "addresses"),
    "drop_udp_ports": RuleSpec(drop_udp_ports, {}, ""),
    "reject_udp_ports": RuleSpec(reject_udp_ports, {}, ""),
    "stun_dpi": RuleSpec(stun_dpi, {}, ""),
    "app_stun_dpi": RuleSpec(app_stun_dpi, {"flavor": str}, ""),
    "sni_reset": RuleSpec(sni_reset, {}, "hosts"),
    "sni_residual": RuleSpec(sni_residual, {"seconds": int}, "hosts"),
    "dns_nxdomain": RuleSpec(dns_nxdomain, {}, "hosts", ("resolver",)),
    "dns_servfail": RuleSpec(dns_servfail, {}, "hosts", ("resolver",)),
    "dns_bogon": RuleSpec(dns_bogon, {"answer": str}, "hosts", ("resolver",)),
    "dns_injection": RuleSpec(dns_injection, {"answer": str}, "hosts"),
    "rst_injection": RuleSpec(rst_injection, {}, ""),
    "random_loss": RuleSpec(random_loss, {"percent": int}, ""),
    "throttle": RuleSpec(throttle, {"kbytes_per_s": int}, ""),
    "throttle_udp_ports": RuleSpec(throttle_udp_ports, {"kbytes_per_s": int}, ""),
    "offline": RuleSpec(offline, {}, ""),
    "ndpi_block": RuleSpec(ndpi_block, {"apps": list, "residual_s": int, "passive": bool}, ""),
}
PARAM_CHOICES: dict[str, tuple[Any, ...]] = {
    "proto": ("tcp", "udp"),
    "flavor": tuple(APP_STUN),
}


def install(lab: CensorHost) -> None:
    """An empty censor: the ``inet censor`` table with its accepting ``forward`` chain."""
    nft(lab, NFT_BASE)


def select(lab: CensorHost, service: str | None = None, function: str | None = None,
           hosts: list[str] | None = None, addresses: list[str] | None = None,
           ports: list[int] | None = None) -> Selection:
    """The addresses/hosts a rule targets: a service (and function), or explicit hosts
    and addresses. Unknown services or hosts raise :class:`LabError`."""
    names: set[str] = {h.lower().rstrip(".") for h in hosts or []}
    if service is not None or function is not None:
        found = lab.targets.hosts(service, function)
        if not found:
            raise LabError(f"no lab hosts for service={service!r} function={function!r}")
        names |= set(found)
    addrs = set(addresses or [])
    for name in names:
        if name in lab.targets.plan.addresses:
            addrs.add(lab.targets.plan.addresses[name])
    for addr in addrs:
        if not A.in_lab(addr):
            raise LabError(f"address {addr} is outside the lab (198.18.0.0/15)")
    return Selection(addresses=sorted(addrs), hosts=sorted(names),
                     ports=sorted(ports or []))


def apply(lab: CensorHost, rule: str, *, service: str | None = None,
          function: str | None = None, hosts: list[str] | None = None,
          addresses: list[str] | None = None, ports: list[int] | None = None,
          **params: Any) -> Selection:
    """Apply the named rule of :data:`RULES` to what the keys select; returns the selection."""
    if rule not in RULES:
        raise LabError(f"unknown rule {rule!r}; known: {', '.join(sorted(RULES))}")
    sel = select(lab, service, function, hosts, addresses, ports)
    spec = RULES[rule]
    if spec.needs == "addresses" and not sel.addresses:
        raise LabError(f"rule {rule} needs a service, hosts or addresses")
    if spec.needs == "hosts" and not sel.hosts:
        raise LabError(f"rule {rule} needs a service or hosts")
    spec.fn(lab, sel, **params)
    return sel


def start_injector(lab: CensorHost, kind: str, **config: Any) -> None:
    """Start an injector (:mod:`probe.lab.injector`) and the rule holding its triggers."""
    # Numbered after the injectors this lab started before, so no log is overwritten.
    name = f"injector-{kind}-{len(list(lab.dir.glob('injector-*.json'))) + 1}"
    path = lab.dir / f"{name}.json"
    path.write_text(json.dumps(config))
    lab.spawn("censor", name, [sys.executable, "-m", "probe.lab.injector", kind, str(path)],
              ready="ready", timeout_s=30)
    if kind == "dns":
        nft(lab, "add rule inet censor forward iifname down0 udp dport 53 counter drop\n")
    elif config.get("names"):
        for host in config["names"]:
            iptables(lab, ["-A", "FORWARD", "-i", "down0", "-p", "tcp", "-m", "string",
                           "--string", host, "--algo", "bm", "-j", "DROP"])
    else:
        sel = Selection(addresses=config.get("addresses") or [],
                        ports=config.get("ports") or [])
        nft(lab, f"add rule inet censor forward iifname down0 {sel.nft_daddr()}"
                 f"{sel.nft_dport('tcp')}tcp flags & (syn|ack) == syn counter drop\n")


def clear(lab: CensorHost) -> None:
    """Remove every censor rule: flush nftables/iptables, stop injectors and DPI censors,
    clean DNS."""
    for name in [n for n in lab.processes() if n.startswith(("injector-", NDPI_PREFIX))]:
        lab.stop(name)
    lab.censor_exec(["nft", "flush", "ruleset"])
    install(lab)
    had_dns_rules = bool(lab.dns.nxdomain or lab.dns.servfail or lab.dns.bogon)
    lab.dns.clear_rules()
    if had_dns_rules:
        lab.reload_dns()


def rule_counters(lab: CensorHost) -> list[tuple[str, int]]:
    """(rule text, packets matched) for every nftables rule of the censor."""
    out = lab.censor_exec(["nft", "-j", "list", "ruleset"]).stdout
    rows = []
    for item in json.loads(out).get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        packets = sum(e["counter"]["packets"] for e in rule.get("expr", [])
                      if isinstance(e, dict) and "counter" in e)
        rows.append((f"{rule.get('table')}/{rule.get('chain')}#{rule.get('handle')}",
                     packets))
    return rows
