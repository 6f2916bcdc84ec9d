"""Fixtures for the collector tests: results files that follow DESIGN.md exactly, a real
PostgreSQL server started by the tests themselves, and storage on both back ends.

PostgreSQL tests skip when the server binaries are missing, but FAIL under ``CI=true``
(``.ci/run`` installs Debian's ``postgresql``), so CI always runs them.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.collector import throwaway_pg
from probe.collector.storage import Storage
from probe.results import ResultsWriter

IN_CI = os.environ.get("CI", "").lower() == "true"

MakeResults = Callable[..., Path]

SERVICES = {
    "whatsapp": {"status": "blocked", "functions": {
        "messaging": {"status": "ok", "reachable": 2, "total": 2, "methods": []},
        "calls": {"status": "blocked", "reachable": 0, "total": 1, "methods": ["stun_dpi"]},
    }},
}


def measurement(report_id: str, *, service: str = "whatsapp", function: str = "messaging",
                start: str = "2016-11-04 09:30:00", asn: str = "AS36903", cc: str = "MA",
                failure: str | None = None, test_name: str = "tcp_connect",
                inp: str = "tcp://e1.whatsapp.net:443") -> dict[str, Any]:
    return {
        "measurement_start_time": start, "test_runtime": 0.12, "probe_asn": asn,
        "probe_cc": cc, "report_id": report_id, "software_name": "voip-probe",
        "software_version": "0.1.0", "input": inp, "annotations": {"network_type": "mobile"},
        "test_name": test_name, "test_keys": {"failure": failure},
        "service": service, "function": function, "pass": "main", "schema_version": 1,
    }


def summary(report_id: str, *, start: str = "2016-11-04 09:30:00", asn: str = "AS36903",
            cc: str = "MA", network_type: str = "mobile",
            services: dict[str, Any] | None = None, results_file: str = "") -> dict[str, Any]:
    return {
        "record": "summary", "schema_version": 1, "report_id": report_id,
        "measurement_start_time": start, "probe_asn": asn, "probe_cc": cc,
        "network": {"status": "online", "asn": asn, "cc": cc, "type": network_type},
        "services": SERVICES if services is None else services,
        "results_file": results_file,
    }


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
