"""Fixtures for the collector tests: results files that follow DESIGN.md exactly, a real
PostgreSQL server started by the tests themselves, and storage on both back ends.

PostgreSQL tests skip when the server binaries are missing, but FAIL under ``CI=true``
(``.ci/run`` installs Debian's ``postgresql``), so CI always runs them.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe.collector import throwaway_pg
from probe.collector.storage import Storage
from probe.results import ResultsWriter
from tests.helpers.collector_files import measurement, summary

IN_CI = os.environ.get("CI", "").lower() == "true"

MakeResults = Callable[..., Path]

@pytest.fixture
def make_results(tmp_path: Path) -> MakeResults:
    """Write a results file with ResultsWriter (the probe's own writer) and return it.

    ``n`` measurements; ``with_summary=False`` and ``torn=True`` imitate a crashed run.
    """
    counter = itertools.count()

    def make(n: int = 3, *, report_id: str | None = None, start: str = "2016-11-04 09:30:00",
             asn: str = "AS36903", cc: str = "MA", network_type: str = "mobile",
             services: dict[str, Any] | None = None, with_summary: bool = True,
             torn: bool = False, folder: Path | None = None) -> Path:
        rid = report_id or f"20161104T093000Z_{asn}_{uuid.uuid4().hex[:12]}"
        name = f"20161104T093000Z_{asn}_{network_type}_{next(counter):04d}{rid[-6:]}.jsonl"
        path = (folder or tmp_path / "results") / name
        with ResultsWriter(path) as w:
            for i in range(n):
                function = "calls" if i % 2 else "messaging"
                w.write(measurement(rid, function=function, start=start, asn=asn, cc=cc,
                                    failure="generic_timeout_error" if i % 2 else None,
                                    inp=f"tcp://e{i}.whatsapp.net:443"))
            if with_summary:
                w.write(summary(rid, start=start, asn=asn, cc=cc, network_type=network_type,
                                services=services, results_file=str(path)))
        if torn:
            with open(path, "ab") as fh:
                fh.write(b'{"measurement_start_time": "2016-11-04 09:3')
        return path

    return make


@pytest.fixture(scope="session")
def pg_server() -> Iterator[throwaway_pg.ThrowawayPostgres]:
    reason = throwaway_pg.unavailable_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL tests cannot run under CI=true: {reason}")
        pytest.skip(reason)
    server = throwaway_pg.ThrowawayPostgres()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


_db_counter = itertools.count()


@pytest.fixture
def pg_url(pg_server: throwaway_pg.ThrowawayPostgres) -> str:
    if not pg_server.running:  # a previous test stopped it (database-down tests)
        pg_server.start()
    return pg_server.create_database(f"t{os.getpid()}_{next(_db_counter)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """``None`` (SQLite in the data dir, the default) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def storage(tmp_path: Path, backend_url: str | None) -> Iterator[Storage]:
    st = Storage(tmp_path / "collector", backend_url)
    st.open()
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def api(storage: Storage) -> Iterator[Any]:
    """An HTTP client on the collector app (in process), with an admin token."""
    from fastapi.testclient import TestClient

    from probe.collector.app import create_app
    from probe.collector.config import CollectorConfig

    cfg = CollectorConfig(admin_token=ADMIN_TOKEN, rate_limit_per_min=0, max_bytes=1 << 20)
    with TestClient(create_app(storage, cfg)) as client:
        yield client


ADMIN_TOKEN = "test-admin-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CollectorProcess:
    """``voip-probe serve`` in a child process on 127.0.0.1 (the real server path)."""

    def __init__(self, data_dir: Path, database_url: str | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> CollectorProcess:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "probe", "serve", "--port", str(port), "--data-dir",
               str(self.data_dir), "--rate-limit", "0", "--log-level", "warning",
               "--admin-token", ADMIN_TOKEN, *self.extra]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        self.log = open(self.data_dir.parent / f"serve-{port}.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90  # generous: CI machines may be busy
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {Path(self.log.name).read_text()}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve did not come up: {Path(self.log.name).read_text()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None:
            self.log.close()


@pytest.fixture
def collector_process(tmp_path: Path) -> Iterator[Callable[..., CollectorProcess]]:
    started: list[CollectorProcess] = []

    def start(database_url: str | None = None, data_dir: Path | None = None,
              extra: tuple[str, ...] = ()) -> CollectorProcess:
        d = data_dir or tmp_path / "collector"
        d.mkdir(parents=True, exist_ok=True)
        proc = CollectorProcess(d, database_url, extra)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
