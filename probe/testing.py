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

TXT records (identity lookups) come from ``txt``.

DNS tampering: ``dns_forged`` maps a name to forged A answers; the resolver then sends a
forged reply first and the real one after it (an on-path injector), and a query for that
name sent to any other address's port 53 gets the forged reply too (followed, as from a
host running no DNS server, by an ICMP port unreachable unless its rule is ``timeout``).

TLS: ``sni_rules`` decide a handshake's fate by the SNI it sends (``reset``, ``timeout``,
``refused``, ``handshake_failure``, ``unknown_authority``), after the address's own rule;
with verification on, a certificate covers only the names of ``names`` (and ``cert_names``),
so a decoy SNI gets ``ssl_invalid_hostname`` as on a real server.

HTTP: :meth:`FakeNetwork.http_client` is an ``httpx.AsyncClient`` on a mock transport:
connects obey the address and SNI rules, ``http_status`` gives a status per host name
(default 200), and a POST of ``application/dns-message`` is answered as a DNS-over-HTTPS
control resolver from ``doh_names`` (default: ``names``). ``http_requests`` records them.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probe.net import TlsInfo

if TYPE_CHECKING:
    import httpx

Rule = str | list[str]
DnsRule = str  # "ok" | "nxdomain" | "servfail" | "refused" | "timeout" | "garbage"

FAKE_RESOLVER = "198.18.0.53"
# The fake world's address space. Both are bogons: endpoints of tests that answer from it
# declare it as their expected networks, as the lab's target copies do.
FAKE_NETWORKS = ("198.18.0.0/15", "2001:db8::/32")


def _raise_for(rule: str) -> None:
    if rule == "refused":
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    if rule == "reset":
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    if rule == "unreachable":
        raise OSError(errno.EHOSTUNREACH, "No route to host")
    if rule == "handshake_failure":
        raise ssl.SSLError(1, "[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] handshake failure")
    if rule == "unknown_authority":
        exc = ssl.SSLCertVerificationError(
            1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
               "unable to get local issuer certificate")
        exc.verify_message = "unable to get local issuer certificate"
        raise exc
    if rule != "ok":
        raise ValueError(f"unknown fake rule {rule!r}")


