"""Collectors that scale out: two ``voip-probe serve`` processes, each with a data folder
of its own, on one real PostgreSQL (as behind a load balancer, on two machines).

Uploads spread over both; every acknowledged upload is readable, byte for byte, from
either; a file stored through one is "already stored" through the other, and another file
with its report id is refused there; one of them killed with SIGKILL mid-load loses
nothing it acknowledged. Both start at the same moment on a fresh database (the schema
is created once, under an advisory lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from probe.collector.storage import Storage
from probe.collector.validate import parse_upload
from tests.collector.conftest import ADMIN_TOKEN, CollectorProcess
from tests.collector.test_faults import LINES_PER_FILE, hammer, results_body

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
T = TypeVar("T")


def all_at_once(action: Callable[[T], object], items: list[T]) -> list[BaseException]:
    """``action`` on every item, each in a thread, released together; what they raised."""
    errors: list[BaseException] = []
    go = threading.Barrier(len(items))

    def run(item: T) -> None:
        go.wait()
        try:
            action(item)
        except BaseException as exc:  # reported by the caller, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def start_together(tmp_path: Path, pg_url: str, n: int,
                   extra: tuple[str, ...] = ()) -> list[CollectorProcess]:
    """``n`` collectors on one fresh database, started at the same moment."""
    procs = []
    for i in range(n):
        data_dir = tmp_path / f"machine-{i}"
        data_dir.mkdir()
        procs.append(CollectorProcess(data_dir, pg_url, extra))
    errors = all_at_once(CollectorProcess.start, procs)
    if errors:
        for p in procs:
            p.stop()
        raise errors[0]
    return procs


def all_uploads(client: httpx.Client, url: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = client.get(url + "/api/v1/results", headers=ADMIN,
                          params={"limit": 1000, **({"after": after} if after else {})}).json()
        found.update({u["id"]: u for u in page["uploads"]})
        if page["next"] is None:
            return found
        after = page["next"]


@pytest.mark.slow
def test_two_collectors_on_one_postgresql(pg_url: str, tmp_path: Path) -> None:
    a, b = start_together(tmp_path, pg_url, 2)
    try:
        acked: dict[str, bytes] = {}
        created = {a.url: 0, b.url: 0}
        errors: list[str] = []
        lock = threading.Lock()
        bodies = [results_body(k) for k in range(120)]

        def client_of(share: list[bytes], first: int) -> None:
            """Posts its share to the two collectors in turn, as a load balancer would."""
            with httpx.Client(timeout=60) as client:
                for j, body in enumerate(share):
                    url = (a, b)[(first + j) % 2].url
                    r = client.post(url + "/api/v1/results", content=body)
                    with lock:
                        if r.status_code == 201:
                            acked[r.json()["id"]] = body
                            created[url] += 1
                        else:
                            errors.append(f"HTTP {r.status_code}: {r.text}")

        clients = [threading.Thread(target=client_of, args=(bodies[i::16], i))
                   for i in range(16)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(180)
        assert errors == [] and len(acked) == len(bodies)
        # Both stored their share (each file once, through the one that got it).
        assert created[a.url] == created[b.url] == len(bodies) // 2
        with httpx.Client(timeout=60) as client:
            # Every acknowledged upload, from either, byte for byte.
            for server in (a, b):
                assert set(all_uploads(client, server.url)) == set(acked)
            for digest, body in acked.items():
                for server in (a, b):
                    r = client.get(f"{server.url}/api/v1/results/{digest}", headers=ADMIN)
                    assert r.status_code == 200 and r.content == body
            # Duplicates are told across them, whichever stored the file.
            for body in bodies[:10]:
                for server in (a, b):
                    again = client.post(server.url + "/api/v1/results", content=body)
                    assert again.status_code == 200, again.text
            altered = bodies[0].replace(b"tcp://e0.", b"tcp://e9.", 1)
            assert altered != bodies[0]
            for server in (a, b):
                r = client.post(server.url + "/api/v1/results", content=altered)
                assert r.status_code == 409, r.text
        # Nothing was written to either machine's own folder: no state of their own.
        for server in (a, b):
            assert [p for p in server.data_dir.rglob("*") if p.is_file()] == []
    finally:
        a.stop()
        b.stop()


@pytest.mark.slow
def test_one_of_two_collectors_killed_mid_load_loses_nothing_acknowledged(
        pg_url: str, tmp_path: Path) -> None:
    a, b = start_together(tmp_path, pg_url, 2)
    try:
        acked: dict[str, bytes] = {}
        errors: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()
        bodies = [results_body(1000 + k) for k in range(300)]
        clients = [threading.Thread(target=hammer, args=(
            (a, b)[i % 2].url, bodies[i::16], acked, errors, lock, stop)) for i in range(16)]
        for t in clients:
            t.start()
        deadline = time.monotonic() + 120  # generous: CI machines may be busy
        while len(acked) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        a.kill()  # SIGKILL while its clients are still sending
        for t in clients:
            t.join(180)
        assert len(acked) >= 40, errors[:3]
        assert not [e for e in errors if e.startswith("HTTP")], errors[:3]
        assert errors, "the kill interrupted no upload in flight"
        with httpx.Client(timeout=60) as client:
            stored = all_uploads(client, b.url)
            assert set(acked) <= set(stored)
            for digest, body in acked.items():
                r = client.get(f"{b.url}/api/v1/results/{digest}", headers=ADMIN)
                assert r.status_code == 200 and r.content == body
    finally:
        a.stop()
        b.stop()
    check = Storage(tmp_path / "check", pg_url)
    try:
        assert check.verify() == []  # every visible upload is whole: its file and its index
    finally:
        check.close()


def test_collectors_opening_one_fresh_database_at_once_create_it_once(
        pg_url: str, tmp_path: Path) -> None:
    """Eight collectors open a fresh database at the same moment: each waits its turn for
    the schema (concurrent CREATE TABLE IF NOT EXISTS fails in PostgreSQL otherwise), and
    all of them then work on the same tables."""
    stores = [Storage(tmp_path / f"m{i}", pg_url) for i in range(8)]
    errors = all_at_once(Storage.open, stores)
    try:
        assert errors == []
        upload = parse_upload(results_body(7))
        assert stores[0].store(upload).created
        assert all(st.stored_count(upload.sha256) == LINES_PER_FILE for st in stores)
        assert stores[-1].raw_file(upload.sha256) == upload.data
    finally:
        for st in stores:
            st.close()
