"""TTL-limited probes and the raw-socket observer that sees what comes back.

The probes are sent through ordinary kernel sockets with ``IP_TTL`` set (so the kernel
keeps its TCP state and never answers our own replies with a RST, as it would for packets
crafted outside it); what comes back is read from raw sockets (ICMP, TCP, UDP), which is
what needs root or CAP_NET_RAW. Packets are decoded with scapy (imported lazily).

An ICMP time-exceeded or destination-unreachable message quotes the IP header and the
first 8 bytes of the probe (RFC 792), i.e. its ports: that ties it to the probe that
caused it. A reply is tied to a probe by its 4-tuple. For every packet the IP TTL and
IP ID are kept, which is what injection fingerprints compare (Weaver, Sommer, Paxson,
NDSS 2009; Hold-On). Method after OONI ``tlsmiddlebox`` (ts-037) and CenTrace.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ICMP_ECHO_REPLY = 0
ICMP_UNREACHABLE = 3
ICMP_TIME_EXCEEDED = 11
PROTO_ICMP, PROTO_TCP, PROTO_UDP = 1, 6, 17
FULL_TTL = 64
# After the first packet of a probe, how long to keep listening: an on-path injector's
# forgery and the genuine answer (or a router's time exceeded) race, and the slower of
# them must still be seen.
GRACE_S = 0.5
RAW_SKIPPED = "locate needs raw sockets (root or CAP_NET_RAW); skipped"


def has_raw_sockets() -> bool:
    """True when this process may open raw sockets (root or CAP_NET_RAW)."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except OSError:
        return False
    sock.close()
    return True


@dataclass(frozen=True, slots=True)
class Packet:
    """One packet received: who sent it, its IP TTL and ID, and what it says.

    ``kind`` is ``time_exceeded``, ``unreachable`` (ICMP, with ``icmp_code``), ``tcp`` (with
    ``flags``) or ``udp`` (with ``payload``). For ICMP, ``quoted`` is the (protocol,
    source port, destination address, destination port) of the probe it quotes."""

    t: float
    src: str
    ip_ttl: int
    ip_id: int
    kind: str
    sport: int = 0
    dport: int = 0
    flags: str = ""
    payload: bytes = b""
    icmp_code: int = 0
    quoted: tuple[int, int, str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "src": self.src, "ip_ttl": self.ip_ttl,
                               "ip_id": self.ip_id}
        if self.kind == "tcp":
            out["flags"] = self.flags
        if self.kind == "unreachable":
            out["icmp_code"] = self.icmp_code
        if self.payload:
            out["payload_len"] = len(self.payload)
        return out