def _hostname_mismatch(sni: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, "
           f"certificate is not valid for '{sni}'.")
    exc.verify_message = f"Hostname mismatch, certificate is not valid for '{sni}'."
    return exc


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
    dns_forged: dict[str, list[str]] = field(default_factory=dict)
    txt: dict[str, list[str]] = field(default_factory=dict)
    sni_rules: dict[str, Rule] = field(default_factory=dict)
    cert_names: set[str] = field(default_factory=set)
    http_status: dict[str, int] = field(default_factory=dict)
    doh_names: dict[str, list[str]] | None = None
    connects: list[tuple[str, int]] = field(default_factory=list)
    handshakes: list[tuple[str, int, str]] = field(default_factory=list)
    http_requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    udp_sent: list[tuple[str, int]] = field(default_factory=list)
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
        self.handshakes.append((ip, port, sni))
        await self._tls_fate(sni, timeout_s, verify)
        return TlsInfo(version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256",
                       peer_subject=f"commonName={sni}", alpn=None)

    async def _tls_fate(self, sni: str, timeout_s: float, verify: bool) -> None:
        rule = self.sni_rules.get(sni, "ok")
        if isinstance(rule, list):
            n = self._attempts.get((sni, -1), 0)
            self._attempts[(sni, -1)] = n + 1
            rule = rule[min(n, len(rule) - 1)]
        if rule == "timeout":
            await asyncio.sleep(timeout_s)
            raise TimeoutError()
        _raise_for(rule)
        if verify and sni not in self.names and sni not in self.cert_names:
            raise _hostname_mismatch(sni)

    def http_client(self, timeout_s: float, ca_bundle: str | None = None,
                    verify: bool = True) -> httpx.AsyncClient:
        import httpx

        async def handle(request: httpx.Request) -> httpx.Response:
            return await self._http(request, timeout_s, verify)

        return httpx.AsyncClient(transport=httpx.MockTransport(handle), timeout=timeout_s,
                                 follow_redirects=False)

    async def _http(self, request: httpx.Request, timeout_s: float,
                    verify: bool) -> httpx.Response:
        import httpx

        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        sni = request.extensions.get("sni_hostname") or host
        self.http_requests.append((request.method, str(request.url),
                                   request.headers.get("host")))
        self.connects.append((host, port))
        rule = self.rule_for(host, port)
        if rule == "timeout":
            await asyncio.sleep(timeout_s)
            raise httpx.ConnectTimeout("timed out", request=request)
        _raise_for(rule)
        if request.headers.get("content-type") == "application/dns-message":
            zone = self.doh_names if self.doh_names is not None else self.names
            return httpx.Response(200, headers={"content-type": "application/dns-message"},
                                  content=_zone_answer(zone, request.content))
        if request.url.scheme == "https":
            self.handshakes.append((host, port, sni))
            await self._tls_fate(sni, timeout_s, verify)
        name = (request.headers.get("host") or host).split(":")[0]
        return httpx.Response(self.http_status.get(name, 200), content=b"fake\n")

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
        import dns.rdatatype

        if rdtype == dns.rdatatype.TXT and rule == "ok":
            reply = dns.message.make_response(q)
            if name in self.txt:
                quoted = ['"' + t.replace('"', '\\"') + '"' for t in self.txt[name]]
                reply.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "TXT", *quoted))
            else:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            return reply.to_wire()
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
            _add_addresses(reply, name, rdtype, self.names[name])
        return reply.to_wire()

    def forged_answer(self, query: bytes) -> bytes | None:
        """A forged reply for a name in ``dns_forged`` (A queries only, like an injector)."""
        import dns.message
        import dns.rdatatype

        q = dns.message.from_wire(query)
        name = str(q.question[0].name).rstrip(".")
        if name not in self.dns_forged or q.question[0].rdtype != dns.rdatatype.A:
            return None
        reply = dns.message.make_response(q)
        _add_addresses(reply, name, q.question[0].rdtype, self.dns_forged[name])
        return bytes(reply.to_wire())


def _add_addresses(reply: Any, name: str, rdtype: int, addresses: list[str]) -> None:
    import dns.rdatatype
    import dns.rrset

    want = "AAAA" if rdtype == dns.rdatatype.AAAA else "A"
    addrs = [a for a in addresses if (":" in a) == (want == "AAAA")]
    if addrs:
        reply.answer.append(dns.rrset.from_text(name + ".", 60, "IN", want, *addrs))


def _zone_answer(zone: dict[str, list[str]], query: bytes) -> bytes:
    import dns.message
    import dns.rcode

    q = dns.message.from_wire(query)
    name = str(q.question[0].name).rstrip(".")
    reply = dns.message.make_response(q)
    if name not in zone:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    else:
        _add_addresses(reply, name, q.question[0].rdtype, zone[name])
    return bytes(reply.to_wire())


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
        net.udp_sent.append((self._ip, self._port))
        if self._port == 53:
            forged = net.forged_answer(data) if net.dns_forged else None
            if forged is not None:
                self._inbox.put_nowait(forged)
        if self._ip == net.resolver and self._port == 53:
            reply = net.dns_answer(data)
            if reply is not None:
                delay = net.dns_delay_s or (0.01 if net.dns_forged else 0.0)
                if delay:
                    asyncio.get_running_loop().call_later(delay, self._inbox.put_nowait, reply)
                else:
                    self._inbox.put_nowait(reply)
            return
        if self._port == 53:  # no DNS server at this address
            if net.rule_for(self._ip, self._port) != "timeout":
                self._inbox.put_nowait(ConnectionRefusedError(errno.ECONNREFUSED,
                                                              "port unreachable"))
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
