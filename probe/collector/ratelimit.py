"""Per-client rate limiting (token buckets), kept in memory only.

Uploaders' addresses are never stored: a client is keyed by a keyed hash (HMAC with a
random per-process key) of its address, held in memory, and forgotten once its bucket is
full again. Many volunteers may share one address (mobile carrier-grade NAT), so the
default limit is generous; ``--rate-limit 0`` disables it.

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

from starlette.requests import Request

MAX_CLIENTS = 100_000


class RateLimiter:
    def __init__(self, per_minute: float, burst: float | None = None) -> None:
        self.rate_per_s = per_minute / 60.0
        self.capacity = burst if burst is not None else max(1.0, per_minute)
        self._key = os.urandom(32)
        self._buckets: dict[bytes, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def _client(self, address: str) -> bytes:
        return hmac.new(self._key, address.encode(), hashlib.sha256).digest()[:16]

    def check(self, address: str, now: float | None = None) -> float:
        """Take one token; return 0 when allowed, else the seconds to wait."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        key = self._client(address)
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate_per_s)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / self.rate_per_s
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > MAX_CLIENTS:
                self._prune(now)
            return 0.0

    def _prune(self, now: float) -> None:
        full_after = self.capacity / self.rate_per_s
        for key, (_, last) in list(self._buckets.items()):
            if now - last >= full_after:
                del self._buckets[key]


def take_token(request: Request) -> float:
    """Take the token of a request under ``/api/`` from its client's bucket (the app's
    ``state.limiter``), once per request; return 0 when allowed, else the seconds to wait."""
    if not request.url.path.startswith("/api/") or getattr(request.state, "rate_taken", False):
        return 0.0
    request.state.rate_taken = True
    limiter: RateLimiter = request.app.state.limiter
    return limiter.check(request.client.host if request.client else "")
