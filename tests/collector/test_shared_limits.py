"""Rate limits and quotas that hold across collectors sharing one real PostgreSQL: each
collector's limiter is its own object (as in its own process), the buckets are the
database's."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe.collector.ratelimit import RateLimiter
from probe.collector.shared_limits import SharedDailyQuota, SharedRateLimiter
from probe.collector.storage import Storage
from tests.collector.test_scale_out import start_together


@pytest.fixture
def two_databases_views(pg_url: str, tmp_path: Path) -> Any:
    """Two collectors' storages on one database (each with its own connections)."""
    a, b = Storage(tmp_path / "a", pg_url), Storage(tmp_path / "b", pg_url)
    a.open()
    b.open()
    yield a, b
    a.close()
    b.close()


def test_a_clients_tokens_are_shared_by_every_collector(two_databases_views: Any) -> None:
    a, b = two_databases_views
    first, second = (SharedRateLimiter(s.db, per_minute=60, burst=3) for s in (a, b))
    assert [first.check("203.0.113.9"), second.check("203.0.113.9"),
            first.check("203.0.113.9")] == [0.0, 0.0, 0.0]
    for limiter in (second, first):
        wait_s = limiter.check("203.0.113.9")
        assert 0 < wait_s <= 1.0  # one token a second
    assert second.check("198.51.100.4") == 0.0  # another client has its own bucket
    # In memory, each collector would have let three more through.
    apart = [RateLimiter(60, burst=3) for _ in range(2)]
    assert [r.check("203.0.113.9", now=0.0) for r in apart for _ in range(3)] == [0.0] * 6


def test_concurrent_requests_over_two_collectors_take_exactly_the_burst(
        two_databases_views: Any) -> None:
    limiters = [SharedRateLimiter(s.db, per_minute=1, burst=10) for s in two_databases_views]
    allowed: list[bool] = []
    lock = threading.Lock()

    def take(i: int) -> None:
        ok = limiters[i % 2].check("203.0.113.9") == 0.0
        with lock:
            allowed.append(ok)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(allowed) == 24 and sum(allowed) == 10


def test_the_daily_quota_is_shared_and_refunds_count_everywhere(
        two_databases_views: Any) -> None:
    a, b = (SharedDailyQuota(s.db, limit_bytes=1000) for s in two_databases_views)
    assert a.reserve("203.0.113.9", 600)
    assert not b.reserve("203.0.113.9", 500)  # 1100 > 1000: nothing counted
    assert b.reserve("203.0.113.9", 400)
    assert not a.reserve("203.0.113.9", 1)
    a.refund("203.0.113.9", 400)
    assert b.reserve("203.0.113.9", 300)
    assert a.reserve("198.51.100.4", 1000)  # another client


def test_addresses_are_never_stored(two_databases_views: Any) -> None:
    a, _ = two_databases_views
    SharedRateLimiter(a.db, per_minute=60).check("203.0.113.9")
    SharedDailyQuota(a.db, limit_bytes=1000).reserve("203.0.113.9", 10)
    with a.db.connection() as conn:
        rows = [*conn.fetchall("SELECT client FROM rate_buckets"),
                *conn.fetchall("SELECT client FROM upload_quota")]
    assert len(rows) == 2
    for (client,) in rows:
        raw = bytes(client)
        assert len(raw) == 16 and b"203.0.113.9" not in raw


@pytest.mark.slow
def test_two_serve_processes_share_one_allowance(pg_url: str, tmp_path: Path) -> None:
    """--rate-limit 6 on two collectors: each took one token for its start-up health
    check; requests spread over both then get four answers in all before 429, where
    limits in each process's memory would give ten."""
    servers = start_together(tmp_path, pg_url, 2, extra=("--rate-limit", "6"))
    try:
        statuses = []
        with httpx.Client(timeout=60) as client:
            for i in range(12):
                r = client.get(servers[i % 2].url + "/api/v1/summary")
                statuses.append(r.status_code)
        assert set(statuses) == {200, 429}
        assert statuses.count(200) <= 4, statuses
        assert statuses[-1] == 429
    finally:
        for server in servers:
            server.stop()
