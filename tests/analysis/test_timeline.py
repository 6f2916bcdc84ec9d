"""Timeline rule on hand-built results files: intermittent blocking, inconclusive runs in
between, mixed networks, crashed and compressed files."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from probe.analysis.timeline import Rule, build_timeline
from probe.results import expand_paths
from tests.helpers.results_factory import BLOCKED, INCONCLUSIVE, OK, times, write_run

CALLS = ("whatsapp", "calls")
MSG = ("whatsapp", "messaging")


def _timeline(folder: Path, rule: Rule | None = None):
    warnings: list[str] = []
    tl = build_timeline(expand_paths([folder]), rule or Rule(), warnings.append)
    return tl, warnings


def _events(net) -> list[tuple[str, str, str, str, str]]:
    return [(e.service, e.function, e.kind, e.at, e.previous) for e in net.events]


def _series(folder: Path, start: str, calls: list[str], **kw) -> list[str]:
    ts = times(start, len(calls))
    for t, status in zip(ts, calls, strict=True):
        write_run(folder, t, {MSG: OK, CALLS: status}, **kw)
    return ts


def test_morocco_shaped_onset_and_restoration(tmp_path: Path) -> None:
    # Phases before / mobile ban / ADSL ban / after, three runs each, as the lab replays.
    phases = [("before", OK, OK), ("mobile-ban", BLOCKED, OK), ("adsl-ban", BLOCKED, BLOCKED),
              ("after", OK, OK)]
    ts = times("2016-01-01 09:00:00", 12, step_min=24 * 60)
    for i, t in enumerate(ts):
        _phase, mobile, fixed = phases[i // 3]
        write_run(tmp_path, t, {MSG: OK, CALLS: mobile}, network_type="mobile")
        write_run(tmp_path, t, {MSG: OK, CALLS: fixed}, asn="AS6713", network_type="fixed")
    tl, warnings = _timeline(tmp_path)
    assert warnings == []
    nets = {(n.asn, n.network_type): n for n in tl.networks}
    assert set(nets) == {("AS36903", "mobile"), ("AS6713", "fixed")}
    mobile, fixed = nets["AS36903", "mobile"], nets["AS6713", "fixed"]
    assert _events(mobile) == [
        ("whatsapp", "calls", "onset", ts[3], ts[2]),
        ("whatsapp", "calls", "restoration", ts[9], ts[8]),
    ]
    assert mobile.events[0].methods == ("stun_dpi",)
    assert mobile.events[1].methods == ("stun_dpi",)
    assert _events(fixed) == [
        ("whatsapp", "calls", "onset", ts[6], ts[5]),
        ("whatsapp", "calls", "restoration", ts[9], ts[8]),
    ]
    assert not [e for n in tl.networks for e in n.events if e.function == "messaging"]
    assert {(n["asn"], n["type"]): n["runs"] for n in tl.to_json()["networks"]} == {
        ("AS36903", "mobile"): 12, ("AS6713", "fixed"): 12}


def test_intermittent_blocking_gives_one_onset_and_one_restoration(tmp_path: Path) -> None:
    pattern = [OK, OK, BLOCKED, OK, OK,  # a stray failure during normal service
               BLOCKED, BLOCKED, OK, BLOCKED, BLOCKED, OK, BLOCKED, BLOCKED, BLOCKED,  # leaky ban
               OK, OK, BLOCKED, OK, OK]  # restored, one more stray failure
    ts = _series(tmp_path, "2016-03-01 00:00:00", pattern)
    tl, _ = _timeline(tmp_path)
    (net,) = tl.networks
    assert _events(net) == [
        ("whatsapp", "calls", "onset", ts[5], ts[4]),
        ("whatsapp", "calls", "restoration", ts[14], ts[13]),
    ]


def test_without_tolerance_every_flip_is_an_event(tmp_path: Path) -> None:
    # The same data with window 1 shows what the default rule filters out.
    pattern = [OK, OK, BLOCKED, OK, OK, BLOCKED, BLOCKED, OK, BLOCKED]
    _series(tmp_path, "2016-03-01 00:00:00", pattern)
    tl, _ = _timeline(tmp_path, Rule(window=1, threshold=1))
    assert [e.kind for e in tl.networks[0].events] == [
        "onset", "restoration", "onset", "restoration", "onset"]


def test_inconclusive_runs_in_between_are_ignored(tmp_path: Path) -> None:
    ts = times("2016-05-01 00:00:00", 10)
    write_run(tmp_path, ts[0], {MSG: OK, CALLS: OK})
    write_run(tmp_path, ts[1], {MSG: OK, CALLS: OK})
    # The network went offline, then a run where calls could not be judged.
    write_run(tmp_path, ts[2], {MSG: INCONCLUSIVE, CALLS: INCONCLUSIVE}, online=False)
    write_run(tmp_path, ts[3], {MSG: OK, CALLS: INCONCLUSIVE})
    write_run(tmp_path, ts[4], {MSG: OK, CALLS: BLOCKED})
    # Inconclusive runs inside the confirming window neither confirm nor break it.
    write_run(tmp_path, ts[5], {MSG: INCONCLUSIVE, CALLS: INCONCLUSIVE}, online=False)
    write_run(tmp_path, ts[6], {MSG: OK, CALLS: BLOCKED})
    write_run(tmp_path, ts[7], {MSG: OK, CALLS: BLOCKED})
    # An offline run that still carried "blocked" statuses must not count either.
    write_run(tmp_path, ts[8], {MSG: BLOCKED, CALLS: BLOCKED}, online=False)
    write_run(tmp_path, ts[9], {MSG: OK, CALLS: BLOCKED})
    tl, _ = _timeline(tmp_path)
    (net,) = tl.networks
    assert net.to_json() == {
        "asn": "AS36903", "type": "mobile", "runs": 10,
        "events": [{"service": "whatsapp", "function": "calls", "kind": "onset",
                    "at": ts[4], "previous": ts[1], "methods": ["stun_dpi"]}],
    }
    calls = next(c for c in net.current if (c.service, c.function) == CALLS)
    assert calls.state is True and calls.since == ts[4] and calls.conclusive_runs == 6


def test_mixed_networks_are_kept_apart(tmp_path: Path) -> None:
    # Two networks interleaved in time; only the mobile one is blocked. Mixed together,
    # the fixed network's ok runs would hide (or fake) the mobile onset.
    ts = times("2016-01-06 00:00:00", 12, step_min=30)
    for i, t in enumerate(ts):
        if i % 2 == 0:
            write_run(tmp_path, t, {MSG: OK, CALLS: BLOCKED if i >= 6 else OK})
        else:
            write_run(tmp_path, t, {MSG: OK, CALLS: OK}, asn="AS6713", network_type="fixed")
    # The same ASN on wifi is a separate network too.
    write_run(tmp_path, ts[0], {MSG: OK, CALLS: OK}, network_type="wifi")
    tl, _ = _timeline(tmp_path)
    out = {(n["asn"], n["type"]): n for n in tl.to_json()["networks"]}
    assert {k: v["runs"] for k, v in out.items()} == {
        ("AS36903", "mobile"): 6, ("AS6713", "fixed"): 6, ("AS36903", "wifi"): 1}
    assert out["AS6713", "fixed"]["events"] == []
    assert out["AS36903", "wifi"]["events"] == []
    assert [(e["kind"], e["at"], e["previous"]) for e in out["AS36903", "mobile"]["events"]] == [
        ("onset", ts[6], ts[4])]


def test_change_at_the_end_stays_unconfirmed(tmp_path: Path) -> None:
    ts = _series(tmp_path, "2016-01-01 00:00:00", [OK, OK, OK, BLOCKED])
    tl, _ = _timeline(tmp_path)
    (net,) = tl.networks
    assert net.events == []
    calls = next(c for c in net.current if (c.service, c.function) == CALLS)
    assert calls.state is False and calls.pending_since == ts[3]


def test_first_state_is_a_baseline_not_an_event(tmp_path: Path) -> None:
    # Blocked from the first run: the onset happened before the data, so no event; a
    # stray ok at the start does not set the baseline either.
    _series(tmp_path, "2016-01-01 00:00:00", [OK, BLOCKED, BLOCKED, BLOCKED])
    tl, _ = _timeline(tmp_path)
    assert tl.networks[0].events == []


def test_methods_of_onset_and_restoration(tmp_path: Path) -> None:
    ts = times("2016-01-01 00:00:00", 6)
    write_run(tmp_path, ts[0], {CALLS: OK})
    write_run(tmp_path, ts[1], {CALLS: OK})
    write_run(tmp_path, ts[2], {CALLS: (BLOCKED, ["udp_blocked"])})
    write_run(tmp_path, ts[3], {CALLS: (BLOCKED, ["stun_dpi"])})
    write_run(tmp_path, ts[4], {CALLS: OK})
    write_run(tmp_path, ts[5], {CALLS: OK})
    tl, _ = _timeline(tmp_path)
    onset, restoration = tl.networks[0].events
    assert onset.methods == ("stun_dpi", "udp_blocked")
    assert restoration.methods == ("stun_dpi",)  # the blocking that ended


def test_impaired_counts_as_down_unless_told(tmp_path: Path) -> None:
    _series(tmp_path, "2016-01-01 00:00:00", [OK, OK, "impaired", "impaired", "impaired"])
    down, _ = _timeline(tmp_path)
    up, _ = _timeline(tmp_path, Rule(impaired_is_down=False))
    assert [e.kind for e in down.networks[0].events] == ["onset"]
    assert up.networks[0].events == []


def test_crashed_file_is_skipped_with_a_warning_and_gzip_is_read(tmp_path: Path,
                                                                  monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "probe.verdicts", types.ModuleType("probe.verdicts"))
    ts = times("2016-01-01 00:00:00", 5)
    write_run(tmp_path, ts[0], {CALLS: OK})
    write_run(tmp_path, ts[1], {CALLS: OK}, compress=True)
    crashed = write_run(tmp_path, ts[2], {CALLS: BLOCKED}, crashed=True)
    write_run(tmp_path, ts[3], {CALLS: BLOCKED}, compress=True)
    write_run(tmp_path, ts[4], {CALLS: BLOCKED})
    tl, warnings = _timeline(tmp_path)
    assert tl.skipped_files == 1 and tl.runs == 4
    assert any(str(crashed) in w and "cannot recompute" in w for w in warnings)
    assert _events(tl.networks[0]) == [("whatsapp", "calls", "onset", ts[3], ts[1])]


def test_crashed_file_is_recomputed_when_verdicts_can(tmp_path: Path, monkeypatch) -> None:
    seen: list[int] = []

    def summarize(records):
        records = list(records)
        seen.append(len(records))
        assert all("record" not in r for r in records)
        return {"services": {"whatsapp": {"status": "blocked", "functions": {
            "calls": {"status": "blocked", "reachable": 0, "total": 2,
                      "methods": ["udp_blocked"]}}}}}

    fake = types.ModuleType("probe.verdicts")
    fake.summarize = summarize  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "probe.verdicts", fake)
    ts = times("2016-01-01 00:00:00", 4)
    write_run(tmp_path, ts[0], {CALLS: OK}, network_type="fixed")
    write_run(tmp_path, ts[1], {CALLS: OK}, network_type="fixed")
    write_run(tmp_path, ts[2], {CALLS: BLOCKED}, network_type="fixed", crashed=True)
    write_run(tmp_path, ts[3], {CALLS: BLOCKED}, network_type="fixed")
    tl, warnings = _timeline(tmp_path)
    assert seen == [2]  # the two complete measurements; the torn copy is skipped
    assert any("recomputed" in w for w in warnings)
    (net,) = tl.networks  # the recomputed run joined its network (from the records)
    assert (net.asn, net.network_type, len(net.runs)) == ("AS36903", "fixed", 4)
    assert [(e.kind, e.at, e.methods) for e in net.events] == [
        ("onset", ts[2], ("stun_dpi", "udp_blocked"))]  # the crashed run's and the next


@pytest.mark.parametrize("window,threshold", [(0, 1), (3, 4), (4, 2), (3, 1)])
def test_rule_rejects_non_majority(window: int, threshold: int) -> None:
    with pytest.raises(ValueError):
        Rule(window=window, threshold=threshold)


# The phases of configs/scenarios/morocco-2016.toml: one run per phase and network type.
REPLAY_PHASES = [
    ("2016-01-04 10:00:00", "mobile", OK), ("2016-01-04 10:30:00", "fixed", OK),
    ("2016-01-08 10:00:00", "mobile", BLOCKED), ("2016-01-08 10:30:00", "fixed", OK),
    ("2016-02-12 10:00:00", "mobile", BLOCKED), ("2016-02-12 10:30:00", "fixed", BLOCKED),
    ("2016-11-04 10:00:00", "mobile", OK), ("2016-11-04 10:30:00", "fixed", OK),
]


def test_replay_shaped_files_one_run_per_phase(tmp_path: Path) -> None:
    for start, network_type, calls in REPLAY_PHASES:
        write_run(tmp_path, start, {MSG: OK, CALLS: calls, ("viber", "calls"): calls},
                  network_type=network_type, asn="AS0")
    every_run, _ = _timeline(tmp_path, Rule(window=1, threshold=1))
    got = {n.network_type: [(e.service, e.kind, e.at, e.previous) for e in n.events
                            if e.service == "whatsapp"] for n in every_run.networks}
    assert got == {
        "mobile": [("whatsapp", "onset", "2016-01-08 10:00:00", "2016-01-04 10:00:00"),
                   ("whatsapp", "restoration", "2016-11-04 10:00:00", "2016-02-12 10:00:00")],
        "fixed": [("whatsapp", "onset", "2016-02-12 10:30:00", "2016-01-08 10:30:00"),
                  ("whatsapp", "restoration", "2016-11-04 10:30:00", "2016-02-12 10:30:00")],
    }
    assert not [e for n in every_run.networks for e in n.events if e.function == "messaging"]
    # The tolerant default cannot confirm a change seen in one run only: the final
    # restoration stays "unconfirmed" rather than being reported as an event.
    tolerant, _ = _timeline(tmp_path)
    mobile = next(n for n in tolerant.networks if n.network_type == "mobile")
    calls = next(c for c in mobile.current if (c.service, c.function) == CALLS)
    assert calls.pending_since == "2016-11-04 10:00:00"
