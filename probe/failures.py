"""The failure vocabulary and ``classify(exc)``: OONI df-007 names plus ours.

Every network failure is recorded as data: a snake_case string from this module, never
an exception. Third-party errors (OSError/errno, asyncio, ssl, dnspython, httpx) are
translated here and nowhere else; ``tests/test_failures.py`` proves each one is mapped.
Spec: ooni/spec data-formats/df-007-errors.md.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

# df-007 names.
GENERIC_TIMEOUT = "generic_timeout_error"
CONNECTION_REFUSED = "connection_refused"
CONNECTION_RESET = "connection_reset"
CONNECTION_ABORTED = "connection_aborted"
HOST_UNREACHABLE = "host_unreachable"
NETWORK_UNREACHABLE = "network_unreachable"
NETWORK_DOWN = "network_down"
EOF_ERROR = "eof_error"
DNS_NXDOMAIN = "dns_nxdomain_error"
DNS_NO_ANSWER = "dns_no_answer"
DNS_REFUSED = "dns_refused_error"
DNS_SERVFAIL = "dns_servfail_error"
DNS_SERVER_MISBEHAVING = "dns_server_misbehaving"
DNS_BOGON = "dns_bogon_error"
DNS_WRONG_QUERY_ID = "dns_reply_with_wrong_query_id"
SSL_INVALID_HOSTNAME = "ssl_invalid_hostname"
SSL_UNKNOWN_AUTHORITY = "ssl_unknown_authority"
SSL_INVALID_CERTIFICATE = "ssl_invalid_certificate"
SSL_FAILED_HANDSHAKE = "ssl_failed_handshake"
QUIC_INCOMPATIBLE_VERSION = "quic_incompatible_version"
HTTP_REQUEST_FAILED = "http_request_failed"
HTTP_UNEXPECTED_STATUS = "http_unexpected_status_code"
INTERRUPTED = "interrupted"
UNKNOWN = "unknown_failure"

# Ours (not in df-007).
DNS_INJECTED = "dns_injected_reply"  # an answer from an address that runs no DNS server
DNS_UNEXPECTED_NETWORK = "dns_unexpected_network"  # answer outside expected_networks
PORT_UNREACHABLE = "port_unreachable"  # ICMP port unreachable on UDP
STUN_MALFORMED_REPLY = "stun_malformed_reply"
STUN_UNEXPECTED_REPLY = "stun_unexpected_reply"  # well-formed, but not an answer to us
STUN_ERROR_RESPONSE = "stun_error_response"
QUIC_UNEXPECTED_REPLY = "quic_unexpected_reply"  # a datagram that is not our Version Negotiation
DNS_NO_RESOLVER = "dns_no_resolver"  # no name server configured (empty resolv.conf)
NOT_APPLICABLE = "not_applicable"  # e.g. no reflector configured for a differential test

_ERRNO = {
    errno.ETIMEDOUT: GENERIC_TIMEOUT,
    errno.ECONNREFUSED: CONNECTION_REFUSED,
    errno.ECONNRESET: CONNECTION_RESET,
    errno.ECONNABORTED: CONNECTION_ABORTED,
    errno.EHOSTUNREACH: HOST_UNREACHABLE,
    errno.EHOSTDOWN: HOST_UNREACHABLE,
    errno.ENETUNREACH: NETWORK_UNREACHABLE,
    errno.ENETDOWN: NETWORK_DOWN,
    errno.ENETRESET: CONNECTION_RESET,
    errno.EPIPE: CONNECTION_RESET,
    errno.EADDRNOTAVAIL: NETWORK_UNREACHABLE,
}

_GAI = {
    socket.EAI_NONAME: DNS_NXDOMAIN,
    socket.EAI_AGAIN: DNS_SERVER_MISBEHAVING,
    socket.EAI_FAIL: DNS_SERVFAIL,
}


def classify(exc: BaseException) -> str:
    """Map an exception raised by a network operation to a failure string."""
    # Order matters: ssl errors are OSErrors, timeouts are OSErrors in 3.11.
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return GENERIC_TIMEOUT
    if isinstance(exc, asyncio.CancelledError):
        return INTERRUPTED
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _classify_cert(exc)
    if isinstance(exc, ssl.SSLZeroReturnError | ssl.SSLEOFError):
        return EOF_ERROR
    if isinstance(exc, ssl.SSLError):
        return SSL_FAILED_HANDSHAKE
    if isinstance(exc, socket.gaierror):
        return _GAI.get(exc.errno if exc.errno is not None else -1, DNS_SERVER_MISBEHAVING)
    if isinstance(exc, ConnectionRefusedError):
        return CONNECTION_REFUSED
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return CONNECTION_RESET
    if isinstance(exc, ConnectionAbortedError):
        return CONNECTION_ABORTED
    if isinstance(exc, asyncio.IncompleteReadError | EOFError):
        return EOF_ERROR
    if isinstance(exc, OSError) and exc.errno in _ERRNO:
        return _ERRNO[exc.errno]
    dns_failure = _classify_dns(exc)
    if dns_failure is not None:
        return dns_failure
    http_failure = _classify_httpx(exc)
    if http_failure is not None:
        return http_failure
    return f"{UNKNOWN} {type(exc).__name__}: {exc}".strip()


def _classify_cert(exc: ssl.SSLCertVerificationError) -> str:
    text = f"{exc.verify_message or ''} {exc}".lower()
    if "hostname mismatch" in text or "ip address mismatch" in text:
        return SSL_INVALID_HOSTNAME
    if "unable to get local issuer" in text or "self-signed" in text or "self signed" in text:
        return SSL_UNKNOWN_AUTHORITY
    return SSL_INVALID_CERTIFICATE


def _classify_dns(exc: BaseException) -> str | None:
    try:
        import dns.exception
        import dns.resolver
    except ImportError:  # pragma: no cover - dnspython is a hard dependency
        return None
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return DNS_NXDOMAIN
    if isinstance(exc, dns.resolver.NoAnswer):
        return DNS_NO_ANSWER
    if isinstance(exc, dns.resolver.LifetimeTimeout | dns.exception.Timeout):
        return GENERIC_TIMEOUT
    if isinstance(exc, dns.resolver.NoNameservers):
        return DNS_SERVFAIL
    if isinstance(exc, dns.exception.FormError | dns.exception.SyntaxError):
        return DNS_SERVER_MISBEHAVING
    if isinstance(exc, dns.exception.DNSException):
        return DNS_SERVER_MISBEHAVING
    return None


def _classify_httpx(exc: BaseException) -> str | None:
    try:
        import httpx
    except ImportError:  # pragma: no cover
        return None
    if not isinstance(exc, httpx.HTTPError):
        return None
    # httpx wraps httpcore's exception, which wraps the socket's or ssl's: walk the chain.
    cause = exc.__cause__ or exc.__context__
    for _ in range(6):
        if cause is None or cause is exc:
            break
        inner = classify(cause)
        if not inner.startswith(UNKNOWN):
            return inner
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        return GENERIC_TIMEOUT
    if isinstance(exc, httpx.ConnectError):
        return CONNECTION_REFUSED if "refused" in str(exc).lower() else HTTP_REQUEST_FAILED
    if isinstance(exc, httpx.RemoteProtocolError):
        return EOF_ERROR if "closed" in str(exc).lower() else HTTP_REQUEST_FAILED
    return HTTP_REQUEST_FAILED


def is_dns_failure(failure: str | None) -> bool:
    return failure is not None and failure.startswith("dns_")
