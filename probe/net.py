"""The one network seam: every check does its I/O through a :class:`Network`.

Checks never open sockets themselves, so that every check runs unchanged against the
real network (:class:`RealNetwork`, asyncio sockets) and against fakes in unit tests
(:mod:`probe.testing`). Operations raise ordinary exceptions (``OSError``,
``TimeoutError``, ``ssl.SSLError``); checks turn them into failure strings with
:func:`probe.failures.classify`.

HTTP (the ``https`` check, the DNS-over-HTTPS control) goes through
:meth:`Network.http_client`, an ``httpx.AsyncClient``: httpx opens its own sockets, so the
seam hands out the client (tests get one on an ``httpx.MockTransport``).

UDP flows are *connected* sockets: the kernel then reports an ICMP port-unreachable as
``ConnectionRefusedError`` on the flow, which lets checks tell "no answer" from "ICMP
error". An ICMP error is evidence only with its sender (DESIGN.md "Measurement rules
learned from real DPI"): from the destination it means nothing listens, from a router on
the path that the network rejected the datagram. On Linux the flow's socket has
``IP_RECVERR``, and the error, read from the socket's error queue (``MSG_ERRQUEUE``,
``struct sock_extended_err`` and the offender's address after it), carries its sender:
:func:`icmp_sender`. Elsewhere the sender is unknown (None).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import httpx

# Datagrams a UDP flow holds that its check has not read yet. A censor can spray junk at a
# flow faster than a check reads it; what does not fit is dropped, so memory stays bounded.
UDP_QUEUE_DATAGRAMS = 128


class TcpStream(Protocol):
    local_address: tuple[str, int]

    async def write(self, data: bytes) -> None: ...

    async def read(self, max_bytes: int, timeout_s: float) -> bytes: ...

    async def close(self) -> None: ...


class UdpFlow(Protocol):
    """A connected UDP socket to one (ip, port)."""

    local_address: tuple[str, int]

    async def send(self, data: bytes) -> None: ...

    async def recv(self, timeout_s: float) -> bytes:
        """The next datagram; TimeoutError when none comes in time, ConnectionRefusedError
        (or another OSError) when an ICMP error arrived for this flow (its sender, when
        known: :func:`icmp_sender`)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str
    cipher: str
    peer_subject: str
    alpn: str | None


class TlsStream(TcpStream, Protocol):
    """A stream inside a completed TLS handshake."""

    tls: TlsInfo


class Network(Protocol):
    def system_resolvers(self) -> list[str]: ...

    async def tcp_connect(self, ip: str, port: int, timeout_s: float) -> TcpStream: ...

    async def tls_handshake(self, ip: str, port: int, sni: str, timeout_s: float,
                            ca_bundle: str | None = None, verify: bool = True,
                            alpn: Sequence[str] = ()) -> TlsInfo: ...

    async def tls_connect(self, ip: str, port: int, sni: str, timeout_s: float,
                          ca_bundle: str | None = None, verify: bool = True,
                          alpn: Sequence[str] = ()) -> TlsStream:
        """A TLS session kept open as a stream (TURN over TLS), unlike tls_handshake."""
        ...

    async def udp_open(self, ip: str, port: int) -> UdpFlow: ...

    def http_client(self, timeout_s: float, ca_bundle: str | None = None,
                    verify: bool = True) -> httpx.AsyncClient:
        """A fresh HTTP client (use ``async with``): no redirects followed, no proxy from
        the environment, certificates verified against the system roots + ``ca_bundle``."""
        ...


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


def icmp_error(err: int, sender: str | None) -> OSError:
    """The exception a flow raises for an ICMP error: the OSError subclass of ``err``
    (``ConnectionRefusedError`` for port unreachable), knowing who sent it."""
    exc = OSError(err, os.strerror(err))
    exc.icmp_from = sender  # type: ignore[attr-defined]
    return exc


def icmp_sender(exc: BaseException) -> str | None:
    """The address that sent the ICMP error ``exc`` stands for; None when unknown."""
    sender = getattr(exc, "icmp_from", None)
    return sender if isinstance(sender, str) else None


# --- the real network ----------------------------------------------------------------


class _AsyncioTcpStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        sockname = writer.get_extra_info("sockname") or ("", 0)
        self.local_address = (str(sockname[0]), int(sockname[1]))

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def read(self, max_bytes: int, timeout_s: float) -> bytes:
        return await asyncio.wait_for(self._reader.read(max_bytes), timeout_s)

    async def close(self) -> None:
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        except (OSError, TimeoutError, ssl.SSLError):
            pass


class _AsyncioTlsStream(_AsyncioTcpStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 tls: TlsInfo) -> None:
        super().__init__(reader, writer)
        self.tls = tls


