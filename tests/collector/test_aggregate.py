"""The status aggregation (probe.collector.aggregate) on SQLite and a real PostgreSQL:
kept up to date by each upload, equal to the crowd rule applied to all runs at once,
whatever the order of the uploads, and after deletes, rule changes and catch-up."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest

from probe.analysis import crowd
from probe.collector.aggregate import StatusReader
from probe.collector.filters import Filters
from probe.collector.storage import Storage
from probe.collector.validate import Upload, parse_upload
from tests.helpers.collector_files import hourly_files, run_file

FUNCTIONS = (("whatsapp", "calls"), ("whatsapp", "messaging"))
# A 4-hour window keeps the series short (each upload is a database commit).
RULE = crowd.Rule(window_s=4 * 3600)
def run_upload(probe: str | None, start: str, calls: str, **kw: Any) -> Upload:
    return parse_upload(run_file(probe, start, calls, **kw))


def hourly(probe: str | None, start: str, pattern: str, **kw: Any) -> list[Upload]:
    return [parse_upload(data) for data in hourly_files(probe, start, pattern, **kw)]


def uploads_of_two_probes() -> list[Upload]:
    return (hourly("a", "2016-01-07 20:00:00", "u" * 3 + "d" * 6)
            + hourly("b", "2016-01-07 20:20:00", "u" * 4 + "d" * 5)
            + hourly("c", "2016-01-07 20:40:00", "ud" * 4))  # flapping


def snapshot(storage: Storage) -> dict[str, Any]:
    """Everything the page reads, plus the probe states (order-free)."""
    reader = StatusReader(storage.db)
    everything = Filters()
    with storage.db.connection() as conn:
        probes = sorted(tuple(r) for r in conn.fetchall("SELECT * FROM status_probes"))
        changes = sorted(tuple(r) for r in conn.fetchall("SELECT * FROM status_changes"))
    return {"events": reader.events(everything), "daily": reader.daily(everything),
            "current": [{k: v for k, v in c.items()} for c in reader.current(everything)],
            "probes": probes, "changes": changes}


def expected_by_the_rule(uploads: list[Upload]) -> crowd.Analysis:
    runs: dict[str, list[crowd.Observation]] = {}
    for up in uploads:
        assert up.summary is not None
        fn = up.summary["services"]["whatsapp"]["functions"]["calls"]
        probe = up.measurements[0].record["annotations"].get("probe_pseudonym", "")
        runs.setdefault(probe, []).append(crowd.Observation(
            up.summary["measurement_start_time"], fn["status"], tuple(fn["methods"])))
    return crowd.analyse(runs, RULE)


@pytest.fixture
def open_storage(tmp_path: Path, backend_url: str | None,
                 request: pytest.FixtureRequest) -> Any:
    """Storage by name: one data folder and (PostgreSQL) one database per name."""
    opened: list[Storage] = []
    urls: dict[str, str | None] = {"collector": backend_url}

    def make(rule: crowd.Rule = RULE, name: str = "collector") -> Storage:
        if name not in urls:
            urls[name] = None if backend_url is None else request.getfixturevalue(
                "pg_server").create_database(f"{tmp_path.name}_{name}".replace("-", "_"))
        st = Storage(tmp_path / name, urls[name], rule)
        st.open()
        opened.append(st)
        return st

    yield make
    for st in opened:
        st.close()


def test_each_upload_updates_events_current_status_and_daily_counts(open_storage: Any
                                                                    ) -> None:
    storage = open_storage()
    uploads = uploads_of_two_probes()
    for up in uploads:
        storage.store(up)
    reader = StatusReader(storage.db)
    calls = Filters(service="whatsapp", function="calls")
    events = reader.events(calls)
    want = expected_by_the_rule(uploads).events
    assert [(e["kind"], e["at"], e["previous"], e["confidence"], e["probes"])
            for e in events] == [(e.kind, e.at, e.previous, e.confidence, e.probes)
                                 for e in reversed(want)]
    assert [(e["kind"], e["confidence"], e["probes"]) for e in events] == [
        ("onset", "confirmed", 2)]  # the flapping probe made no event of its own
    assert events[0]["methods"] == ["stun_dpi"]
    assert reader.events(Filters(service="whatsapp", function="messaging")) == []
    (cur,) = reader.current(calls)
    assert (cur["status"], cur["runs"], cur["asn"], cur["network_type"]) == (
        "blocked", 26, "AS36903", "mobile")
    days = {d["day"]: d["counts"] for d in reader.daily(calls)}
    assert days == {"2016-01-07": {"ok": 3 + 4 + 2, "impaired": 0, "blocked": 1 + 0 + 2,
                                   "inconclusive": 0},
                    "2016-01-08": {"ok": 0 + 0 + 2, "impaired": 0, "blocked": 5 + 5 + 2,
                                   "inconclusive": 0}}


def test_upload_order_does_not_matter(open_storage: Any) -> None:
    uploads = uploads_of_two_probes()
    in_order = open_storage(name="in-order")
    for up in uploads:
        in_order.store(up)
    shuffled = open_storage(name="shuffled")
    mixed = uploads[:]
    random.Random(7).shuffle(mixed)  # late files from spools arrive out of order
    for up in mixed:
        shuffled.store(up)
    assert snapshot(shuffled) == snapshot(in_order)


def test_delete_takes_a_run_out_again(open_storage: Any) -> None:
    uploads = uploads_of_two_probes()
    extra = run_upload("a", "2016-01-08 06:00:00", "ok")
    without = open_storage(name="without")
    for up in uploads:
        without.store(up)
    with_extra = open_storage(name="with")
    for up in [*uploads, extra]:
        with_extra.store(up)
    assert snapshot(with_extra) != snapshot(without)
    assert with_extra.delete(extra.sha256)
    assert snapshot(with_extra) == snapshot(without)


def test_a_new_rule_rebuilds_and_uploads_stored_without_the_index_are_caught_up(
        open_storage: Any) -> None:
    uploads = uploads_of_two_probes()

    def filled(rule: crowd.Rule, name: str) -> Storage:
        st = open_storage(rule, name=name)
        for up in uploads:
            st.store(up)
        return st

    main = filled(RULE, "main")
    k3 = filled(crowd.Rule(probes=3, window_s=RULE.window_s), "k3")
    narrow = filled(crowd.Rule(window_s=1800), "narrow")
    assert snapshot(k3) != snapshot(main) and snapshot(narrow) != snapshot(main)
    # The same database reopened with K = 3: the onset of two probes is single-probe.
    main.close()
    main = open_storage(crowd.Rule(probes=3, window_s=RULE.window_s), name="main")
    assert snapshot(main) == snapshot(k3)
    assert [e["confidence"] for e in StatusReader(main.db).events(Filters())] == [
        "single-probe"]
    # A narrower window refolds every probe.
    main.close()
    main = open_storage(crowd.Rule(window_s=1800), name="main")
    assert snapshot(main) == snapshot(narrow)
    # Uploads stored by a collector without this index are folded in when it opens.
    before = snapshot(narrow)
    with narrow.db.connection() as conn:
        with conn.transaction():
            for table in ("status_obs", "status_daily", "status_probes", "status_changes",
                          "status_events", "status_keys"):
                conn.execute(f"DELETE FROM {table}")
    assert StatusReader(narrow.db).events(Filters()) == []
    narrow.close()
    assert snapshot(open_storage(crowd.Rule(window_s=1800), name="narrow")) == before


def test_networks_are_kept_apart_and_files_without_a_pseudonym_are_one_probe(
        open_storage: Any) -> None:
    storage = open_storage()
    for probe in (None, None):  # two devices without pseudonyms: one anonymous probe
        for up in hourly(probe, "2016-01-07 00:00:00", "u" * 2 + "d" * 5):  # type: ignore[arg-type]
            storage.store(up)
    for up in hourly("a", "2016-01-07 00:00:00", "u" * 2 + "d" * 5, network_type="fixed"):
        storage.store(up)
    for up in hourly("b", "2016-01-07 00:00:00", "u" * 3, asn="AS6713"):
        storage.store(up)
    events = StatusReader(storage.db).events(Filters())
    assert sorted((e["asn"], e["network_type"], e["confidence"], e["probes"])
                  for e in events) == [("AS36903", "fixed", "single-probe", 1),
                                       ("AS36903", "mobile", "single-probe", 1)]


def test_partial_uploads_and_offline_runs(open_storage: Any) -> None:
    storage = open_storage()
    offline = run_upload("a", "2016-01-07 00:00:00", "blocked")
    assert offline.summary is not None
    offline.summary["network"]["status"] = "offline"
    storage.store(offline)
    reader = StatusReader(storage.db)
    (cur,) = reader.current(Filters(function="calls"))
    assert cur["status"] == "inconclusive"  # an offline run is never "blocked"
    days = reader.daily(Filters(function="calls"))
    assert days[0]["counts"]["inconclusive"] == 1


def test_concurrent_uploads_on_one_network_fold_like_one_after_the_other(
        open_storage: Any) -> None:
    uploads = uploads_of_two_probes()
    sequential = open_storage(name="sequential")
    for up in uploads:
        sequential.store(up)
    concurrent = open_storage(name="concurrent")
    errors: list[BaseException] = []

    def send(part: list[Upload]) -> None:
        try:
            for up in part:
                concurrent.store(up)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(uploads[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert snapshot(concurrent) == snapshot(sequential)
