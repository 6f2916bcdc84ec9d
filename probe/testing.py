"""A fake network behind the seam, for unit tests and benchmarks (never proof of blocking).

:class:`FakeNetwork` answers DNS queries sent to its resolver address from a table of
names (real DNS wire format, built with dnspython, so the DNS check's parsing runs for
real), and decides the fate of every TCP connect and UDP flow from per-address rules:

* ``ok``: connects / echoes;
* ``refused``: ECONNREFUSED (a RST answering the SYN, or ICMP port unreachable on UDP);
* ``reset``: ECONNRESET;
* ``timeout``: nothing ever comes back (a blackhole): the call waits out its timeout;
* ``unreachable``: EHOSTUNREACH.

Rules may be a list, consumed one per attempt (the last one repeats), to model a flaky
endpoint that fails once and then works.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from probe.net import TlsInfo

Rule = str | list[str]
DnsRule = str  # "ok" | "nxdomain" | "servfail" | "refused" | "timeout" | "garbage"

FAKE_RESOLVER = "198.18.0.53"


def _raise_for(rule: str) -> None:
    if rule == "refused":
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    if rule == "reset":
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    if rule == "unreachable":
        raise OSError(errno.EHOSTUNREACH, "No route to host")
    if rule != "ok":
        raise ValueError(f"unknown fake rule {rule!r}")


@dataclass
class FakeNetwork:
    names: dict[str, list[str]] = field(default_factory=dict)
    dns_rules: dict[str, DnsRule] = field(default_factory=dict)
    rules: dict[tuple[str, int], Rule] = field(default_factory=dict)
    default_rule: str = "ok"
    dns_default: DnsRule = "ok"
    resolver: str = FAKE_RESOLVER
    dns_delay_s: float = 0.0
    udp_responder: Callable[[str, int, bytes], bytes | None] | None = None
    connects: list[tuple[str, int]] = field(default_factory=list)
    _attempts: dict[tuple[str, int], int] = field(default_factory=dict)

    def system_resolvers(self) -> list[str]:
        return [self.resolver]

    def rule_for(self, ip: str, port: int) -> str:
        rule = self.rules.get((ip, port), self.default_rule)
        if isinstance(rule, list):
            n = self._attempts.get((ip, port), 0)
            self._attempts[(ip, port)] = n + 1
            return rule[min(n, len(rule) - 1)]
        return rule

    async def tcp_connect(self, ip: str, port: int, timeout_s: float) -> _FakeStream:
        self.connects.append((ip, port))
        rule = self.rule_for(ip, port)
        if rule == "timeout":
            await asyncio.sleep(timeout_s)
            raise TimeoutError()
        _raise_for(rule)
        return _FakeStream((self.resolver, 40000))

    async def tls_handshake(self, ip: str, port: int, sni: str, timeout_s: float,
                            ca_bundle: str | None = None, verify: bool = True,
                            alpn: Sequence[str] = ()) -> TlsInfo:
        await self.tcp_connect(ip, port, timeout_s)
        return TlsInfo(version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256",
                       peer_subject=f"commonName={sni}", alpn=None)

    async def udp_open(self, ip: str, port: int) -> _FakeUdpFlow:
        return _FakeUdpFlow(self, ip, port)

    # DNS server behind the fake resolver address.
    def dns_answer(self, query: bytes) -> bytes | None:
        import dns.message
        import dns.rcode
        import dns.rrset

        q = dns.message.from_wire(query)
        name = str(q.question[0].name).rstrip(".")
        rdtype = q.question[0].rdtype
        rule = self.dns_rules.get(name, self.dns_default)
        if rule == "timeout":
            return None
        if rule == "garbage":
            return b"\x00\x01garbage"
        reply = dns.message.make_response(q)
        if rule == "nxdomain" or (rule == "ok" and name not in self.names):
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif rule == "servfail":
            reply.set_rcode(dns.rcode.SERVFAIL)
        elif rule == "refused":
            reply.set_rcode(dns.rcode.REFUSED)
        else:
            import dns.rdatatype

            want = "AAAA" if rdtype == dns.rdatatype.AAAA else "A"
            addrs = [a for a in self.names[name] if (":" in a) == (want == "AAAA")]
            if addrs:
                reply.answer.append(dns.rrset.from_text(name + ".", 60, "IN", want, *addrs))
        return reply.to_wire()


class _FakeStream:
    def __init__(self, local: tuple[str, int]) -> None:
        self.local_address = local

    async def write(self, data: bytes) -> None:
        return None

    async def read(self, max_bytes: int, timeout_s: float) -> bytes:
        await asyncio.sleep(timeout_s)
        raise TimeoutError()

    async def close(self) -> None:
        return None


class _FakeUdpFlow:
    def __init__(self, net: FakeNetwork, ip: str, port: int) -> None:
        self._net = net
        self._ip = ip
        self._port = port
        self._inbox: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self.local_address = ("198.18.0.2", 50000)

    async def send(self, data: bytes) -> None:
        net = self._net
        if self._ip == net.resolver and self._port == 53:
            reply = net.dns_answer(data)
            if reply is not None:
                if net.dns_delay_s:
                    asyncio.get_running_loop().call_later(net.dns_delay_s,
                                                          self._inbox.put_nowait, reply)
                else:
                    self._inbox.put_nowait(reply)
            return
        rule = net.rule_for(self._ip, self._port)
        if rule in ("timeout",):
            return
        if rule != "ok":
            try:
                _raise_for(rule)
            except OSError as exc:
                self._inbox.put_nowait(exc)
            return
        reply = net.udp_responder(self._ip, self._port, data) if net.udp_responder else data
        if reply is not None:
            self._inbox.put_nowait(reply)

    async def recv(self, timeout_s: float) -> bytes:
        item = await asyncio.wait_for(self._inbox.get(), max(timeout_s, 0.0))
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        return None
