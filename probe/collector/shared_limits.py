"""Per-client limits that hold across collectors: kept in the PostgreSQL database they share.

Several ``voip-probe serve`` processes behind one load balancer each see a share of a
client's requests; limits kept in each process's memory (:mod:`probe.collector.ratelimit`)
would give a client one allowance per process. These keep the same limits in the shared
database instead, behind the same small interfaces (:class:`~probe.collector.ratelimit.
Limiter`, :class:`~probe.collector.ratelimit.Quota`), each request one atomic statement:

* :class:`SharedRateLimiter`: token buckets (table ``rate_buckets``), refilled on the
  database server's clock, so the machines' clocks need not agree;
* :class:`SharedDailyQuota`: bytes stored per client and UTC day (table ``upload_quota``).

Privacy: a client is keyed, as in memory, by a keyed hash of its address, never the
address. The key is shared through the database (table ``limit_key``, made once by the
first collector), so whoever can read the database can test a guessed address against
the rows there; to keep that window short, a bucket's row is removed once it is full
again (minutes) and a quota's row the day after.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from probe.collector.db import Database

# How often (seconds) a collector removes the rows that no longer hold anything.
PRUNE_EVERY_S = 60.0

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())"
# The bucket's tokens now, before this request takes one (params: capacity, rate).
_REFILLED = "LEAST(?, b.tokens + (EXCLUDED.updated - b.updated) * ?)"


class _SharedKey:
    """The keyed hash of client addresses that every collector on the database uses."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._key: bytes | None = None
        self._lock = threading.Lock()
        self._pruned = 0.0

    def _client(self, address: str) -> bytes:
        with self._lock:
            if self._key is None:
                with self.db.connection() as conn:
                    conn.execute("INSERT INTO limit_key (id, secret) VALUES (1, ?) "
                                 "ON CONFLICT DO NOTHING", (os.urandom(32),))
                    row = conn.fetchone("SELECT secret FROM limit_key WHERE id = 1")
                assert row is not None
                self._key = bytes(row[0])
            key = self._key
        return hmac.new(key, address.encode(), hashlib.sha256).digest()[:16]

    def _due(self) -> bool:
        """Whether this collector should prune now (at most every PRUNE_EVERY_S)."""
        now = time.monotonic()
        with self._lock:
            if now - self._pruned < PRUNE_EVERY_S:
                return False
            self._pruned = now
            return True


class SharedRateLimiter(_SharedKey):
    """Token buckets in the database: ``per_minute`` tokens a minute, ``burst`` at most."""

    def __init__(self, db: Database, per_minute: float, burst: float | None = None) -> None:
        super().__init__(db)
        self.rate_per_s = per_minute / 60.0
        self.capacity = burst if burst is not None else max(1.0, per_minute)

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def check(self, address: str, now: float | None = None) -> float:
        """Take one token of ``address``; 0 when allowed, else the seconds to wait.
        ``now`` is not used: the buckets run on the database server's clock."""
        if not self.enabled:
            return 0.0
        client = self._client(address)
        cap, rate = self.capacity, self.rate_per_s
        with self.db.connection() as conn:
            row = conn.fetchone(
                "INSERT INTO rate_buckets AS b (client, tokens, updated, allowed) "
                f"VALUES (?, ? - 1, {_NOW}, 1) ON CONFLICT (client) DO UPDATE SET "
                f"tokens = {_REFILLED} - CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END, "
                f"allowed = CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END, "
                "updated = EXCLUDED.updated RETURNING tokens, allowed",
                (client, cap, cap, rate, cap, rate, cap, rate))
            if self._due():
                conn.execute(f"DELETE FROM rate_buckets WHERE updated < {_NOW} - ?",
                             (cap / rate,))
        assert row is not None
        tokens, allowed = float(row[0]), bool(row[1])
        return 0.0 if allowed else (1.0 - tokens) / rate


class SharedDailyQuota(_SharedKey):
    """Bytes a client may have stored per UTC day (``limit_bytes``; 0: no quota)."""

    def __init__(self, db: Database, limit_bytes: int) -> None:
        super().__init__(db)
        self._limit = limit_bytes

    @property
    def limit_bytes(self) -> int:
        return self._limit

    def reserve(self, address: str, nbytes: int) -> bool:
        if self._limit <= 0:
            return True
        if nbytes > self._limit:
            return False
        client, day = self._client(address), _today()
        with self.db.connection() as conn:
            row = conn.fetchone(
                "INSERT INTO upload_quota AS q (client, day, used) VALUES (?, ?, ?) "
                "ON CONFLICT (client, day) DO UPDATE SET used = q.used + EXCLUDED.used "
                "WHERE q.used + EXCLUDED.used <= ? RETURNING used",
                (client, day, nbytes, self._limit))
            if self._due():
                conn.execute("DELETE FROM upload_quota WHERE day < ?", (day,))
        return row is not None

    def refund(self, address: str, nbytes: int) -> None:
        if self._limit <= 0:
            return
        client = self._client(address)
        with self.db.connection() as conn:
            conn.execute("UPDATE upload_quota SET used = GREATEST(0, used - ?) "
                         "WHERE client = ? AND day = ?", (nbytes, client, _today()))


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")