def _tls_info(writer: asyncio.StreamWriter) -> TlsInfo:
    """What a completed handshake negotiated (the peer's subject only when verified)."""
    sslobj: ssl.SSLObject = writer.get_extra_info("ssl_object")
    cert = sslobj.getpeercert() or {}
    subject = ", ".join("=".join(x) for rdn in cert.get("subject", ()) for x in rdn)
    cipher = sslobj.cipher()
    return TlsInfo(version=sslobj.version() or "", cipher=cipher[0] if cipher else "",
                   peer_subject=subject, alpn=sslobj.selected_alpn_protocol())


def udp_inbox() -> asyncio.Queue[bytes | BaseException]:
    """A flow's queue of datagrams (and ICMP errors) not read yet, bounded by
    :data:`UDP_QUEUE_DATAGRAMS`: :func:`offer` drops what does not fit."""
    return asyncio.Queue(maxsize=UDP_QUEUE_DATAGRAMS)


def offer(inbox: asyncio.Queue[bytes | BaseException], item: bytes | BaseException) -> bool:
    """Queue ``item`` unless the flow's inbox is full (then it is dropped, as a full
    socket buffer drops it); whether it was queued."""
    try:
        inbox.put_nowait(item)
    except asyncio.QueueFull:
        return False
    return True


async def take(inbox: asyncio.Queue[bytes | BaseException], timeout_s: float) -> bytes:
    """The next datagram of a flow's inbox within ``timeout_s``; an ICMP error queued
    there is raised (``TimeoutError`` when nothing came)."""
    item = await asyncio.wait_for(inbox.get(), max(timeout_s, 0.0))
    if isinstance(item, BaseException):
        raise item
    return item


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue = udp_inbox()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        offer(self.queue, data)

    def error_received(self, exc: Exception) -> None:
        offer(self.queue, exc)


class _AsyncioUdpFlow:
    def __init__(self, transport: asyncio.DatagramTransport, proto: _UdpProtocol) -> None:
        self._transport = transport
        self._proto = proto
        sockname = transport.get_extra_info("sockname") or ("", 0)
        self.local_address = (str(sockname[0]), int(sockname[1]))

    async def send(self, data: bytes) -> None:
        if self._transport.is_closing():
            raise ConnectionResetError("UDP flow is closed")
        self._transport.sendto(data)

    async def recv(self, timeout_s: float) -> bytes:
        item = await asyncio.wait_for(self._proto.queue.get(), max(timeout_s, 0.0))
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._transport.close()


# Linux values, for Pythons whose socket module does not name them.
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_EE_LEN = 16  # struct sock_extended_err; the offender's sockaddr follows it
_READS_PER_WAKEUP = 16


def _offender(data: bytes) -> str | None:
    """The sender in a ``sock_extended_err`` control message (SO_EE_OFFENDER), or None
    for an error the host itself raised (no ICMP, family AF_UNSPEC)."""
    addr = data[_EE_LEN:]
    if len(addr) < 2:
        return None
    (sa_family,) = struct.unpack_from("=H", addr)
    if sa_family == socket.AF_INET and len(addr) >= 8:
        return socket.inet_ntop(socket.AF_INET, addr[4:8])
    if sa_family == socket.AF_INET6 and len(addr) >= 24:
        return socket.inet_ntop(socket.AF_INET6, addr[8:24])
    return None


