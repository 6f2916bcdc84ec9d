"""A TLS (and HTTPS) server on loopback for tests, with a throwaway CA (trustme).

``LoopbackTlsServer(names, blocked_sni=..., mode=...)`` serves on 127.0.0.1 a certificate
for ``names`` signed by its own CA (``ca_file`` for ``--ca-bundle``). It plays an SNI
filter too: a ClientHello carrying one of ``blocked_sni`` is answered with a TCP RST
(``SO_LINGER`` 0), as an iptables string match with ``REJECT --reject-with tcp-reset``
does. ``mode``: ``http`` (answer one HTTP request with ``status``), ``close`` (complete
the handshake, then close without an HTTP answer).
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from pathlib import Path

from tests.helpers.background import BackgroundServer


class LoopbackTlsServer(BackgroundServer):
    def __init__(self, names: list[str], tmp: Path, blocked_sni: tuple[str, ...] = (),
                 mode: str = "http", status: int = 200) -> None:
        import trustme

        super().__init__()
        self.ca = trustme.CA()
        self.ca_file = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert(*names).configure_cert(self.context)
        self.blocked = [n.encode() for n in blocked_sni]
        self.mode = mode
        self.status = status
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.resets = 0

    def _serve_once(self) -> None:
        conn, _ = self.sock.accept()
        threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            hello = conn.recv(16384, socket.MSG_PEEK)
            if any(name in hello for name in self.blocked):
                self.resets += 1
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                return
            tls = self.context.wrap_socket(conn, server_side=True)
            if self.mode == "close":
                tls.close()
                return
            request = tls.recv(65536)
            if request:
                body = b"hello\n"
                tls.sendall(f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(body)}\r\n"
                            "Connection: close\r\n\r\n".encode() + body)
            tls.close()
        except (OSError, ssl.SSLError):
            conn.close()
