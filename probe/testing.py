"""A fake network behind the seam, for unit tests and benchmarks (never proof of blocking).

:class:`FakeNetwork` is a small world and, on its path, a censor, kept apart as in the lab.

**The world** (what servers do, whoever asks):

* DNS: the resolver at ``resolver`` answers from ``names`` (A/AAAA) and ``txt`` (TXT) in
  real DNS wire format (dnspython), so the probe's parsing runs for real; a name it does
  not know is NXDOMAIN. ``dns_faults`` makes the resolver itself misbehave for a name:
  ``refused`` (rcode REFUSED) or ``garbage`` (a reply that is no DNS message). No other
  host runs a DNS server: a query to port 53 anywhere else meets ICMP port unreachable.
* TCP: every address accepts connects, unless ``tcp_faults`` says otherwise for
  ``(ip, port)``: ``refused`` (nothing listens: a RST answers the SYN), ``reset`` (the peer
  resets), ``unreachable`` (no route), ``silent`` (nothing ever comes back: the call waits
  out its timeout). A list is consumed one per attempt (the last one repeats): an
  endpoint that fails once and then works.
* TLS: ``tls_faults`` per SNI, as above plus ``handshake_failure`` and
  ``unknown_authority``. With verification on, a certificate covers only the names of
  ``names`` and ``cert_names``, so a decoy SNI gets ``ssl_invalid_hostname`` as from a
  real server.
* HTTP: :meth:`FakeNetwork.http_client` is an ``httpx.AsyncClient`` on a mock transport
  whose connects and handshakes meet the TCP/TLS world and the censor; ``http_status``
  gives a status per host name (default 200); a POST of ``application/dns-message`` is
  answered as a DNS-over-HTTPS control resolver from ``doh_names`` (default: ``names``).
* Streams: a connected TCP (or TLS, :meth:`FakeNetwork.tls_connect`) stream answers what
  is written to it with ``stream_responder(ip, port, data)``: bytes to read back, ``b""``
  for the peer closing, an exception instance for the connection failing, a list of
  those (in order), or None (no answer: a read waits out its timeout).
* UDP: a datagram to ``(ip, port)`` goes to the responder of ``udp[(ip, port)]``, else of
  ``udp_hosts[ip]`` (any port), else (but on port 53: no DNS server) of ``udp_default``;
  without one, nothing answers. A
  responder gets the datagram and returns a reply, a list of replies, an exception (an
  ICMP error, sent by that host: :func:`probe.net.icmp_sender` names it) or None. Every
  flow (:meth:`FakeNetwork.udp_open`) has a source port of its own, as a fresh socket
  has. Ready-made ones: :func:`reflector_responder` (the project's real
  reflector logic), :func:`stun_server` (STUN Binding and TURN Allocate on our codec),
  :func:`icmp_port_unreachable`, :func:`garbage`, :func:`injector`, :func:`silent`.

**The censor** (:class:`Censor`, ``net.censor``) speaks the lab's rule names and selection
keys (:data:`probe.lab.censor.RULES`, :meth:`probe.lab.lab.Lab.apply`), so that a unit
test and a lab test say the same thing the same way::

    net.censor.apply("stun_dpi", ports=[3478])
    net.censor.apply("reset_endpoint", addresses=["198.18.1.1"])
    net.censor.apply("dns_injection", hosts=["chat.test"], answer="198.18.9.9")

Host names select their addresses from ``names``, as the lab selects a host's address.
Each rule acts as the lab's does: packet rules see every datagram in both directions and
match it as the nftables rule does (destination address and port; app-flavoured STUN by
:data:`probe.lab.censor.APP_STUN`, the lab's own definition); TCP rules decide a
connect (a blackhole, a RST answering the SYN, ICMP admin-prohibited); a UDP datagram
``reject_endpoint`` refuses meets an ICMP admin-prohibited sent by the censor
(:data:`CENSOR_ROUTER`), and ``reject_udp_ports`` (the fake's model of iptables ``-j REJECT
--reject-with icmp-port-unreachable`` on the censor) an ICMP port unreachable from there;
``app_stun_dpi`` takes ``residual_s`` here, the residual mode of the lab's nDPI censor
(:func:`probe.lab.dpi.rule.ndpi_block`): once it dropped an app's STUN from the client
to a server address and port, every datagram between the client and that address and
port (new flows too) is dropped for that many seconds of the event loop's clock;
``sni_reset``
resets a handshake whose SNI contains a selected name; the DNS rules change the
resolver's answers; ``dns_injection`` answers first from the path. ``random_loss``,
``throttle`` and ``throttle_udp_ports`` act on UDP datagrams (TCP would retransmit), with
a seeded random generator (``seed``) and token buckets on the event loop's clock shaped
as the kernel's ``limit`` (a second of rate plus the burst). Rules the fake does not model
(:data:`NOT_MODELLED`) are refused with a clear error rather than ignored.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import os
import random
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from probe import reflector, stun
from probe.lab.censor import APP_STUN, PARAM_CHOICES, RULES, Selection, is_stun
from probe.net import TlsInfo, icmp_error, icmp_sender, offer, take, udp_inbox

if TYPE_CHECKING:
    import httpx

Fault = str  # "ok" | "refused" | "reset" | "unreachable" | "silent" | TLS: see _raise_for
Faults = Fault | list[Fault]
Reply = bytes | BaseException
Responder = Callable[[bytes], "Reply | list[Reply] | None"]
StreamReply = Reply | list[Reply] | None

FAKE_RESOLVER = "198.18.0.53"
# The fake world's address space. Both are bogons: endpoints of tests that answer from it
# declare it as their expected networks, as the lab's target copies do.
FAKE_NETWORKS = ("198.18.0.0/15", "2001:db8::/32")
CLIENT = ("198.18.0.2", 50000)  # the probe's address and its first UDP port in the fake world
# The censor's address, as a traceroute from the client sees it in the lab
# (probe.lab.addresses.CENSOR_DOWN): the sender of the ICMP errors its reject rules send.
CENSOR_ROUTER = "198.18.2.2"


# --- the world's UDP responders -------------------------------------------------------

# One reflector for the fake world (its secret lives as long as the process): the probe,
# always at CLIENT's address, gets a cookie from it and is answered as by the real one.
FAKE_REFLECTOR = reflector.Responder()


def reflector_responder(data: bytes) -> bytes | None:
    """The project's reflector (:class:`probe.reflector.Responder`): a cookie for a cookie
    request; for a datagram carrying a token of that cookie, a Binding success to a STUN
    Binding request and an echo of anything else; nothing to unproven datagrams (but
    Binding requests, within the reflector's global budget for them)."""
    return FAKE_REFLECTOR.reply(data, CLIENT)[1]


def stun_server(mapped: tuple[str, int] = CLIENT,
                realm: str = "lab.example") -> Callable[[bytes], bytes | None]:
    """A STUN/TURN server on our codec: Binding success mapping the client to ``mapped``,
    and 401 with REALM and NONCE to an Allocate without credentials (RFC 8656)."""
    def respond(data: bytes) -> bytes | None:
        try:
            req = stun.parse(data)
        except stun.StunParseError:
            return None
        if req.msg_type == stun.BINDING_REQUEST:
            return stun.binding_success(req, mapped).encode(fingerprint=True)
        if req.msg_type == stun.ALLOCATE_REQUEST:
            msg = stun.StunMessage(stun.ALLOCATE_ERROR, req.transaction_id)
            msg.add(stun.ATTR_ERROR_CODE, stun.encode_error_code(401, "Unauthorized"))
            msg.add(stun.ATTR_REALM, realm.encode())
            msg.add(stun.ATTR_NONCE, os.urandom(8).hex().encode())
            return msg.encode(fingerprint=True)
        return None
    return respond


def icmp_port_unreachable(data: bytes) -> BaseException:
    """Nothing listens: the host answers with ICMP port unreachable."""
    return ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")


def garbage(data: bytes) -> bytes:
    """A reply that looks like STUN at first glance and is not."""
    return b"\x01\x01\x00\x08garbage-not-stun"


def injector(data: bytes) -> bytes:
    """A well-formed Binding success with someone else's transaction ID."""
    req = stun.parse(data)
    fake = stun.StunMessage(stun.BINDING_SUCCESS, os.urandom(12))
    fake.add(stun.ATTR_XOR_MAPPED_ADDRESS,
             stun.encode_xor_address("10.10.34.35", 1, fake.transaction_id))
    if fake.transaction_id == req.transaction_id:  # 2**-96: never, but never a match
        return injector(data)
    return fake.encode(fingerprint=True)


def silent(data: bytes) -> None:
    return None


# --- world faults ----------------------------------------------------------------------

def _raise_for(fault: Fault) -> None:
    if fault == "refused":
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    if fault == "reset":
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    if fault == "unreachable":
        raise OSError(errno.EHOSTUNREACH, "No route to host")
    if fault == "handshake_failure":
        raise ssl.SSLError(1, "[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] handshake failure")
    if fault == "unknown_authority":
        exc = ssl.SSLCertVerificationError(
            1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
               "unable to get local issuer certificate")
        exc.verify_message = "unable to get local issuer certificate"
        raise exc
    if fault != "ok":
        raise ValueError(f"unknown fake fault {fault!r}")


async def _suffer(fault: Fault, timeout_s: float,
                  timed_out: Callable[[], BaseException] = TimeoutError) -> None:
    if fault == "silent":
        await asyncio.sleep(timeout_s)
        raise timed_out()
    _raise_for(fault)


def _hostname_mismatch(sni: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, "
           f"certificate is not valid for '{sni}'.")
    exc.verify_message = f"Hostname mismatch, certificate is not valid for '{sni}'."
    return exc


def _under(name: str, names: Sequence[str]) -> bool:
    """``name`` is one of ``names`` or below one (dnsmasq's ``address=/name/``, the
    lab's DNS injector)."""
    name = name.lower().rstrip(".")
    return any(name == n or name.endswith("." + n) for n in names)


# --- the censor --------------------------------------------------------------------------

# Options the fake's rules take beyond the lab rule of the same name, and what they model.
FAKE_PARAMS: dict[str, dict[str, type]] = {
    "app_stun_dpi": {"residual_s": int},  # probe.lab.dpi.rule.ndpi_block(residual_s=...)
}
# Rules only the fake has, each standing for a lab mechanism outside probe.lab.censor.RULES.
FAKE_RULES: dict[str, str] = {
    "reject_udp_ports": "iptables -j REJECT --reject-with icmp-port-unreachable on the censor",
}
NOT_MODELLED = {
    "sni_residual": "residual blocking keeps state across connections; the lab shows it",
    "rst_injection": "forged RSTs race real segments; the lab's injector shows it",
    "ndpi_block": "a real DPI engine's flow state and caches; the lab runs nDPI",
}
# Rules that in the lab select no ports: a unit test selecting ports would mean something
# the lab rule does not do.
_NO_PORTS = {"random_loss", "throttle", "offline", "dns_nxdomain", "dns_servfail",
             "dns_bogon", "dns_injection"}
_TCP_VERDICT: dict[str, Fault] = {"drop_endpoint": "silent", "reset_endpoint": "refused",
                                  "reject_endpoint": "unreachable"}


@dataclass
class _Policer:
    """nftables ``limit rate over``: a token bucket of one second of rate plus the burst,
    full at first; a packet over the rate is dropped and takes no tokens."""

    rate: float  # bytes per second
    tokens: float
    capacity: float
    last: float | None = None

    @classmethod
    def of(cls, kbytes_per_s: int, burst_kbytes: int = 0) -> _Policer:
        rate = kbytes_per_s * 1024.0
        return cls(rate, rate + burst_kbytes * 1024.0, rate + burst_kbytes * 1024.0)

    def over(self, size: int, now: float) -> bool:
        if self.last is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < size:
            return True
        self.tokens -= size
        return False


@dataclass
class _Applied:
    rule: str
    sel: Selection
    params: dict[str, Any]
    policers: dict[str, _Policer] = field(default_factory=dict)
    rngs: dict[tuple[str, str, str, int], random.Random] = field(default_factory=dict)

    def to(self, ip: str, port: int) -> bool:
        """The nft match on destination: ``ip daddr {...}`` and ``dport {...}``, each only
        when selected."""
        return ((not self.sel.addresses or ip in self.sel.addresses)
                and (not self.sel.ports or port in self.sel.ports))


Verdict = Literal["drop", "reject", "port_unreachable"] | None


@dataclass
class Censor:
    """The lab's censor rules over a :class:`FakeNetwork` (see the module docstring)."""

    net: FakeNetwork = field(repr=False)
    seed: int = 1
    applied: list[_Applied] = field(default_factory=list)
    # (client address, server address, server port) -> loop time until which the
    # residual block of an app_stun_dpi rule with residual_s holds
    residual: dict[tuple[str, str, int], float] = field(default_factory=dict)

    def apply(self, rule: str, *, hosts: list[str] | None = None,
              addresses: list[str] | None = None, ports: list[int] | None = None,
              **params: Any) -> Selection:
        """Apply the named rule as :meth:`probe.lab.lab.Lab.apply` does; ValueError for
        what the lab would refuse, and for a rule the fake does not model."""
        if rule in FAKE_RULES:
            spec = RULES["drop_udp_ports"]  # selects as that rule does
        elif rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; known: {', '.join(sorted(RULES))}")
        else:
            spec = RULES[rule]
        if rule in NOT_MODELLED:
            raise ValueError(f"the fake network does not model {rule}: {NOT_MODELLED[rule]}")
        takes = {**spec.params, **FAKE_PARAMS.get(rule, {})}
        defaults = {name: p.default for name, p in
                    inspect.signature(spec.fn).parameters.items() if name in spec.params}
        for key, value in params.items():
            if key not in takes:
                raise ValueError(f"rule {rule} takes no {key!r} (takes: "
                                 f"{', '.join(takes) or 'nothing'})")
            if not isinstance(value, takes[key]) or value not in PARAM_CHOICES.get(
                    key, (value,)):
                raise ValueError(f"rule {rule}: bad {key} {value!r}")
        names = sorted({h.lower().rstrip(".") for h in hosts or []})
        addrs = set(addresses or [])
        for name in names:
            addrs.update(self.net.names.get(name, []))
        sel = Selection(addresses=sorted(addrs), hosts=names, ports=sorted(ports or []))
        if spec.needs == "addresses" and not sel.addresses:
            raise ValueError(f"rule {rule} needs hosts or addresses")
        if spec.needs == "hosts" and not sel.hosts:
            raise ValueError(f"rule {rule} needs hosts")
        if sel.ports and rule in _NO_PORTS:
            raise ValueError(f"rule {rule} selects no ports in the lab")
        self.applied.append(_Applied(rule, sel, {**defaults, **params}))
        return sel

    def clear(self) -> None:
        self.applied.clear()
        self.residual.clear()

    # What the rules do to each kind of traffic.
    def tcp_fate(self, ip: str, port: int) -> Fault | None:
        """A connect to ``ip:port``: ``silent`` (dropped), ``refused`` (a RST answers the
        SYN: what a bare connect reports), ``unreachable`` (ICMP admin-prohibited)."""
        for r in self.applied:
            if r.rule == "offline":
                return "silent"
            if (r.rule in _TCP_VERDICT and r.params.get("proto", "tcp") == "tcp"
                    and r.to(ip, port)):
                return _TCP_VERDICT[r.rule]
        return None

    def tls_fate(self, sni: str, port: int) -> Fault | None:
        """``sni_reset``: the ClientHello names a selected host (a string match)."""
        for r in self.applied:
            if (r.rule == "sni_reset" and (not r.sel.ports or port in r.sel.ports)
                    and any(host in sni.lower() for host in r.sel.hosts)):
                return "reset"
        return None

    def udp_verdict(self, src: tuple[str, int], dst: tuple[str, int], payload: bytes,
                    now: float) -> Verdict:
        """The fate of one datagram from ``src`` to ``dst``, the rules taken in order
        (nft: the first drop or reject ends it)."""
        size = len(payload) + (48 if ":" in dst[0] else 28)  # what nft limit counts
        out = src[0] == CLIENT[0]
        key = (src[0], dst[0], dst[1]) if out else (dst[0], src[0], src[1])
        until = self.residual.get(key)
        if until is not None and now < until:
            return "drop"
        for i, r in enumerate(self.applied):
            verdict = self._udp_rule(i, r, src, dst, payload, size, now)
            if verdict is not None:
                return verdict
        return None

    def _udp_rule(self, i: int, r: _Applied, src: tuple[str, int], dst: tuple[str, int],
                  payload: bytes, size: int, now: float) -> Verdict:
        sel, to = r.sel, r.to(*dst)
        if r.rule == "offline":
            return "drop"
        if r.rule == "drop_endpoint" and r.params["proto"] == "udp" and to:
            return "drop"
        if r.rule == "reject_endpoint" and r.params["proto"] == "udp" and to:
            return "reject"
        if r.rule == "drop_udp_ports" and to:
            return "drop"
        if r.rule == "stun_dpi" and to and is_stun(payload):
            return "drop"
        if r.rule == "app_stun_dpi" and to and APP_STUN[r.params["flavor"]].matches(payload):
            if r.params.get("residual_s"):
                self.residual[(src[0], dst[0], dst[1])] = now + r.params["residual_s"]
            return "drop"
        if r.rule == "reject_udp_ports" and to:
            return "port_unreachable"
        if r.rule == "random_loss":
            # One nft rule per direction (daddr, saddr) when addresses are selected, one for
            # every packet if not. Each draws from a generator of its own per direction and
            # far end, so that a test sees the same drops whatever the interleaving of its
            # flows.
            out = src[0] == CLIENT[0]
            far = dst if out else src
            rules = (("daddr", dst[0]), ("saddr", src[0])) if sel.addresses else (("all", ""),)
            for nft_rule, ip in rules:
                if sel.addresses and ip not in sel.addresses:
                    continue
                key = (nft_rule, "out" if out else "in", *far)
                rng = r.rngs.setdefault(key, random.Random(f"{self.seed}/{i}/{key}"))
                if rng.random() * 100 < r.params["percent"]:
                    return "drop"
            return None
        if r.rule in ("throttle", "throttle_udp_ports"):
            udp_ports = r.rule == "throttle_udp_ports"
            burst = 2 if udp_ports else 0
            for way, (ip, port) in (("to", dst), ("from", src)):
                if sel.addresses and ip not in sel.addresses:
                    continue
                if udp_ports and sel.ports and port not in sel.ports:
                    continue
                policer = r.policers.setdefault(way, _Policer.of(r.params["kbytes_per_s"],
                                                                 burst))
                if policer.over(size, now):
                    return "drop"
        return None

    def resolver_rule(self, name: str) -> tuple[str, str]:
        """What the lab resolver's rules make of a query for ``name``: ``nxdomain``,
        ``servfail``, ``bogon`` (with the address answered instead), or ``""``."""
        for r in self.applied:
            if r.rule in ("dns_nxdomain", "dns_servfail") and _under(name, r.sel.hosts):
                return r.rule.removeprefix("dns_"), ""
            if r.rule == "dns_bogon" and name.lower().rstrip(".") in r.sel.hosts:
                return "bogon", r.params["answer"]
        return "", ""

    def injected(self, query: bytes) -> bytes | None:
        """The on-path injector's forged reply to an A query for a selected name."""
        import dns.message
        import dns.rdatatype

        q = dns.message.from_wire(query)
        name = str(q.question[0].name).rstrip(".")
        if q.question[0].rdtype != dns.rdatatype.A:
            return None
        for r in self.applied:
            if r.rule == "dns_injection" and _under(name, r.sel.hosts):
                reply = dns.message.make_response(q)
                _add_addresses(reply, name, q.question[0].rdtype, [r.params["answer"]])
                return bytes(reply.to_wire())
        return None


# --- the network -----------------------------------------------------------------------

@dataclass
class FakeNetwork:
    names: dict[str, list[str]] = field(default_factory=dict)
    txt: dict[str, list[str]] = field(default_factory=dict)
    dns_faults: dict[str, str] = field(default_factory=dict)  # "refused" | "garbage"
    resolver: str = FAKE_RESOLVER
    dns_delay_s: float = 0.0
    tcp_faults: dict[tuple[str, int], Faults] = field(default_factory=dict)
    tls_faults: dict[str, Faults] = field(default_factory=dict)
    cert_names: set[str] = field(default_factory=set)
    http_status: dict[str, int] = field(default_factory=dict)
    doh_names: dict[str, list[str]] | None = None
    udp: dict[tuple[str, int], Responder] = field(default_factory=dict)
    udp_hosts: dict[str, Responder] = field(default_factory=dict)
    udp_default: Responder | None = None
    stream_responder: Callable[[str, int, bytes], StreamReply] | None = None
    seed: int = 1  # the censor's random_loss draws
    # What the probe sent.
    connects: list[tuple[str, int]] = field(default_factory=list)
    handshakes: list[tuple[str, int, str]] = field(default_factory=list)
    http_requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    udp_sent: list[tuple[str, int, bytes]] = field(default_factory=list)
    censor: Censor = field(init=False)
    _attempts: dict[object, int] = field(default_factory=dict)
    _next_port: int = CLIENT[1] - 1

    def __post_init__(self) -> None:
        self.censor = Censor(self, seed=self.seed)

    def system_resolvers(self) -> list[str]:
        return [self.resolver] if self.resolver else []

    def _next(self, table: dict[Any, Faults], key: object, kind: str) -> Fault:
        fault = table.get(key, "ok")
        if isinstance(fault, list):  # one per attempt, the last one repeats
            n = self._attempts.get((kind, key), 0)
            self._attempts[(kind, key)] = n + 1
            return fault[min(n, len(fault) - 1)]
        return fault

    def _connect_fault(self, host: str, port: int) -> Fault:
        """The censor first (it is on the path), then the server. An HTTP URL may name its
        host: the censor sees the address the name has in this world."""
        ip = (self.names.get(host) or [host])[0]
        return (self.censor.tcp_fate(ip, port)
                or self._next(self.tcp_faults, (host, port), "tcp"))

    def _tls_fault(self, sni: str, port: int) -> Fault:
        return self.censor.tls_fate(sni, port) or self._next(self.tls_faults, sni, "tls")

    async def tcp_connect(self, ip: str, port: int, timeout_s: float) -> _FakeStream:
        self.connects.append((ip, port))
        await _suffer(self._connect_fault(ip, port), timeout_s)
        return _FakeStream(self, ip, port)

    async def tls_connect(self, ip: str, port: int, sni: str, timeout_s: float,
                          ca_bundle: str | None = None, verify: bool = True,
                          alpn: Sequence[str] = ()) -> _FakeTlsStream:
        info = await self.tls_handshake(ip, port, sni, timeout_s, ca_bundle, verify, alpn)
        return _FakeTlsStream(self, ip, port, info)

    async def tls_handshake(self, ip: str, port: int, sni: str, timeout_s: float,
                            ca_bundle: str | None = None, verify: bool = True,
                            alpn: Sequence[str] = ()) -> TlsInfo:
        await self.tcp_connect(ip, port, timeout_s)
        self.handshakes.append((ip, port, sni))
        await _suffer(self._tls_fault(sni, port), timeout_s)
        if verify and sni not in self.names and sni not in self.cert_names:
            raise _hostname_mismatch(sni)
        return TlsInfo(version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256",
                       peer_subject=f"commonName={sni}", alpn=None)

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

        def connect_timeout() -> BaseException:
            return httpx.ConnectTimeout("timed out", request=request)

        await _suffer(self._connect_fault(host, port), timeout_s, connect_timeout)
        doh = request.headers.get("content-type") == "application/dns-message"
        if request.url.scheme == "https":
            self.handshakes.append((host, port, sni))
            await _suffer(self._tls_fault(sni, port), timeout_s, connect_timeout)
            # The DoH control is a real service: its certificate is valid.
            if verify and not doh and sni not in self.names and sni not in self.cert_names:
                raise _hostname_mismatch(sni)
        if doh:
            zone = self.doh_names if self.doh_names is not None else self.names
            return httpx.Response(200, headers={"content-type": "application/dns-message"},
                                  content=_zone_answer(zone, request.content))
        name = (request.headers.get("host") or host).split(":")[0]
        return httpx.Response(self.http_status.get(name, 200), content=b"fake\n")

    async def udp_open(self, ip: str, port: int) -> _FakeUdpFlow:
        self._next_port += 1
        return _FakeUdpFlow(self, ip, port, (CLIENT[0], self._next_port))

    def dns_answer(self, query: bytes) -> bytes | None:
        """The resolver's answer to ``query``: the censor's resolver rules, then the
        resolver's own faults, then the tables."""
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        q = dns.message.from_wire(query)
        name = str(q.question[0].name).rstrip(".")
        rdtype = q.question[0].rdtype
        reply = dns.message.make_response(q)
        censored, bogon = self.censor.resolver_rule(name)
        fault = self.dns_faults.get(name)
        if censored == "nxdomain":
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif censored == "servfail":
            reply.set_rcode(dns.rcode.SERVFAIL)
        elif censored == "bogon":
            _add_addresses(reply, name, rdtype, [bogon])
        elif fault == "garbage":
            return b"\x00\x01garbage"
        elif fault == "refused":
            reply.set_rcode(dns.rcode.REFUSED)
        elif fault is not None:
            raise ValueError(f"unknown fake DNS fault {fault!r}")
        elif rdtype == dns.rdatatype.TXT:
            if name in self.txt:
                quoted = ['"' + t.replace('"', '\\"') + '"' for t in self.txt[name]]
                reply.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "TXT", *quoted))
            else:
                reply.set_rcode(dns.rcode.NXDOMAIN)
        elif name in self.names:
            _add_addresses(reply, name, rdtype, self.names[name])
        else:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        return bytes(reply.to_wire())

    def udp_world(self, ip: str, port: int, data: bytes) -> list[Reply]:
        """What the world answers to a datagram that reached ``ip:port``."""
        if ip == self.resolver and port == 53:
            answer = self.dns_answer(data)
            return [answer] if answer is not None else []
        responder = self.udp.get((ip, port)) or self.udp_hosts.get(ip)
        if responder is None and port == 53:
            responder = icmp_port_unreachable
        out = (responder or self.udp_default or silent)(data)
        if out is None:
            return []
        return out if isinstance(out, list) else [out]


