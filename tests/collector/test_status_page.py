"""The status page and GET /api/v1/events, in process, on SQLite and a real PostgreSQL.
(Chromium loading the page from a real ``serve`` after real lab runs:
tests/collector/test_status_page_browser.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from probe.analysis import crowd
from probe.collector.storage import Storage
from tests.helpers.collector_files import hourly_files, run_file

RULE = crowd.Rule(window_s=4 * 3600)  # short series: every upload is a commit


class Dom(HTMLParser):
    """Elements with their attributes, and whether every tag was closed."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in ("meta", "input", "br", "img", "link", "line", "rect", "path"):
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("line", "rect", "path"):
            return
        assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()

    def rows(self, cls: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == "tr" and a.get("class") == cls]


@pytest.fixture
def site(tmp_path: Path, backend_url: str | None) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from probe.collector.app import create_app
    from probe.collector.config import CollectorConfig

    storage = Storage(tmp_path / "collector", backend_url, RULE)
    storage.open()
    cfg = CollectorConfig(rate_limit_per_min=0, page_cache_s=0)
    try:
        with TestClient(create_app(storage, cfg)) as client:
            yield client
    finally:
        storage.close()


def upload(client: Any, files: list[bytes]) -> None:
    for data in files:
        r = client.post("/api/v1/results", content=data)
        assert r.status_code == 201, r.text


def fill(client: Any) -> None:
    # AS36903 mobile: two probes see the ban (confirmed); fixed: one probe (single-probe);
    # AS6713: a probe that flaps (no event); Egypt: all fine.
    upload(client, hourly_files("a", "2016-01-07 20:00:00", "uuudddddd")
           + hourly_files("b", "2016-01-07 20:20:00", "uuuuddddd")
           + hourly_files("a", "2016-01-07 20:00:00", "uudddddd", network_type="fixed")
           + hourly_files("c", "2016-01-07 20:00:00", "udududud", asn="AS6713")
           + hourly_files("a", "2016-01-07 20:00:00", "uuu", asn="AS8452", cc="EG"))


def test_overview_per_country_network_service_with_events_and_confidence(site: Any) -> None:
    fill(site)
    r = site.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    dom = Dom(r.text)
    assert dom.open == []  # well-formed
    countries = [a["data-cc"] for t, a in dom.elements if t == "section"]
    assert countries == ["EG", "MA"]
    services = {(a["data-cc"], a["data-asn"], a["data-network-type"], a["data-service"])
                for a in dom.rows("service-row")}
    assert services == {("EG", "AS8452", "mobile", "whatsapp"),
                        ("MA", "AS36903", "fixed", "whatsapp"),
                        ("MA", "AS36903", "mobile", "whatsapp"),
                        ("MA", "AS6713", "mobile", "whatsapp")}
    cells = {(a["data-function"], a.get("data-status")) for t, a in dom.elements
             if t == "td" and a.get("data-function")}
    assert ("calls", "blocked") in cells and ("messaging", "ok") in cells
    events = {(a["data-asn"], a["data-network-type"], a["data-kind"], a["data-confidence"])
              for a in dom.rows("event")}
    assert events == {("AS36903", "mobile", "onset", "confirmed"),
                      ("AS36903", "fixed", "onset", "single-probe")}
    # Every link stays on this collector: pages and the API.
    links = [a["href"] for t, a in dom.elements if t == "a"]
    assert links and all(h and h.startswith("/") for h in links)
    assert not [a for t, a in dom.elements if a.get("src")]
    raw = [h for h in links if h and h.startswith("/api/v1/measurements?")]
    got = site.get(raw[0]).json()["measurements"]
    assert got and all(m["measurement"]["service"] == "whatsapp" for m in got)


def test_filters_narrow_the_page_and_bad_values_say_why(site: Any) -> None:
    fill(site)
    only_eg = Dom(site.get("/", params={"cc": "eg", "asn": "", "since": ""}).text)
    assert [a["data-cc"] for t, a in only_eg.elements if t == "section"] == ["EG"]
    one_asn = Dom(site.get("/", params={"asn": "6713"}).text)
    assert {a["data-asn"] for a in one_asn.rows("service-row")} == {"AS6713"}
    later = Dom(site.get("/", params={"since": "2016-01-09"}).text)
    assert later.rows("event") == []  # both onsets were on 7 and 8 January
    other_service = site.get("/", params={"service": "viber"}).text
    assert "No runs in this selection" in other_service
    for params, reason in (({"asn": "x1"}, "ASN"), ({"cc": "MAR"}, "country"),
                           ({"since": "2016-13-01"}, "from"),
                           ({"service": "<b>"}, "service")):
        bad = site.get("/", params=params)
        assert bad.status_code == 400 and reason in bad.text, params
        assert "<b>" not in bad.text


