"""The fake internet's own servers, run as one process inside the lab's ``inet`` namespace.

``python -m probe.lab.servers CONFIG.json`` serves, on every address of the namespace:

* each TCP port in ``tcp_ports``: a connection that starts with a TLS record (0x16) gets a
  TLS handshake with the lab certificate (any SNI) and then HTTP; one that starts with an
  HTTP method gets an HTTP answer; anything else is echoed (so a TCP connect, WhatsApp's
  own protocol on 443/5222, or Viber's ports all connect). ``GET /bytes/N`` returns N bytes,
  for throughput tests. ``/dns-query`` is a DNS-over-HTTPS server (RFC 8484, GET and POST)
  answering from the lab's truthful zone (``doh_zone``, re-read on each query): the
  control resolver the probe's ``--doh`` can use; resolver-side censor rules never touch it.
* each (port, address) in ``udp_echo``: a STUN Binding request gets a Binding success
  response, any other datagram is echoed (never more bytes than received). The lab's echo
  host (:data:`probe.lab.addresses.ECHO`) serves every UDP port of the targets this way, so
  "STUN dropped, random bytes pass on the same 5-tuple" can be shown on any port.
* ``servfail``: a DNS server at that address answering every query with SERVFAIL, the
  upstream dnsmasq forwards the names of the ``dns_servfail`` rule to.

Standard library only (plus dnspython for SERVFAIL); blocking sockets, one thread per
connection: the lab's load is a handful of probes.
"""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

HTTP_METHODS = (b"GET ", b"HEAD", b"POST", b"PUT ", b"OPTI", b"DELE", b"PATC", b"CONN")
MAX_BODY = 16 * 1024 * 1024


class _TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    ssl_context: ssl.SSLContext
    doh_zone: str


class _Handler(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(30)
        try:
            first = conn.recv(4, socket.MSG_PEEK)
            if not first:
                return
            if first[:1] == b"\x16":
                tls = self.server.ssl_context.wrap_socket(conn, server_side=True)
                self._serve(tls, tls.recv(65536))
            else:
                self._serve(conn, conn.recv(65536))
        except (OSError, ssl.SSLError):
            return

    def _serve(self, conn: socket.socket, data: bytes) -> None:
        while data:
            if data[:4] in HTTP_METHODS:
                self._http(conn, data)
                return
            conn.sendall(data)
            data = conn.recv(65536)

    def _doh(self, conn: socket.socket, data: bytes, method: str, path: str) -> None:
        import base64
        from urllib.parse import parse_qs, urlsplit

        head, _, body = data.partition(b"\r\n\r\n")
        if method == "POST":
            length = 0
            for header in head.split(b"\r\n")[1:]:
                key, _, value = header.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            while len(body) < length:
                more = conn.recv(65536)
                if not more:
                    break
                body += more
            wire = body[:length]
        else:
            param = parse_qs(urlsplit(path).query).get("dns", [""])[0]
            wire = base64.urlsafe_b64decode(param + "=" * (-len(param) % 4))
        try:
            answer = doh_answer(wire, self.server.doh_zone)
            status = "200 OK"
        except Exception:  # a malformed query: say so, as a DoH server does
            answer, status = b"", "400 Bad Request"
        conn.sendall((f"HTTP/1.1 {status}\r\nContent-Type: application/dns-message\r\n"
                      f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n").encode()
                     + answer)

    def _http(self, conn: socket.socket, data: bytes) -> None:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            more = conn.recv(65536)
            if not more:
                break
            data += more
        line = data.split(b"\r\n", 1)[0].decode("latin-1", "replace").split()
        path = line[1] if len(line) > 1 else "/"
        if path.startswith("/dns-query"):
            self._doh(conn, data, line[0] if line else "GET", path)
            return
        body = b"voip-probe lab\n"
        if path.startswith("/bytes/"):
            try:
                body = b"x" * min(int(path.rsplit("/", 1)[1]), MAX_BODY)
            except ValueError:
                body = b""
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}"
                "\r\nConnection: close\r\n\r\n").encode()
        conn.sendall(head + (b"" if line and line[0] == "HEAD" else body))


def doh_answer(wire: bytes, zone_path: str) -> bytes:
    """A DNS answer (RFC 8484 body) from the lab's truthful zone: A records, else NXDOMAIN."""
    import dns.message
    import dns.rcode
    import dns.rrset

    query = dns.message.from_wire(wire)
    reply = dns.message.make_response(query)
    try:
        records: dict[str, list[str]] = json.loads(Path(zone_path).read_text())
    except (OSError, ValueError):
        records = {}
    for question in query.question:
        name = question.name.to_text().rstrip(".").lower()
        if name not in records:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == 1:  # A
            reply.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "A",
                                                         records[name]))
    return bytes(reply.to_wire())


def stun_binding_answer(data: bytes, peer: tuple[str, int]) -> bytes | None:
    """A Binding success response (XOR-MAPPED-ADDRESS) to a Binding request, else None."""
    if len(data) < 20 or data[:2] != b"\x00\x01" or data[4:8] != b"\x21\x12\xa4\x42":
        return None
    port = peer[1] ^ 0x2112
    addr = bytes(a ^ b for a, b in zip(socket.inet_aton(peer[0]), data[4:8], strict=True))
    attr = b"\x00\x20\x00\x08\x00\x01" + port.to_bytes(2, "big") + addr
    return b"\x01\x01" + len(attr).to_bytes(2, "big") + data[4:20] + attr


def _udp_echo(address: str, port: int) -> None:
    # One socket per address: a 0.0.0.0 socket would answer from the uplink's address.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    while True:
        data, peer = sock.recvfrom(65535)
        sock.sendto(stun_binding_answer(data, peer) or data, peer)


def _servfail(address: str) -> None:
    import dns.message
    import dns.rcode

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    while True:
        data, peer = sock.recvfrom(65535)
        try:
            reply = dns.message.make_response(dns.message.from_wire(data))
        except Exception:  # malformed query: nothing to answer
            continue
        reply.set_rcode(dns.rcode.SERVFAIL)
        sock.sendto(reply.to_wire(), peer)


def serve(config: dict[str, Any]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config["cert"], config["key"])
    threads = []
    for port in config.get("tcp_ports", []):
        server = _TcpServer(("0.0.0.0", int(port)), _Handler)
        server.ssl_context = context
        server.doh_zone = config.get("doh_zone", "")
        threads.append(threading.Thread(target=server.serve_forever, daemon=True))
    for port, address in config.get("udp_echo", []):
        threads.append(threading.Thread(target=_udp_echo, args=(address, int(port)),
                                        daemon=True))
    if config.get("servfail"):
        threads.append(threading.Thread(target=_servfail, args=(config["servfail"],),
                                        daemon=True))
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    serve(json.loads(Path(sys.argv[1]).read_text()))
