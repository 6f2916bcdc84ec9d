"""Direct socket checks run inside a lab namespace, independent of the probe's checks.

``python -m probe.lab.sockcheck OP ARGS...`` prints one JSON object: ``{"result": "ok"}``
or ``{"result": "<failure string>"}`` (:func:`probe.failures.classify`) plus details. The
lab's tests use them to prove that each censor rule bites on its own, so a passing probe
test cannot come from a rule that never matched. Operations:

* ``resolve NAME``: the system resolver (the client's resolv.conf points at the lab).
* ``dns NAME SERVER [EXPECTED]``: one UDP query, collecting every answer for 1 s
  (injection shows two).
* ``tcp ADDR PORT``, ``tls HOST ADDR PORT CA [SNI]``, ``http ADDR PORT PATH`` (bytes/s).
* ``loss ADDR PORT [COUNT]``: datagrams to an echo port; ``packet_loss`` if any is lost.
* ``ttl ADDR PORT HOPS``: which router answers "time exceeded" for a TTL of HOPS.
* ``stun ADDR PORT [whatsapp]``: a Binding request (WhatsApp-flavoured: type 0x0800 and an
  attribute 0x4000), answered or not; ``udp ADDR PORT``: random bytes, echoed or not.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import sys
import time
from typing import Any

from probe.failures import classify

TIMEOUT_S = 2.0
COOKIE = 0x2112A442


def resolve(name: str) -> dict[str, Any]:
    infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    return {"result": "ok", "addresses": sorted({i[4][0] for i in infos})}


def dns(name: str, server: str, expected: str | None = None) -> dict[str, Any]:
    """Result: the first answer's failure (NXDOMAIN, SERVFAIL), ``dns_injected_reply``
    when two answers arrive, ``dns_bogon_error`` when the address is not ``expected``."""
    import ipaddress

    import dns.message
    import dns.rcode

    query = dns.message.make_query(name, "A")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((server, 53))
    sock.send(query.to_wire())
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + 1.0
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            reply = dns.message.from_wire(sock.recv(4096))
        except TimeoutError:
            break
        addrs = [rr.address for rrset in reply.answer for rr in rrset if hasattr(rr, "address")]
        answers.append({"rcode": str(dns.rcode.to_text(reply.rcode())), "addresses": addrs})
    if not answers:
        return {"result": "generic_timeout_error", "answers": []}
    first = answers[0]
    rcodes = {"NXDOMAIN": "dns_nxdomain_error", "SERVFAIL": "dns_servfail_error", "NOERROR": "ok"}
    result = rcodes.get(str(first["rcode"]), "dns_server_misbehaving")
    if len(answers) > 1:
        result = "dns_injected_reply"
    elif result == "ok" and expected is not None and first["addresses"] != [expected]:
        bogon = any(not ipaddress.ip_address(a).is_global for a in first["addresses"])
        result = "dns_bogon_error" if bogon else "dns_unexpected_network"
    return {"result": result, "answers": answers}


def tcp(addr: str, port: str) -> dict[str, Any]:
    with socket.create_connection((addr, int(port)), timeout=TIMEOUT_S):
        return {"result": "ok"}


def tls(host: str, addr: str, port: str, ca: str, sni: str | None = None) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=ca)
    if sni is not None and sni != host:
        ctx.check_hostname = False  # a decoy SNI: we only want to see the handshake finish
    with socket.create_connection((addr, int(port)), timeout=TIMEOUT_S) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni or host) as conn:
            return {"result": "ok", "version": conn.version()}


def http(addr: str, port: str, path: str) -> dict[str, Any]:
    start = time.monotonic()
    with socket.create_connection((addr, int(port)), timeout=10) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n".encode())
        received = 0
        while chunk := conn.recv(65536):
            received += len(chunk)
    elapsed = time.monotonic() - start
    return {"result": "ok", "bytes": received, "bytes_per_s": received / max(elapsed, 1e-6)}


def stun_request(flavor: str | None = None) -> bytes:
    txid = os.urandom(12)
    if flavor == "whatsapp":
        attr = struct.pack("!HH", 0x4000, 4) + b"\x00\x00\x00\x01"
        return struct.pack("!HHI", 0x0800, len(attr), COOKIE) + txid + attr
    return struct.pack("!HHI", 0x0001, 0, COOKIE) + txid


def _udp_exchange(addr: str, port: str, payload: bytes) -> bytes:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((addr, int(port)))
    sock.settimeout(0.5)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        sock.send(payload)
        try:
            return sock.recv(65535)
        except TimeoutError:
            continue
    raise TimeoutError


def stun(addr: str, port: str, flavor: str | None = None) -> dict[str, Any]:
    request = stun_request(flavor)
    reply = _udp_exchange(addr, port, request)
    return {"result": "ok", "type": f"0x{struct.unpack('!H', reply[:2])[0]:04x}",
            "same_txid": reply[8:20] == request[8:20]}


def udp(addr: str, port: str) -> dict[str, Any]:
    payload = b"\x00" + os.urandom(31)  # never looks like STUN (first two bits 00, no cookie)
    reply = _udp_exchange(addr, port, payload)
    return {"result": "ok", "echoed": reply == payload}


def loss(addr: str, port: str, count: str = "200") -> dict[str, Any]:
    """Send ``count`` datagrams to an echo port, 2 ms apart; ``packet_loss`` if any is
    missing after 1 s (with 10 % loss each way, 200 datagrams all coming back has odds
    below 1e-18)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((addr, int(port)))
    sent = int(count)
    for index in range(sent):
        sock.send(b"\x00" + index.to_bytes(4, "big") + os.urandom(11))
        time.sleep(0.002)
    seen: set[bytes] = set()
    deadline = time.monotonic() + 1.0
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            seen.add(sock.recv(2048)[1:5])
        except TimeoutError:
            break
    lost = sent - len(seen)
    return {"result": "packet_loss" if lost else "ok", "sent": sent, "lost": lost}


def ttl(addr: str, port: str, hops: str) -> dict[str, Any]:
    """A UDP datagram with IP TTL ``hops``: the router where it expires answers ICMP time
    exceeded; its address comes back through IP_RECVERR (no raw socket needed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(hops))
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    sock.connect((addr, int(port)))
    sock.send(b"\x00" * 8)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            _, ancdata, _, _ = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
        except BlockingIOError:
            time.sleep(0.02)
            continue
        for level, kind, data in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_RECVERR:
                _errno, _origin, icmp_type, icmp_code = struct.unpack_from("=IBBB", data)
                offender = socket.inet_ntoa(data[16 + 4:16 + 8])
                return {"result": "ok", "icmp_type": icmp_type, "icmp_code": icmp_code,
                        "from": offender}
    raise TimeoutError


IP_RECVERR = 11

OPS: dict[str, Any] = {"resolve": resolve, "dns": dns, "tcp": tcp, "tls": tls, "http": http,
                       "stun": stun, "udp": udp, "ttl": ttl, "loss": loss}


def main(argv: list[str]) -> int:
    op, args = argv[0], argv[1:]
    try:
        out = OPS[op](*args)
    except Exception as exc:
        out = {"result": classify(exc), "error": repr(exc)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
