"""Attacks on the collector, reproduced: each must now fail to do harm.

Memory (gzip bombs validated while they stream, a bound on bodies inflated at once),
disk (what one upload may store, a per-client daily quota), orphans (a file never left
without its index row, and verify() reports any), a page of measurements bounded in
bytes, and JSON that readers disagree on. Storage-facing tests run on SQLite and on a
real PostgreSQL server (``backend_url``).
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import hashlib
import json
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from probe.collector import intake
from probe.collector.app import create_app
from probe.collector.blobs import BlobStore
from probe.collector.config import CollectorConfig
from probe.collector.storage import Storage
from tests.collector.conftest import ADMIN_TOKEN
from tests.helpers.collector_files import SERVICES, measurement, summary

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
POST = "/api/v1/results"
GZ = {"Content-Encoding": "gzip"}


def jsonl(*records: dict[str, Any], ascii_only: bool = True) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in records).encode()


def results(rid: str, n: int = 2, ascii_only: bool = True, **fields: Any) -> bytes:
    lines = []
    for i in range(n):
        m = measurement(rid, inp=f"tcp://e{i}.whatsapp.net:443")
        m.update(fields)
        lines.append(m)
    return jsonl(*lines, summary(rid), ascii_only=ascii_only)


def files_on_disk(storage: Storage) -> list[Path]:
    return [p for p in storage.blobs.root.rglob("*") if p.is_file()]


def client_for(storage: Storage, **config: Any) -> TestClient:
    cfg = CollectorConfig(**{"admin_token": ADMIN_TOKEN, "rate_limit_per_min": 0,
                             "max_bytes": 1 << 20, **config})
    return TestClient(create_app(storage, cfg))


@pytest.fixture
def make_client(storage: Storage) -> Iterator[Any]:
    opened: list[TestClient] = []

    def make(**config: Any) -> TestClient:
        client = client_for(storage, **config).__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


# -- memory -------------------------------------------------------------------------

def _peak_mib(api: TestClient, body: bytes, headers: dict[str, str]) -> tuple[int, float]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        r = api.post(POST, content=body, headers=headers)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return r.status_code, peak / 2**20


def test_gzip_bombs_are_refused_while_streaming_in_little_memory(
        storage: Storage, make_client: Any) -> None:
    """The issue's bomb (32 KiB inflating to 33 MB of 'ab' lines) peaked at ~750 MiB
    before its 413; a bomb of valid lines and one of a single endless line likewise."""
    api = make_client(max_bytes=32 * 2**20)
    line = (json.dumps(measurement("bomb")) + "\n").encode()
    bombs = {
        "ab lines": (gzip.compress(b"ab\n" * 11_000_000, compresslevel=9), 400,
                     "line 1: not valid JSON"),
        "valid lines": (gzip.compress(line * (40 * 2**20 // len(line)), compresslevel=9),
                        413, "inflates beyond"),
        "one endless line": (gzip.compress(b"{" + b" " * (40 * 2**20), compresslevel=9),
                             413, "line 1: longer than"),
    }
    for name, (body, status, words) in bombs.items():
        assert len(body) < 200_000, name
        got, peak_mib = _peak_mib(api, body, GZ)
        assert got == status, name
        r = api.post(POST, content=body, headers=GZ)
        assert words in r.json()["error"], (name, r.json())
        # Python allocations while serving it: a few pieces and lines, not the body.
        assert peak_mib < 12, (name, peak_mib)
    assert files_on_disk(storage) == []
    assert storage.verify() == []


def test_a_large_valid_file_is_stored_without_holding_its_records(
        storage: Storage, make_client: Any) -> None:
    """Validation keeps only what the index needs; the lines are read again one by one
    while they are indexed."""
    api = make_client(max_bytes=32 * 2**20)
    rid = "big-file"
    body = results(rid, n=12_000)
    assert len(body) > 4 * 2**20
    status, peak_mib = _peak_mib(api, gzip.compress(body), GZ)
    assert status == 201
    assert peak_mib < len(body) / 2**20, peak_mib  # less than the file itself
    assert storage.upload_info(json.loads(api.post(POST, content=body).text)["id"]) \
        ["measurements"] == 12_000
    assert storage.verify() == []


def test_at_most_max_inflating_bodies_are_worked_on_at_once(
        storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    active = 0
    most = 0
    lock = threading.Lock()
    real_feed = intake.Intake.feed

    def counting_feed(self: intake.Intake, chunk: bytes) -> None:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        try:
            threading.Event().wait(0.02)  # hold the slot long enough for others to queue
            real_feed(self, chunk)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(intake.Intake, "feed", counting_feed)
    started = 0
    real_init = intake.Intake.__init__
    in_flight = 0
    most_in_flight = 0

    def counting_init(self: intake.Intake, *args: Any, **kw: Any) -> None:
        nonlocal started, in_flight, most_in_flight
        real_init(self, *args, **kw)
        with lock:
            started += 1
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)

    real_close = intake.Intake.close

    def counting_close(self: intake.Intake) -> None:
        nonlocal in_flight
        if self.staged is not None:
            with lock:
                in_flight -= 1
        real_close(self)

    monkeypatch.setattr(intake.Intake, "__init__", counting_init)
    monkeypatch.setattr(intake.Intake, "close", counting_close)
    bomb = gzip.compress(b"ab\n" * 2_000_000)
    app = create_app(storage, CollectorConfig(rate_limit_per_min=0, max_inflating=2,
                                              max_bytes=32 * 2**20))

    async def storm() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
            answers = await asyncio.gather(*[
                client.post(POST, content=bomb, headers=GZ) for _ in range(8)])
        return [a.status_code for a in answers]

    assert asyncio.run(storm()) == [400] * 8
    assert started == 8
    assert most_in_flight <= 2 and most <= 2, (most_in_flight, most)
    assert files_on_disk(storage) == []


# -- disk ---------------------------------------------------------------------------

def test_what_one_upload_may_store_is_bounded(storage: Storage, make_client: Any) -> None:
    """A file whose indexed copy would be far larger than the file (non-ASCII text is
    escaped in the index) is refused, and nothing of it stays."""
    api = make_client(max_bytes=1 << 20, max_stored_bytes=1 << 20)
    emoji = results("emoji", n=3, ascii_only=False,
                    test_keys={"failure": None, "banner": "\U0001f600" * 40_000})
    assert len(emoji) < 1 << 20
    r = api.post(POST, content=gzip.compress(emoji), headers=GZ)
    assert r.status_code == 413 and "to store with its indexed copy" in r.json()["error"]
    assert files_on_disk(storage) == [] and storage.verify() == []
    # a file larger than the limit inflated is refused as it streams
    big = results("big", n=3000)
    assert len(big) > 1 << 20
    r = api.post(POST, content=gzip.compress(big), headers=GZ)
    assert r.status_code == 413 and "inflates beyond the limit" in r.json()["error"]
    assert api.post(POST, content=results("small", n=3)).status_code == 201


def test_daily_quota_per_client(storage: Storage, make_client: Any) -> None:
    first = results("quota-1", n=40)
    quota = int(len(first) * 2.5)
    api = make_client(daily_quota_bytes=quota)
    assert api.post(POST, content=gzip.compress(first), headers=GZ).status_code == 201
    # a refused file and a file stored before take nothing of the quota
    assert api.post(POST, content=first[:-1]).status_code == 400
    for _ in range(5):
        assert api.post(POST, content=first).status_code == 200
    assert api.post(POST, content=results("quota-2", n=40)).status_code == 201
    r = api.post(POST, content=gzip.compress(results("quota-3", n=40)), headers=GZ)
    assert r.status_code == 429
    assert "daily upload quota" in r.json()["error"] and "00:00 UTC" in r.json()["error"]
    assert 0 < int(r.headers["retry-after"]) <= 86401
    stored = api.get("/api/v1/results", headers=ADMIN).json()["uploads"]
    assert len(stored) == 2
    assert storage.verify() == []


# -- orphans ------------------------------------------------------------------------

def test_out_of_range_counts_are_refused_before_anything_is_written(
        storage: Storage, make_client: Any) -> None:
    api = make_client()
    for value in (2**63, 2**31, -1):
        s = summary("huge", services=copy.deepcopy(SERVICES))
        s["services"]["whatsapp"]["functions"]["calls"]["reachable"] = value
        r = api.post(POST, content=jsonl(measurement("huge"), s))
        assert 400 <= r.status_code < 500, (value, r.text)
    assert files_on_disk(storage) == [] and storage.verify() == []


def test_a_failure_after_the_file_was_written_leaves_no_orphan(
        storage: Storage, make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    api = make_client()
    api_raise = TestClient(api.app, raise_server_exceptions=False)

    def broken(*_: Any) -> int:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    monkeypatch.setattr(storage.status, "add", broken)
    r = api_raise.post(POST, content=results("orphan"))
    assert r.status_code == 500
    assert files_on_disk(storage) == [] and storage.verify() == []
    monkeypatch.undo()
    assert api.post(POST, content=results("orphan")).status_code == 201
    assert storage.verify() == []


def test_verify_reports_a_file_without_its_index_row_and_open_removes_it(
        storage: Storage, make_client: Any) -> None:
    kept = results("kept")
    assert make_client().post(POST, content=kept).status_code == 201
    data = results("lost")
    digest = hashlib.sha256(data).hexdigest()
    leave_unindexed(storage, digest, data)  # as a crash between the two steps would
    assert storage.verify() == [
        f"{digest}: stored file without an index row (an upload that failed after its "
        "file was written, or one being stored right now)"]
    storage.open()  # a restart: the leftover goes, the stored file stays
    assert storage.verify() == []
    assert not storage.blobs.exists(digest)
    assert storage.blobs.get(hashlib.sha256(kept).hexdigest()) == kept


def leave_unindexed(storage: Storage, digest: str, data: bytes) -> None:
    """A stored file without its index row: on disk (files), or a ``blobs`` row (raw
    files in the database: written in the index's transaction, so only a bug or a hand
    could leave one)."""
    if isinstance(storage.blobs, BlobStore):
        storage.blobs.put(digest, data)
        return
    with storage.db.connection() as conn:
        conn.execute("INSERT INTO blobs (id, part, data) VALUES (?, 0, ?)", (digest, data))


# -- paging -------------------------------------------------------------------------

def test_a_page_of_measurements_is_bounded_in_bytes(storage: Storage,
                                                    make_client: Any) -> None:
    api = make_client(page_bytes=50_000)
    for k in range(3):
        body = results(f"heavy-{k}", n=20, input="x" * 2000)
        assert api.post(POST, content=body).status_code == 201
    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        r = api.get("/api/v1/measurements", params={"limit": 1000, "after": after})
        assert r.status_code == 200
        assert len(r.content) < 50_000 + 10_000  # the records plus their envelopes
        page = r.json()
        seen += [m["cursor"] for m in page["measurements"]]
        pages += 1
        if page["next"] is None:
            break
        assert page["measurements"] and page["next"] == seen[-1]
        after = page["next"]
    assert len(seen) == 60 and seen == sorted(set(seen))
    assert pages >= 3
    # a record larger than the budget still comes, alone on its page
    api2 = make_client(page_bytes=10)
    page = api2.get("/api/v1/measurements", params={"limit": 5}).json()
    assert len(page["measurements"]) == 1 and page["next"] == page["measurements"][0]["cursor"]


# -- data ---------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "status", "words"), [
    (b'{"x": 1e999}', 400, "number 1e999 is out of range"),
    (b'{"x": -1e999}', 400, "out of range"),
    (b'{"x": 99999999999999999999}', 400, "integer 99999999999999999999 is out of range"),
    (b'{"x": NaN}', 400, "not valid JSON"),
    (b'{"x": 1, "x": 2}', 400, "duplicate key 'x'"),
    (b'{"a": {"x": 1, "x": 2}}', 400, "duplicate key 'x'"),
], ids=["inf", "-inf", "int65", "nan", "dup", "nested-dup"])
def test_json_that_readers_disagree_on_is_refused(
        storage: Storage, make_client: Any, line: bytes, status: int, words: str) -> None:
    api = make_client()
    m = json.dumps(measurement("r"))
    body = (m[:-1] + ", " + line.decode()[1:-1] + "}\n").encode() + jsonl(summary("r"))
    r = api.post(POST, content=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"] and "line 1" in r.json()["error"]
    assert files_on_disk(storage) == [] and storage.verify() == []


@pytest.mark.parametrize("field", ["probe_cc", "probe_asn", "service", "function",
                                   "measurement_start_time"])
def test_a_trailing_newline_does_not_pass_a_pattern(
        storage: Storage, make_client: Any, field: str) -> None:
    api = make_client()
    m = measurement("r")
    m[field] = m[field] + "\n"
    r = api.post(POST, content=jsonl(m, summary("r")))
    assert r.status_code == 422 and field in r.json()["error"], r.text
    s = summary("r")
    if field in s:
        s[field] = s[field] + "\n"
        r = api.post(POST, content=jsonl(measurement("r"), s))
        assert r.status_code == 422 and field in r.json()["error"], r.text
    assert files_on_disk(storage) == []


def test_duplicate_keys_cannot_make_the_index_and_the_file_disagree(
        storage: Storage, make_client: Any) -> None:
    api = make_client()
    m = json.dumps(measurement("r"))
    body = (m[:-1] + ', "probe_cc": "IR"}\n').encode() + jsonl(summary("r"))
    assert api.post(POST, content=body).status_code == 400
    assert api.get("/api/v1/measurements", params={"cc": "IR"}).json()["measurements"] == []