def test_network_page_has_a_chart_per_service_and_its_events(site: Any) -> None:
    fill(site)
    r = site.get("/network/MA/AS36903/mobile")
    assert r.status_code == 200
    dom = Dom(r.text)
    assert dom.open == []
    assert r.text.count("<svg") == 1
    assert [(a["data-function"], a["data-status"]) for a in dom.rows("function-row")] == [
        ("messaging", "ok"), ("calls", "blocked")]
    assert [(a["data-kind"], a["data-confidence"]) for a in dom.rows("event")] == [
        ("onset", "confirmed")]
    assert 'class="marker onset solid"' in r.text  # confirmed: a solid line
    fixed = site.get("/network/MA/AS36903/fixed").text
    assert 'class="marker onset dashed"' in fixed  # single-probe: dashed
    assert site.get("/network/MA/AS1/mobile").status_code == 404
    assert site.get("/network/MA/bogus/mobile").status_code == 400


def test_events_api_with_confidence_paging_and_openapi(site: Any) -> None:
    fill(site)
    body = site.get("/api/v1/events").json()
    assert [(e["asn"], e["network_type"], e["confidence"], e["probes"])
            for e in body["events"]] == [("AS36903", "mobile", "confirmed", 2),
                                         ("AS36903", "fixed", "single-probe", 1)]
    assert body["rule"] == {"probes": 2.0, "window_s": 14400.0, "impaired_is_down": True}
    assert body["events"][0]["measurements"].startswith("/api/v1/measurements?")
    confirmed = site.get("/api/v1/events", params={"confidence": "confirmed"}).json()
    assert [e["network_type"] for e in confirmed["events"]] == ["mobile"]
    first = site.get("/api/v1/events", params={"limit": 1}).json()
    assert first["next"] == 1 and len(first["events"]) == 1
    rest = site.get("/api/v1/events", params={"limit": 1, "offset": 1}).json()
    assert rest["next"] is None and rest["events"] == body["events"][1:]
    assert site.get("/api/v1/events", params={"network_type": "fixed"}).json()["events"] == \
        body["events"][1:]
    assert site.get("/api/v1/events", params={"confidence": "sure"}).status_code == 422
    spec = site.get("/openapi.json").json()
    op = spec["paths"]["/api/v1/events"]["get"]
    assert {p["name"] for p in op["parameters"]} >= {"cc", "asn", "network_type", "service",
                                                      "function", "since", "until",
                                                      "confidence", "limit", "offset"}
    assert "/" not in spec["paths"]  # pages are not API operations


def test_pages_are_cached_until_an_upload_changes_them(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from probe.collector.app import create_app
    from probe.collector.config import CollectorConfig

    storage = Storage(tmp_path / "c", None, RULE)
    storage.open()
    with TestClient(create_app(storage, CollectorConfig(rate_limit_per_min=0,
                                                        page_cache_s=0))) as client:
        upload(client, hourly_files("a", "2016-01-07 20:00:00", "uu"))
        first = client.get("/").text
        cache = client.app.state.page_cache
        renders = cache.renders
        assert client.get("/").text == first and cache.renders == renders  # unchanged
        client.get("/network/MA/AS36903/mobile")
        assert cache.renders == renders + 1
        upload(client, [run_file("b", "2016-01-08 01:00:00", "ok", asn="AS6713")])
        assert "AS6713" in client.get("/").text and cache.renders == renders + 2
        # The network page is not re-rendered for an upload on another network.
        client.get("/network/MA/AS36903/mobile")
        assert cache.renders == renders + 2
    storage.close()


def test_names_from_uploads_are_escaped(site: Any) -> None:
    upload(site, hourly_files("a", "2016-01-07 20:00:00", "uuu",
                              network_type="<script>x</script>"))
    page = site.get("/").text
    assert "<script>x" not in page and "&lt;script&gt;x" in page
    assert len(re.findall(r"<script>", page)) == 1  # the page's own script only
