"""The collector's HTTP API on both back ends (SQLite and a real PostgreSQL server).

Every test here runs twice through the ``backend_url`` fixture: once on SQLite, once on
a PostgreSQL server the tests started themselves (see conftest.py).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from probe.collector.storage import Storage
from tests.collector.conftest import ADMIN_TOKEN
from tests.helpers.collector_files import measurement, summary

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
POST = "/api/v1/results"


def jsonl(*records: dict[str, Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def nothing_stored(api: Any, storage: Storage) -> None:
    assert api.get("/api/v1/results", headers=ADMIN).json()["uploads"] == []
    assert api.get("/api/v1/measurements").json()["measurements"] == []
    assert list(storage.blobs.ids()) == []
    # not even a temporary file is left (with raw files in the database: where uploads
    # are staged)
    assert [p for p in storage.blobs.root.rglob("*") if p.is_file()] == []


def test_upload_then_replay_is_idempotent(api: Any, storage: Storage,
                                          make_results: Any) -> None:
    data = Path(make_results(5)).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    first = api.post(POST, content=data, params={"filename": "run.jsonl"})
    assert first.status_code == 201, first.text
    assert first.json() == {"id": digest, "measurements": 5}
    again = api.post(POST, content=gzip.compress(data), headers={"Content-Encoding": "gzip"})
    assert again.status_code == 200 and again.json() == first.json()
    # stored once, byte for byte, under its hash
    assert storage.blobs.get(digest) == data
    uploads = api.get("/api/v1/results", headers=ADMIN).json()["uploads"]
    assert [(u["id"], u["filename"], u["measurements"]) for u in uploads] == [
        (digest, "run.jsonl", 5)]
    assert api.get(f"/api/v1/results/{digest}", headers=ADMIN).content == data
    assert storage.verify() == []


def test_gzip_upload(api: Any, make_results: Any) -> None:
    data = Path(make_results(3)).read_bytes()
    r = api.post(POST, content=gzip.compress(data), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 201
    assert r.json()["id"] == hashlib.sha256(data).hexdigest()


def _bad_bodies(tmp_path: Path, make_results: Any) -> list[tuple[str, bytes, dict[str, str],
                                                                  dict[str, str], int, str]]:
    good = Path(make_results(3)).read_bytes()
    torn = Path(make_results(3, torn=True)).read_bytes()
    no_summary = Path(make_results(3, with_summary=False)).read_bytes()
    wrong = measurement("r")
    del wrong["test_keys"]["failure"]
    gz = {"Content-Encoding": "gzip"}
    # Bombs: valid lines repeated until the file is far beyond the limit (stopped by the
    # inflated size), and empty lines (stopped at the first line, as it streams in).
    line = (json.dumps(measurement("r")) + "\n").encode()
    bomb = gzip.compress(line * (50 * 1024 * 1024 // len(line)), compresslevel=9)
    blank_bomb = gzip.compress(b"\n" * (50 * 1024 * 1024), compresslevel=9)
    return [
        ("oversized", good * 1000, {}, {}, 413, "larger than the limit"),
        ("truncated (torn)", torn, {}, {}, 400, "torn last line"),
        ("truncated (no summary)", no_summary, {}, {}, 422, "summary"),
        ("truncated mid-line", good[: len(good) // 2], {}, {}, 400, "torn last line"),
        ("non-JSON", b"GET / HTTP/1.1\n", {}, {}, 400, "not valid JSON"),
        ("binary", bytes(range(256)) + b"\n", {}, {}, 400, "line 1"),
        ("wrong schema", jsonl(wrong, summary("r")), {}, {}, 422, "no 'failure' key"),
        ("gzip bomb", bomb, gz, {}, 413, "inflates beyond"),
        ("gzip bomb of empty lines", blank_bomb, gz, {}, 400, "line 1: empty line"),
        ("not gzip", good, gz, {}, 400, "not valid gzip"),
        ("odd encoding", good, {"Content-Encoding": "br"}, {}, 415, "Content-Encoding"),
        ("odd filename ../", good, {}, {"filename": "../../etc/passwd"}, 400, "filename"),
        ("odd filename NUL", good, {}, {"filename": "a\0b.jsonl"}, 400, "filename"),
        ("odd filename slash", good, {}, {"filename": "/tmp/x.jsonl"}, 400, "filename"),
        ("empty", b"", {}, {}, 400, "empty body"),
    ]


def test_bad_input_is_4xx_with_a_reason_and_nothing_is_stored(
        api: Any, storage: Storage, tmp_path: Path, make_results: Any) -> None:
    for name, body, headers, params, status, words in _bad_bodies(tmp_path, make_results):
        r = api.post(POST, content=body, headers=headers, params=params)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert words in r.json()["error"], (name, r.json())
    nothing_stored(api, storage)


def test_altered_replay_of_a_stored_report_is_refused(
        api: Any, storage: Storage, make_results: Any) -> None:
    path = Path(make_results(3, report_id="rid-1"))
    data = path.read_bytes()
    assert api.post(POST, content=data).status_code == 201
    lines = data.splitlines(keepends=True)
    altered = b"".join([lines[0].replace(b'"failure":null', b'"failure":"x"'), *lines[1:]])
    assert altered != data
    r = api.post(POST, content=altered)
    assert r.status_code == 409 and "already stored as a different file" in r.json()["error"]
    assert len(api.get("/api/v1/results", headers=ADMIN).json()["uploads"]) == 1
    assert storage.verify() == []


def test_partial_upload_of_a_crashed_run(api: Any, make_results: Any) -> None:
    data = Path(make_results(3, with_summary=False)).read_bytes()
    r = api.post(POST, content=data, params={"partial": "true"})
    assert r.status_code == 201 and r.json()["measurements"] == 3
    info = api.get("/api/v1/results", headers=ADMIN).json()["uploads"][0]
    assert info["complete"] is False
    assert api.get("/api/v1/summary").json() == {"summary": []}  # no verdicts in it


def test_measurement_filters_and_paging(api: Any, make_results: Any) -> None:
    for start, asn, cc in (("2016-01-07 08:00:00", "AS36903", "MA"),
                           ("2016-11-04 09:30:00", "AS36903", "MA"),
                           ("2016-11-04 10:00:00", "AS6713", "MA"),
                           ("2016-11-05 10:00:00", "AS3215", "FR")):
        assert api.post(POST, content=Path(
            make_results(4, start=start, asn=asn, cc=cc)).read_bytes()).status_code == 201

    def query(**params: Any) -> list[dict[str, Any]]:
        r = api.get("/api/v1/measurements", params=params)
        assert r.status_code == 200, r.text
        return [m["measurement"] for m in r.json()["measurements"]]

    assert len(query(limit=1000)) == 16
    assert {m["probe_asn"] for m in query(asn="AS36903")} == {"AS36903"}
    assert len(query(asn="36903")) == 8
    assert len(query(cc="fr")) == 4
    assert {m["function"] for m in query(function="calls")} == {"calls"}
    assert len(query(service="whatsapp", function="calls")) == 8
    assert len(query(since="2016-11-04")) == 12
    assert len(query(since="2016-11-04", until="2016-11-04")) == 8
    assert len(query(since="2016-11-04T09:45:00Z", until="2016-11-04 23:00:00")) == 4
    assert query(service="viber") == []

    seen: list[int] = []
    after = 0
    while True:
        page = api.get("/api/v1/measurements", params={"limit": 5, "after": after}).json()
        seen += [m["cursor"] for m in page["measurements"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert len(seen) == 16 and len(set(seen)) == 16 and seen == sorted(seen)

    bad = api.get("/api/v1/measurements", params={"since": "last tuesday"})
    assert bad.status_code == 422 and "since" in bad.json()["error"]
    assert api.get("/api/v1/measurements", params={"limit": 0}).status_code == 422


def test_summary_per_day_network_service_function(api: Any, make_results: Any) -> None:
    services = {"whatsapp": {"status": "blocked", "functions": {
        "calls": {"status": "blocked", "reachable": 0, "total": 3, "methods": ["stun_dpi"]},
        "messaging": {"status": "ok", "reachable": 4, "total": 4, "methods": []}}}}
    ok = {"whatsapp": {"status": "ok", "functions": {
        "calls": {"status": "ok", "reachable": 3, "total": 3, "methods": []}}}}
    for start, svc, net in (("2016-01-07 08:00:00", services, "mobile"),
                            ("2016-01-07 20:00:00", services, "mobile"),
                            ("2016-01-07 21:00:00", ok, "fixed"),
                            ("2016-11-04 09:00:00", ok, "mobile")):
        api.post(POST, content=Path(make_results(
            2, start=start, services=svc, network_type=net)).read_bytes())
    rows = api.get("/api/v1/summary", params={"function": "calls"}).json()["summary"]
    table = {(r["day"], r["network_type"]): (r["runs"], r["statuses"]["blocked"],
                                              r["statuses"]["ok"], r["methods"]) for r in rows}
    assert table == {
        ("2016-01-07", "mobile"): (2, 2, 0, {"stun_dpi": 2}),
        ("2016-01-07", "fixed"): (1, 0, 1, {}),
        ("2016-11-04", "mobile"): (1, 0, 1, {}),
    }
    assert all(r["asn"] == "AS36903" and r["service"] == "whatsapp" for r in rows)
    later = api.get("/api/v1/summary", params={"since": "2016-11-01"}).json()["summary"]
    assert [(r["day"], r["function"]) for r in later] == [("2016-11-04", "calls")]


def test_admin_endpoints_need_the_token(api: Any, storage: Storage, make_results: Any) -> None:
    digest = api.post(POST, content=Path(make_results(2)).read_bytes()).json()["id"]
    for method, url in (("GET", "/api/v1/results"), ("GET", f"/api/v1/results/{digest}"),
                        ("DELETE", f"/api/v1/results/{digest}")):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = api.request(method, url, headers=headers)
            assert r.status_code == 401 and "admin token" in r.json()["error"]
    assert api.get(f"/api/v1/results/{'0' * 64}", headers=ADMIN).status_code == 404
    assert api.get("/api/v1/results/..%2F..%2Fetc", headers=ADMIN).status_code in (404, 422)
    r = api.delete(f"/api/v1/results/{digest}", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"id": digest, "deleted": True}
    assert not storage.blobs.exists(digest)
    nothing_stored(api, storage)
    assert api.delete(f"/api/v1/results/{digest}", headers=ADMIN).status_code == 404


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_admin_disabled_without_token_and_rate_limit(tmp_path: Path, storage: Storage,
                                                     make_results: Any) -> None:
    from fastapi.testclient import TestClient

    from probe.collector.app import create_app
    from probe.collector.config import CollectorConfig

    app = create_app(storage, CollectorConfig(rate_limit_per_min=3))
    with TestClient(app) as client:
        assert client.get("/api/v1/results", headers=ADMIN).status_code == 403
        codes = [client.get("/api/v1/summary").status_code for _ in range(5)]
        assert codes[:2] == [200, 200] and codes[-1] == 429
        r = client.get("/api/v1/summary")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "rate limit" in r.json()["error"]


def test_openapi_is_published(api: Any) -> None:
    spec = api.get("/openapi.json").json()
    assert {"/api/v1/results", "/api/v1/measurements", "/api/v1/summary"} <= set(spec["paths"])
    body = spec["paths"]["/api/v1/results"]["post"]["requestBody"]
    assert "application/x-ndjson" in body["content"]


def test_text_databases_cannot_hold(api: Any, storage: Storage) -> None:
    """NUL and lone surrogates: refused in indexed fields, kept intact elsewhere."""
    bad = measurement("r-nul")
    bad["input"] = "tcp://a\u0000b:443"
    r = api.post(POST, content=jsonl(bad, summary("r-nul")))
    assert r.status_code == 422 and "'input' holds a NUL character" in r.json()["error"]
    lone = measurement("r-sur")
    lone["test_name"] = "\ud800"
    r = api.post(POST, content=jsonl(lone, summary("r-sur")))
    assert r.status_code == 422 and "'test_name'" in r.json()["error"]
    nothing_stored(api, storage)

    odd = measurement("r-ok")
    odd["test_keys"]["raw_reply\u0000"] = ["\u0000\ud800", "\u202e"]
    r = api.post(POST, content=jsonl(odd, summary("r-ok")))
    assert r.status_code == 201, r.text
    [item] = api.get("/api/v1/measurements").json()["measurements"]
    assert item["measurement"] == odd
    assert storage.verify() == []
    for url in ("/api/v1/measurements", "/api/v1/summary", "/api/v1/results"):
        r = api.get(url, params={"service": "x\u0000", "after": "\u0000"}, headers=ADMIN)
        assert r.status_code == 400 and "NUL" in r.json()["error"]
