"""Property-based API testing from the published OpenAPI spec (schemathesis).

Schemathesis generates requests for every operation from ``/openapi.json`` (including
bodies for the upload, query filters, paging cursors, path ids and the admin header)
and checks that the collector never answers with a server error. The collector holds
a stored file, so queries and admin operations have data to work on. Bounded: a fixed
number of examples per operation, so the test takes well under a minute.

A second property test mutates valid results files field by field (hypothesis, with
text that databases choke on: NUL, lone surrogates) and checks that every mutation is
stored and reads back intact, or is refused with a 4xx, never a 5xx. Both run on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from probe.collector.app import create_app
from probe.collector.config import CollectorConfig
from probe.collector.schemas import RESULTS_MEDIA_TYPES
from probe.collector.storage import Storage
from tests.collector.conftest import ADMIN_TOKEN
from tests.helpers.collector_files import measurement, summary

# The upload body is raw bytes whatever its media type.
for _media_type in RESULTS_MEDIA_TYPES:
    if _media_type != "application/octet-stream":
        schemathesis.serializer.alias(_media_type, "application/octet-stream")


@pytest.fixture
def collector_app(tmp_path: Path, make_results: Any, backend_url: str | None) -> Iterator[Any]:
    storage = Storage(tmp_path / "collector", backend_url)
    storage.open()
    app = create_app(storage, CollectorConfig(admin_token=ADMIN_TOKEN, rate_limit_per_min=0,
                                              max_bytes=256 * 1024))
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        r = client.post("/api/v1/results", content=Path(make_results(3)).read_bytes())
        assert r.status_code == 201
    yield app
    storage.close()


def test_no_server_error_for_any_request_the_spec_allows(collector_app: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", collector_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    calls: dict[str, int] = {}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            key = f"{case.method.upper()} {case.path}"
            calls[key] = calls.get(key, 0) + 1
            admin_path = case.path.startswith("/api/v1/results") and case.method != "POST"
            headers = admin if admin_path else None
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        check()
    # Every operation was exercised; those with inputs many times (a parameterless
    # GET has a single distinct request).
    assert len(calls) == len(operations) and sum(calls.values()) >= 300, calls


# Text includes what databases choke on: NUL, lone surrogates, other control characters.
_text = st.text(st.characters(exclude_categories=()), max_size=20) | st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "\udfff\ud800", "\u202e", "'; DROP TABLE uploads; --"])
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_fields = sorted(measurement("r").keys())


@given(line=st.integers(0, 2), field=st.sampled_from(_fields), value=_json,
       drop=st.booleans())
@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_mutated_results_files_are_stored_or_refused_never_5xx(
        collector_app: Any, line: int, field: str, value: Any, drop: bool) -> None:
    from fastapi.testclient import TestClient

    rid = "mutant"
    records = [measurement(rid), measurement(rid, function="calls"), summary(rid)]
    target = records[line]
    if drop:
        target.pop(field, None)
    else:
        target[field] = value
    body = "".join(json.dumps(r) + "\n" for r in records).encode()
    with TestClient(collector_app) as client:
        r = client.post("/api/v1/results", content=body)
        assert r.status_code in (200, 201) or 400 <= r.status_code < 500, r.text
        assert isinstance(r.json().get("error" if r.status_code >= 400 else "id"), str)
        if r.status_code in (200, 201):  # stored: it reads back intact, then goes
            page = client.get("/api/v1/measurements", params={"limit": 100}).json()
            got = [m["measurement"] for m in page["measurements"]
                   if m["upload_id"] == r.json()["id"]]
            assert got == [r for r in records if "record" not in r]
            assert client.delete(f"/api/v1/results/{r.json()['id']}",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                                 ).status_code == 200
