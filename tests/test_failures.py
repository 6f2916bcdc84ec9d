"""Every exception type a network operation can raise is mapped to a df-007 string."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import dns.exception
import dns.resolver
import httpx
import pytest

from probe import failures
from probe.failures import classify


def cert_error(message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, message)
    exc.verify_message = message
    return exc


@pytest.mark.parametrize(("exc", "expected"), [
    (TimeoutError(), failures.GENERIC_TIMEOUT),
    (asyncio.CancelledError(), failures.INTERRUPTED),
    (ConnectionRefusedError(errno.ECONNREFUSED, "x"), failures.CONNECTION_REFUSED),
    (ConnectionResetError(errno.ECONNRESET, "x"), failures.CONNECTION_RESET),
    (BrokenPipeError(errno.EPIPE, "x"), failures.CONNECTION_RESET),
    (ConnectionAbortedError(errno.ECONNABORTED, "x"), failures.CONNECTION_ABORTED),
    (OSError(errno.EHOSTUNREACH, "x"), failures.HOST_UNREACHABLE),
    (OSError(errno.ENETUNREACH, "x"), failures.NETWORK_UNREACHABLE),
    (OSError(errno.ENETDOWN, "x"), failures.NETWORK_DOWN),
    (OSError(errno.ETIMEDOUT, "x"), failures.GENERIC_TIMEOUT),
    (asyncio.IncompleteReadError(b"", 10), failures.EOF_ERROR),
    (EOFError(), failures.EOF_ERROR),
    (socket.gaierror(socket.EAI_NONAME, "x"), failures.DNS_NXDOMAIN),
    (socket.gaierror(socket.EAI_AGAIN, "x"), failures.DNS_SERVER_MISBEHAVING),
    (cert_error("Hostname mismatch, certificate is not valid for 'x'"),
     failures.SSL_INVALID_HOSTNAME),
    (cert_error("unable to get local issuer certificate"), failures.SSL_UNKNOWN_AUTHORITY),
    (cert_error("self-signed certificate"), failures.SSL_UNKNOWN_AUTHORITY),
    (cert_error("certificate has expired"), failures.SSL_INVALID_CERTIFICATE),
    (ssl.SSLEOFError(8, "EOF"), failures.EOF_ERROR),
    (ssl.SSLError(1, "handshake failure"), failures.SSL_FAILED_HANDSHAKE),
    (dns.resolver.NXDOMAIN(), failures.DNS_NXDOMAIN),
    (dns.resolver.NoAnswer(), failures.DNS_NO_ANSWER),
    (dns.exception.Timeout(), failures.GENERIC_TIMEOUT),
    (dns.resolver.NoNameservers(), failures.DNS_SERVFAIL),
    (dns.exception.FormError(), failures.DNS_SERVER_MISBEHAVING),
    (httpx.ConnectTimeout("x"), failures.GENERIC_TIMEOUT),
    (httpx.ReadTimeout("x"), failures.GENERIC_TIMEOUT),
    (httpx.ConnectError("[Errno 111] Connection refused"), failures.CONNECTION_REFUSED),
    (httpx.RemoteProtocolError("Server disconnected without sending a response"),
     failures.HTTP_REQUEST_FAILED),
    (httpx.RemoteProtocolError("peer closed connection"), failures.EOF_ERROR),
])
def test_classify(exc: BaseException, expected: str) -> None:
    assert classify(exc) == expected


def test_httpx_error_takes_the_cause() -> None:
    try:
        try:
            raise ConnectionResetError(errno.ECONNRESET, "reset")
        except ConnectionResetError as inner:
            raise httpx.ReadError("read failed") from inner
    except httpx.ReadError as exc:
        assert classify(exc) == failures.CONNECTION_RESET


def test_unknown_exception_is_labelled_not_raised() -> None:
    assert classify(ValueError("odd")) == "unknown_failure ValueError: odd"
