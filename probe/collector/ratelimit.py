"""Per-client limits, kept in memory only: a request rate (token buckets) and a daily
upload quota (bytes stored).

Uploaders' addresses are never stored: a client is keyed by a keyed hash (HMAC with a
random per-process key) of its address, held in memory. The address is the TCP peer's,
unless the operator named the proxies whose forwarding headers count
(``serve --forwarded-allow-ips``): otherwise a client could pick its own key. Many
volunteers may share one address (mobile carrier-grade NAT), so the default limits are
generous; ``--rate-limit 0`` and ``--daily-quota-mb 0`` disable them.

Both tables are bounded least-recently-used maps (:class:`_Lru`): O(1) work per request,
however many clients were seen; forgetting the least recent client only gives it a fresh
allowance. The routes use :class:`Limiter` and :class:`Quota`, small interfaces that a
shared implementation (several collector processes on one database) can provide too.

Every request under ``/api/`` takes one token (:func:`take_token`), wherever it is
answered: in a route's dependency (:func:`probe.collector.deps.limit_rate`), in the
refusal of a query holding NUL, or as a 404/405 when it matched no route.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

from starlette.requests import Request

MAX_CLIENTS = 100_000

V = TypeVar("V")


class Limiter(Protocol):
    def check(self, address: str, now: float | None = None) -> float:
        """Take one token of ``address``; return 0 when allowed, else seconds to wait."""


class Quota(Protocol):
    def reserve(self, address: str, nbytes: int) -> bool:
        """Count ``nbytes`` more against today's quota of ``address``; False (nothing
        counted) when that would exceed it."""

    def refund(self, address: str, nbytes: int) -> None:
        """Give back bytes reserved for an upload that was not stored."""

    @property
    def limit_bytes(self) -> int:
        """The daily quota per client (0: none)."""


class _Lru(Generic[V]):
    """A dict bounded to ``capacity`` keys that drops the least recently used one."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[bytes, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: bytes) -> bool:
        return key in self._items

    def get(self, key: bytes, default: V) -> V:
        value = self._items.get(key)
        if value is None:
            return default
        self._items.move_to_end(key)
        return value

    def put(self, key: bytes, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class _Keyed:
    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._lock = threading.Lock()

    def _client(self, address: str) -> bytes:
        return hmac.new(self._key, address.encode(), hashlib.sha256).digest()[:16]


class RateLimiter(_Keyed):
    """Token buckets, one per client: ``per_minute`` tokens a minute, ``burst`` at most."""

    def __init__(self, per_minute: float, burst: float | None = None,
                 max_clients: int = MAX_CLIENTS) -> None:
        super().__init__()
        self.rate_per_s = per_minute / 60.0
        self.capacity = burst if burst is not None else max(1.0, per_minute)
        self._buckets: _Lru[tuple[float, float]] = _Lru(max_clients)

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, address: str, now: float | None = None) -> float:
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        key = self._client(address)
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate_per_s)
            if tokens < 1.0:
                self._buckets.put(key, (tokens, now))
                return (1.0 - tokens) / self.rate_per_s
            self._buckets.put(key, (tokens - 1.0, now))
            return 0.0


class DailyQuota(_Keyed):
    """Bytes a client may have stored per UTC day (``limit_bytes``; 0: no quota)."""

    def __init__(self, limit_bytes: int, max_clients: int = MAX_CLIENTS) -> None:
        super().__init__()
        self._limit = limit_bytes
        self._day = ""
        self._used: _Lru[int] = _Lru(max_clients)

    @property
    def limit_bytes(self) -> int:
        return self._limit

    def _today(self) -> None:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        if day != self._day:
            self._day = day
            self._used.clear()

    def reserve(self, address: str, nbytes: int) -> bool:
        if self._limit <= 0:
            return True
        key = self._client(address)
        with self._lock:
            self._today()
            used = self._used.get(key, 0)
            if used + nbytes > self._limit:
                return False
            self._used.put(key, used + nbytes)
            return True

    def refund(self, address: str, nbytes: int) -> None:
        if self._limit <= 0:
            return
        key = self._client(address)
        with self._lock:
            self._today()
            if key in self._used:
                self._used.put(key, max(0, self._used.get(key, 0) - nbytes))


def client_address(request: Request) -> str:
    """The client's address as the limits key it: the TCP peer, or what a trusted proxy
    forwarded (uvicorn applies ``--forwarded-allow-ips`` before this)."""
    return request.client.host if request.client else ""


def take_token(request: Request) -> float:
    """Take the token of a request under ``/api/`` from its client's bucket (the app's
    ``state.limiter``), once per request; return 0 when allowed, else the seconds to wait."""
    if not request.url.path.startswith("/api/") or getattr(request.state, "rate_taken", False):
        return 0.0
    request.state.rate_taken = True
    limiter: Limiter = request.app.state.limiter
    return limiter.check(client_address(request))