def _add_addresses(reply: Any, name: str, rdtype: int, addresses: list[str]) -> None:
    import dns.rdatatype
    import dns.rrset

    if rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return
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
    def __init__(self, net: FakeNetwork, ip: str, port: int) -> None:
        self._net = net
        self._ip = ip
        self._port = port
        self._inbox: asyncio.Queue[Reply] = asyncio.Queue()
        self._pending = b""
        self.local_address = (CLIENT[0], 40000)

    async def write(self, data: bytes) -> None:
        responder = self._net.stream_responder
        reply = responder(self._ip, self._port, data) if responder else None
        for item in reply if isinstance(reply, list) else [] if reply is None else [reply]:
            self._inbox.put_nowait(item)

    async def read(self, max_bytes: int, timeout_s: float) -> bytes:
        if not self._pending:
            item = await take(self._inbox, timeout_s)
            if not item:
                return b""  # the peer closed
            self._pending = item
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def close(self) -> None:
        return None


class _FakeTlsStream(_FakeStream):
    def __init__(self, net: FakeNetwork, ip: str, port: int, tls: TlsInfo) -> None:
        super().__init__(net, ip, port)
        self.tls = tls


class _FakeUdpFlow:
    """A connected UDP socket in the fake world: each datagram meets the censor on the
    way out, the world, and the censor again on the way back."""

    def __init__(self, net: FakeNetwork, ip: str, port: int, local: tuple[str, int]) -> None:
        self._net = net
        self._peer = (ip, port)
        self._inbox = udp_inbox()  # bounded as the real flow's is
        self.local_address = local

    async def send(self, data: bytes) -> None:
        net, (ip, port) = self._net, self._peer
        net.udp_sent.append((ip, port, data))
        loop = asyncio.get_running_loop()
        forged = net.censor.injected(data) if port == 53 else None
        if forged is not None:  # the injector sees the query before any filter
            self._deliver(forged)
        verdict = net.censor.udp_verdict(self.local_address, self._peer, data, loop.time())
        if verdict == "reject":  # ICMP admin-prohibited, from the censor
            offer(self._inbox, icmp_error(errno.EHOSTUNREACH, CENSOR_ROUTER))
        elif verdict == "port_unreachable":  # iptables REJECT's default, from the censor
            offer(self._inbox, icmp_error(errno.ECONNREFUSED, CENSOR_ROUTER))
        if verdict is not None:
            return
        # An injector releases the query after its forgery: the real answer comes second.
        delay = max(net.dns_delay_s, 0.01 if forged is not None else 0.0)
        for reply in net.udp_world(ip, port, data):
            if delay:
                loop.call_later(delay, self._deliver, reply)
            else:
                self._deliver(reply)

    def _deliver(self, reply: Reply) -> None:
        if isinstance(reply, bytes):
            now = asyncio.get_running_loop().time()
            if self._net.censor.udp_verdict(self._peer, self.local_address, reply,
                                            now) is not None:
                return
        elif isinstance(reply, OSError) and icmp_sender(reply) is None:
            # An ICMP error from the world: the host the datagram reached sent it.
            reply = icmp_error(reply.errno or errno.EIO, self._peer[0])
        offer(self._inbox, reply)

    async def recv(self, timeout_s: float) -> bytes:
        return await take(self._inbox, timeout_s)

    def close(self) -> None:
        return None
