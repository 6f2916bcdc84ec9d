"""The per-client limits (probe.collector.ratelimit): bounded tables, and a key that a
client cannot choose (forwarding headers believed only from proxies the operator named,
checked against a real ``voip-probe serve``)."""

from __future__ import annotations

from typing import Any

import httpx

from probe.collector.ratelimit import DailyQuota, RateLimiter


def test_bucket_table_is_a_bounded_lru() -> None:
    limiter = RateLimiter(per_minute=60, burst=2, max_clients=1000)
    now = 1000.0
    assert limiter.check("victim", now) == 0 and limiter.check("victim", now) == 0
    assert limiter.check("victim", now) > 0  # its bucket is empty
    for i in range(999):
        assert limiter.check(f"10.0.{i // 256}.{i % 256}", now) == 0
        if i % 100 == 0:  # the victim keeps being seen: it stays, and stays limited
            assert limiter.check("victim", now) > 0
    assert len(limiter) == 1000
    for i in range(5000):  # many more clients: the table stays bounded
        limiter.check(f"spoof-{i}", now)
    assert len(limiter) == 1000
    # the least recently used clients were forgotten (a fresh, full bucket)
    assert limiter.check("10.0.0.1", now) == 0 and limiter.check("10.0.0.1", now) == 0


def test_bucket_table_after_100001_clients_holds_only_the_bound() -> None:
    limiter = RateLimiter(per_minute=600)
    for i in range(100_001):
        limiter.check(f"c{i}", 5.0)
    assert len(limiter) == 100_000
    # each check is O(1): the least recent entry goes, none is scanned
    limiter.check("one more", 5.0)
    assert len(limiter) == 100_000


def test_daily_quota_reserve_refund_and_bound() -> None:
    quota = DailyQuota(limit_bytes=100, max_clients=10)
    assert quota.reserve("a", 60) and not quota.reserve("a", 50)
    quota.refund("a", 60)
    assert quota.reserve("a", 100) and not quota.reserve("a", 1)
    assert quota.reserve("b", 100)  # per client
    for i in range(20):
        quota.reserve(f"x{i}", 1)
    assert len(quota._used) == 10
    assert DailyQuota(0).reserve("a", 10**12)  # 0: no quota


def _codes(url: str, n: int, forwarded_for: str | None) -> list[int]:
    codes = []
    with httpx.Client(timeout=30) as client:
        for i in range(n):
            headers = {} if forwarded_for is None else {
                "X-Forwarded-For": forwarded_for.format(i=i)}
            codes.append(client.get(url + "/api/v1/summary", headers=headers).status_code)
    return codes


def test_forwarded_for_is_ignored_unless_the_proxy_is_named(collector_process: Any,
                                                            tmp_path: Any) -> None:
    # Default: a client on loopback sending X-Forwarded-For does not get a new key per
    # request (uvicorn alone would believe it from loopback).
    server = collector_process(data_dir=tmp_path / "a", extra=("--rate-limit", "3"))
    codes = _codes(server.url, 6, "198.18.0.{i}")  # the start-up probe took a token too
    assert codes.count(200) <= 3 and codes[-3:] == [429] * 3, codes
    # Named proxy: its forwarded client addresses are the keys.
    named = collector_process(data_dir=tmp_path / "b", extra=(
        "--rate-limit", "3", "--forwarded-allow-ips", "127.0.0.1"))
    assert _codes(named.url, 6, "198.18.0.{i}") == [200] * 6
    assert _codes(named.url, 4, "198.18.1.1") == [200] * 3 + [429]


def test_serve_options_reach_the_limits(collector_process: Any, tmp_path: Any,
                                        make_results: Any) -> None:
    """--daily-quota-mb and --upload-slots are taken by a real ``serve``."""
    from pathlib import Path

    server = collector_process(data_dir=tmp_path / "q", extra=(
        "--daily-quota-mb", "0.004", "--upload-slots", "1"))  # about 4 KiB a day
    small, other = Path(make_results(6)), Path(make_results(6))
    assert small.stat().st_size < 4000 < small.stat().st_size + other.stat().st_size
    with httpx.Client(timeout=30) as client:
        first = client.post(server.url + "/api/v1/results", content=small.read_bytes())
        second = client.post(server.url + "/api/v1/results", content=other.read_bytes())
    assert first.status_code == 201, first.text
    assert second.status_code == 429 and "daily upload quota" in second.json()["error"]