def decode(data: bytes, now: float) -> Packet | None:
    """A Packet from raw IPv4 bytes (as a raw socket returns them); None if not one of ours
    or malformed. Decoding uses scapy; anything it cannot make sense of is dropped."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror

    try:
        ip = IP(data)
    except Exception:  # malformed packets are not ours to crash on
        return None
    base: dict[str, Any] = {"t": now, "src": str(ip.src), "ip_ttl": int(ip.ttl),
                            "ip_id": int(ip.id)}
    if ICMP in ip:
        icmp = ip[ICMP]
        if icmp.type not in (ICMP_UNREACHABLE, ICMP_TIME_EXCEEDED) or IPerror not in icmp:
            return None
        inner = icmp[IPerror]
        quoted: tuple[int, int, str, int] | None = None
        if TCPerror in inner:
            quoted = (PROTO_TCP, int(inner[TCPerror].sport), str(inner.dst),
                      int(inner[TCPerror].dport))
        elif UDPerror in inner:
            quoted = (PROTO_UDP, int(inner[UDPerror].sport), str(inner.dst),
                      int(inner[UDPerror].dport))
        if quoted is None:
            return None
        kind = "time_exceeded" if icmp.type == ICMP_TIME_EXCEEDED else "unreachable"
        return Packet(**base, kind=kind, icmp_code=int(icmp.code), quoted=quoted)
    if TCP in ip:
        tcp = ip[TCP]
        return Packet(**base, kind="tcp", sport=int(tcp.sport), dport=int(tcp.dport),
                      flags=str(tcp.flags), payload=bytes(tcp.payload))
    if UDP in ip:
        udp = ip[UDP]
        return Packet(**base, kind="udp", sport=int(udp.sport), dport=int(udp.dport),
                      payload=bytes(udp.payload))
    return None


class Observer:
    """Reads ICMP, TCP and UDP from raw sockets in a thread; keeps the packets that come
    from the watched addresses or are ICMP errors. Use as a context manager."""

    def __init__(self, watch: set[str]) -> None:
        self.watch = set(watch)
        self._packets: list[Packet] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Observer:
        # Import scapy now: importing it on the first packet takes longer than a probe
        # waits for its answer.
        import scapy.layers.inet  # noqa: F401

        for proto in (socket.IPPROTO_ICMP, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
            self._socks.append(socket.socket(socket.AF_INET, socket.SOCK_RAW, proto))
        self._thread = threading.Thread(target=self._loop, name="locate-observer",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for sock in self._socks:
            sock.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select(self._socks, [], [], 0.05)
            for sock in ready:
                try:
                    data = sock.recv(65535)
                except OSError:
                    continue
                if not self._wanted(data):
                    continue
                packet = decode(data, time.monotonic())
                if packet is not None:
                    with self._lock:
                        self._packets.append(packet)

    def _wanted(self, data: bytes) -> bool:
        # Cheap pre-filter before scapy: ICMP errors, or packets from a watched address.
        if len(data) < 20 or data[0] >> 4 != 4:
            return False
        proto = data[9]
        if proto == PROTO_ICMP:
            ihl = (data[0] & 0x0F) * 4
            return len(data) > ihl and data[ihl] in (ICMP_UNREACHABLE, ICMP_TIME_EXCEEDED)
        return socket.inet_ntoa(data[12:16]) in self.watch

    def since(self, t0: float) -> list[Packet]:
        with self._lock:
            return [p for p in self._packets if p.t >= t0]


@dataclass(slots=True)
class ProbeResult:
    """What one probe (one payload, one TTL) got back."""

    ttl: int
    packets: list[Packet] = field(default_factory=list)
    connect_failure: str | None = None  # TLS probes: the full-TTL connect failed

    @property
    def time_exceeded_from(self) -> str | None:
        """The router that answered time exceeded first (None if none did)."""
        for p in sorted(self.packets, key=lambda p: p.t):
            if p.kind == "time_exceeded":
                return p.src
        return None

    def replies(self) -> list[Packet]:
        return [p for p in self.packets if p.kind in ("tcp", "udp")]

    def resets(self) -> list[Packet]:
        return [p for p in self.packets if p.kind == "tcp" and "R" in p.flags]

    @property
    def outcome(self) -> str:
        """``reply``, ``rst``, ``unreachable``, ``time_exceeded`` or ``none``: what the
        endpoint side answered, in that order of precedence."""
        if self.connect_failure is not None:
            return "connect_failed"
        if self.resets():
            return "rst"
        if self.replies():
            return "reply"
        if any(p.kind == "unreachable" for p in self.packets):
            return "unreachable"
        if self.time_exceeded_from is not None:
            return "time_exceeded"
        return "none"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ttl": self.ttl, "outcome": self.outcome,
                               "time_exceeded_from": self.time_exceeded_from,
                               "packets": [p.to_json() for p in self.packets]}
        if self.connect_failure is not None:
            out["connect_failure"] = self.connect_failure
        return out


def _matches(packet: Packet, proto: int, local_port: int, addr: str, port: int) -> bool:
    if packet.quoted is not None:
        return packet.quoted == (proto, local_port, addr, port)
    kind = "tcp" if proto == PROTO_TCP else "udp"
    return (packet.kind == kind and packet.src == addr and packet.sport == port
            and packet.dport == local_port)


def _collect(obs: Observer, t0: float, proto: int, local_port: int, addr: str, port: int,
             wait_s: float, grace_s: float) -> list[Packet]:
    """Wait up to ``wait_s`` for packets of this probe; once something came, wait only
    ``grace_s`` more (to see a second, genuine answer after an injected one)."""
    deadline = t0 + wait_s
    first: float | None = None
    while True:
        now = time.monotonic()
        got = [p for p in obs.since(t0) if _matches(p, proto, local_port, addr, port)]
        if got and first is None:
            first = now
            deadline = min(deadline, now + grace_s)
        if now >= deadline:
            return got
        time.sleep(0.01)


@contextlib.contextmanager
def _socket(kind: int) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        yield sock
    finally:
        if kind == socket.SOCK_STREAM:
            # Abort (RST) rather than leave a half-open connection behind.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def udp_probe(obs: Observer, addr: str, port: int, payload: bytes, ttl: int,
              wait_s: float, grace_s: float = GRACE_S) -> ProbeResult:
    """One datagram with IP TTL ``ttl`` from a fresh source port."""
    with _socket(socket.SOCK_DGRAM) as sock:
        sock.connect((addr, port))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        local_port = sock.getsockname()[1]
        t0 = time.monotonic()
        with contextlib.suppress(OSError):  # an earlier ICMP error may surface on send
            sock.send(payload)
        packets = _collect(obs, t0, PROTO_UDP, local_port, addr, port, wait_s, grace_s)
    return ProbeResult(ttl, packets)


def tcp_syn_probe(obs: Observer, addr: str, port: int, ttl: int, wait_s: float,
                  grace_s: float = GRACE_S) -> ProbeResult:
    """A TCP SYN with IP TTL ``ttl`` (a non-blocking connect)."""
    with _socket(socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.bind(("0.0.0.0", 0))
        local_port = sock.getsockname()[1]
        sock.setblocking(False)
        t0 = time.monotonic()
        sock.connect_ex((addr, port))
        packets = _collect(obs, t0, PROTO_TCP, local_port, addr, port, wait_s, grace_s)
    return ProbeResult(ttl, packets)


def tcp_payload_probe(obs: Observer, addr: str, port: int, payload: bytes, ttl: int,
                      wait_s: float, connect_timeout_s: float,
                      grace_s: float = GRACE_S) -> ProbeResult:
    """Connect with the full TTL, then send ``payload`` (a TLS ClientHello) with IP TTL
    ``ttl``: only the payload is TTL-limited, as in OONI tlsmiddlebox."""
    from probe import failures

    with _socket(socket.SOCK_STREAM) as sock:
        sock.settimeout(connect_timeout_s)
        try:
            sock.connect((addr, port))
        except OSError as exc:
            return ProbeResult(ttl, [], connect_failure=failures.classify(exc))
        local_port = sock.getsockname()[1]
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        t0 = time.monotonic()
        try:
            sock.sendall(payload)
        except OSError as exc:
            return ProbeResult(ttl, [], connect_failure=failures.classify(exc))
        packets = _collect(obs, t0, PROTO_TCP, local_port, addr, port, wait_s, grace_s)
    # Bare ACKs of the server say nothing about the payload: keep data, RST, FIN, ICMP.
    kept = [p for p in packets if p.kind != "tcp" or p.payload or set(p.flags) & set("RF")]
    return ProbeResult(ttl, kept)


def client_hello(sni: str) -> bytes:
    """The bytes of a TLS ClientHello naming ``sni``, as Python's ssl module sends it."""
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()