class _RecvErrUdpFlow:
    """A connected, non-blocking UDP socket with ``IP_RECVERR``: datagrams and ICMP errors
    (with their senders, from the error queue) arrive on one queue in order.

    With ``IP_RECVERR`` the kernel both queues the error and sets the socket's pending
    error, which the next ``recv`` or ``send`` returns once: that copy of an error already
    read from the queue is dropped. The error queue must be emptied, or the socket stays
    readable (EPOLLERR) for ever."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self._sock = sock
        self._loop = loop
        self._queue = udp_inbox()
        self._queued_error = False  # an error-queue entry not yet matched by its copy
        self._closed = False
        name = sock.getsockname()
        self.local_address = (str(name[0]), int(name[1]))
        loop.add_reader(sock.fileno(), self._readable)

    def _drain_errors(self) -> int:
        count = 0
        while True:
            try:
                _, ancdata, _, _ = self._sock.recvmsg(1, 512, _MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return count
            except OSError:
                return count
            for level, kind, data in ancdata:
                if ((level, kind) in ((socket.IPPROTO_IP, _IP_RECVERR),
                                      (socket.IPPROTO_IPV6, _IPV6_RECVERR))
                        and len(data) >= _EE_LEN):
                    (err,) = struct.unpack_from("=I", data)
                    offer(self._queue, icmp_error(err, _offender(data)))
                    self._queued_error = True
                    count += 1

    def _pending_copy(self) -> bool:
        """Whether an error the socket returned is the copy of a queued one."""
        self._drain_errors()
        copy, self._queued_error = self._queued_error, False
        return copy

    def _readable(self) -> None:
        self._drain_errors()
        # A bounded batch per wake-up, as asyncio's own transports read: a flood sprayed at
        # the flow must not keep the event loop here (the selector calls again).
        for _ in range(_READS_PER_WAKEUP):
            if self._closed:
                return
            try:
                data = self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if not self._pending_copy():
                    offer(self._queue, exc)
                continue
            offer(self._queue, data)

    async def send(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("UDP flow is closed")
        for attempt in range(2):
            try:
                self._sock.send(data)
                return
            except (BlockingIOError, InterruptedError):
                await self._loop.sock_sendall(self._sock, data)
                return
            except OSError as exc:
                # The pending error of an earlier ICMP error: this datagram did not go.
                if attempt == 0 and self._pending_copy():
                    continue
                offer(self._queue, exc)  # as asyncio's transports report it
                return

    async def recv(self, timeout_s: float) -> bytes:
        return await take(self._queue, timeout_s)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()


class RealNetwork:
    """The network as the operating system gives it."""

    def system_resolvers(self) -> list[str]:
        """Name servers from /etc/resolv.conf (inside a netns: /etc/netns/NAME/...)."""
        servers: list[str] = []
        try:
            with open("/etc/resolv.conf", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) >= 2 and parts[0] == "nameserver":
                        servers.append(parts[1].split("%")[0])
        except OSError:
            pass
        return servers

    async def tcp_connect(self, ip: str, port: int, timeout_s: float) -> TcpStream:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout_s)
        return _AsyncioTcpStream(reader, writer)

    async def tls_handshake(self, ip: str, port: int, sni: str, timeout_s: float,
                            ca_bundle: str | None = None, verify: bool = True,
                            alpn: Sequence[str] = ()) -> TlsInfo:
        stream = await self.tls_connect(ip, port, sni, timeout_s, ca_bundle, verify, alpn)
        await stream.close()
        return stream.tls

    async def tls_connect(self, ip: str, port: int, sni: str, timeout_s: float,
                          ca_bundle: str | None = None, verify: bool = True,
                          alpn: Sequence[str] = ()) -> TlsStream:
        ctx = make_ssl_context(ca_bundle, verify, alpn)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(ip, port, ssl=ctx, server_hostname=sni,
                                    ssl_handshake_timeout=timeout_s),
            timeout_s,
        )
        try:
            info = _tls_info(writer)
        except BaseException:
            await _AsyncioTcpStream(reader, writer).close()
            raise
        return _AsyncioTlsStream(reader, writer, info)

    async def udp_open(self, ip: str, port: int) -> UdpFlow:
        """A connected UDP flow on a fresh source port; with ICMP senders where the
        system tells them (Linux ``IP_RECVERR``)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        level, option = ((socket.IPPROTO_IPV6, _IPV6_RECVERR) if family == socket.AF_INET6
                         else (socket.IPPROTO_IP, _IP_RECVERR))
        try:
            sock.setsockopt(level, option, 1)
        except OSError:  # not Linux: the kernel's errno only, through asyncio
            sock.close()
        else:
            try:
                sock.setblocking(False)
                sock.connect((ip, port))
            except BaseException:
                sock.close()
                raise
            return _RecvErrUdpFlow(sock, loop)
        transport, proto = await loop.create_datagram_endpoint(
            _UdpProtocol, remote_addr=(ip, port), family=family
        )
        return _AsyncioUdpFlow(transport, proto)


    def http_client(self, timeout_s: float, ca_bundle: str | None = None,
                    verify: bool = True) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(verify=make_ssl_context(ca_bundle, verify),
                                 timeout=max(timeout_s, 0.01), follow_redirects=False,
                                 trust_env=False)


def make_ssl_context(ca_bundle: str | None, verify: bool = True,
                     alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """A client context: system roots (plus ``ca_bundle`` if given), or no verification.

    Contexts are shared: building one loads the system trust store, ~35 ms of CPU that
    blocks the event loop, and a run makes a hundred handshakes and HTTP clients. The key
    includes the bundle's mtime and size, so a rewritten bundle gets a fresh context."""
    stamp: tuple[int, int] | None = None
    if ca_bundle:
        try:
            st = os.stat(ca_bundle)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None  # load_verify_locations raises the clear error below
    return _ssl_context(ca_bundle, stamp, verify, tuple(alpn))


@functools.lru_cache(maxsize=32)
def _ssl_context(ca_bundle: str | None, stamp: tuple[int, int] | None, verify: bool,
                 alpn: tuple[str, ...]) -> ssl.SSLContext:
    del stamp  # part of the cache key only
    ctx = ssl.create_default_context()
    if ca_bundle:
        ctx.load_verify_locations(cafile=ca_bundle)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx
