"""Faults: the collector killed with SIGKILL mid-upload, and the database going down.

Both run the real ``voip-probe serve`` in a child process, on SQLite and on a real
PostgreSQL server started by the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe.collector.storage import Storage
from tests.collector.conftest import ADMIN_TOKEN
from tests.helpers.collector_files import measurement, summary

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LINES_PER_FILE = 40


def results_body(k: int) -> bytes:
    rid = f"kill-test-{k:05d}"
    lines = [measurement(rid, function="calls" if i % 2 else "messaging",
                         inp=f"tcp://e{i}.whatsapp.net:443") for i in range(LINES_PER_FILE)]
    return "".join(json.dumps(r) + "\n" for r in [*lines, summary(rid)]).encode()


def hammer(url: str, bodies: list[bytes], acked: dict[str, bytes], errors: list[str],
           lock: threading.Lock, stop: threading.Event) -> None:
    with httpx.Client(timeout=60) as client:
        for body in bodies:
            if stop.is_set():
                return
            try:
                r = client.post(url + "/api/v1/results", content=body)
            except httpx.HTTPError as exc:
                with lock:
                    errors.append(type(exc).__name__)
                return  # the server is gone
            if r.status_code in (200, 201):
                with lock:
                    acked[r.json()["id"]] = body
            else:
                with lock:
                    errors.append(f"HTTP {r.status_code}: {r.text}")


@pytest.mark.slow
def test_sigkill_during_concurrent_uploads_keeps_every_acknowledged_upload(
        backend_url: str | None, tmp_path: Path, collector_process: Any) -> None:
    data_dir = tmp_path / "collector"
    acked: dict[str, bytes] = {}
    transport_errors = 0
    counter = 0
    for _round in range(2):
        server = collector_process(backend_url, data_dir)
        errors: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()
        bodies = [results_body(counter + i) for i in range(400)]
        counter += len(bodies)
        clients = [threading.Thread(target=hammer, args=(
            server.url, bodies[i::16], acked, errors, lock, stop)) for i in range(16)]
        before = len(acked)
        for t in clients:
            t.start()
        deadline = time.monotonic() + 120  # generous: CI machines may be busy
        while len(acked) < before + 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # SIGKILL while the clients are still sending
        stop.set()
        for t in clients:
            t.join(30)
        assert len(acked) >= before + 30, errors[:3]
        assert not [e for e in errors if e.startswith("HTTP")], errors[:3]
        transport_errors += len(errors)
    print(f"acknowledged {len(acked)}, interrupted {transport_errors}")
    # The kills did interrupt uploads in flight (clients saw the connection drop).
    assert transport_errors > 0

    server = collector_process(backend_url, data_dir)
    with httpx.Client(timeout=60) as client:
        stored = {}
        after = None
        while True:
            page = client.get(server.url + "/api/v1/results", headers=ADMIN,
                              params={"limit": 1000, **({"after": after} if after else {})}
                              ).json()
            stored.update({u["id"]: u for u in page["uploads"]})
            if page["next"] is None:
                break
            after = page["next"]
        # Nothing acknowledged is lost, and each is intact byte for byte.
        assert set(acked) <= set(stored)
        for digest in list(acked)[:: max(1, len(acked) // 20)]:
            r = client.get(f"{server.url}/api/v1/results/{digest}", headers=ADMIN)
            assert r.status_code == 200 and r.content == acked[digest]
            again = client.post(server.url + "/api/v1/results", content=acked[digest])
            assert again.status_code == 200  # already stored, not stored twice
        # Nothing half-stored is visible: every visible upload is complete and indexed.
        total = 0
        after_m = 0
        while True:
            page = client.get(server.url + "/api/v1/measurements",
                              params={"limit": 1000, "after": after_m}).json()
            total += len(page["measurements"])
            if page["next"] is None:
                break
            after_m = page["next"]
        assert total == LINES_PER_FILE * len(stored)
        assert all(u["measurements"] == LINES_PER_FILE for u in stored.values())
    check = Storage(data_dir, backend_url)
    try:
        assert check.verify() == []
    finally:
        check.close()
    assert list(data_dir.glob("files/*/.incoming-*")) == []  # swept on restart


def run_upload(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config")}
    return subprocess.run([sys.executable, "-m", "probe", "upload", *args, "--json"],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_database_down_answers_503_and_the_client_succeeds_later(
        pg_server: Any, pg_url: str, tmp_path: Path, make_results: Any,
        collector_process: Any) -> None:
    server = collector_process(pg_url)
    first = Path(make_results(3))
    assert run_upload(str(first), "--collector", server.url, home=tmp_path).returncode == 0
    pg_server.stop("fast")
    try:
        second = Path(make_results(4))
        raw = httpx.post(server.url + "/api/v1/results", content=second.read_bytes(),
                         timeout=60)
        assert raw.status_code == 503
        assert "database unavailable" in raw.json()["error"] and raw.headers["retry-after"]
        assert httpx.get(server.url + "/api/v1/health", timeout=60).status_code == 503
        down = run_upload(str(second), "--collector", server.url, "--attempts", "2",
                          home=tmp_path)
        assert down.returncode == 3, down.stderr
        outcome = json.loads(down.stdout)["files"][0]
        assert outcome["status"] == "spooled" and "HTTP 503" in outcome["message"]
        spool = tmp_path / "data" / "voip-probe" / "spool"
        assert [p.read_bytes() for p in spool.glob("*.jsonl")] == [second.read_bytes()]
    finally:
        pg_server.start()
    later = run_upload("--pending", "--collector", server.url, home=tmp_path)
    assert later.returncode == 0, later.stderr
    assert [f["status"] for f in json.loads(later.stdout)["files"]] == ["stored"]
    assert list(spool.glob("*.jsonl")) == []
    uploads = httpx.get(server.url + "/api/v1/results", headers=ADMIN,
                        timeout=60).json()["uploads"]
    assert len(uploads) == 2
