"""The crowd-confirmation rule (probe.analysis.crowd): confirmed, single-probe, no event."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from probe.analysis import crowd
from probe.analysis.crowd import Observation, Rule

RULE = Rule()  # K = 2, a 24 h window


def series(start: str, statuses: str, step_min: int = 60,
           methods: tuple[str, ...] = ("stun_dpi",)) -> list[Observation]:
    """One observation per letter: u = ok, d = blocked, i = inconclusive, m = impaired."""
    t = datetime.fromisoformat(start)
    names = {"u": "ok", "d": "blocked", "i": "inconclusive", "m": "impaired"}
    out = []
    for letter in statuses:
        status = names[letter]
        out.append(Observation(f"{t:%Y-%m-%d %H:%M:%S}", status,
                               methods if status in ("blocked", "impaired") else ()))
        t += timedelta(minutes=step_min)
    return out


def at(start: str, hours: float) -> str:
    return f"{datetime.fromisoformat(start) + timedelta(hours=hours):%Y-%m-%d %H:%M:%S}"


def test_two_probes_that_agree_confirm_the_onset() -> None:
    # Both run hourly; the ban starts at hour 10 for one and hour 11 for the other.
    a = series("2016-01-07 00:00:00", "u" * 10 + "d" * 40)
    b = series("2016-01-07 00:30:00", "u" * 11 + "d" * 39)
    result = crowd.analyse({"probe-a": a, "probe-b": b}, RULE)
    assert [(e.kind, e.confidence, e.probes) for e in result.events] == [
        ("onset", "confirmed", 2)]
    event = result.events[0]
    assert event.at == at("2016-01-07 00:00:00", 10)  # the first probe to see it
    # The latest run still up before that (b was still up at 10:30, after a's onset:
    # operators' networks switch at different times; the event is dated by the first).
    assert event.previous == at("2016-01-07 00:00:00", 9)
    assert event.last_at == at("2016-01-07 00:30:00", 11)
    assert event.methods == ("stun_dpi",) and event.weight == 2.0 and not event.pending
    assert result.current.status == "blocked" and result.current.probes == 2


def test_one_probe_is_single_probe() -> None:
    a = series("2016-01-07 00:00:00", "u" * 10 + "d" * 40)
    result = crowd.analyse({"probe-a": a}, RULE)
    assert [(e.kind, e.confidence, e.probes) for e in result.events] == [
        ("onset", "single-probe", 1)]


def test_one_probe_flapping_is_no_event() -> None:
    flapping = series("2016-01-07 00:00:00", "ud" * 25)  # a flip every hour
    result = crowd.analyse({"probe-a": flapping}, RULE)
    assert result.events == []
    state = result.states["probe-a"]
    assert state.flaps >= 24 and state.weight < 0.1
    # Not even its last flip, still open at the end of the data, counts.
    assert crowd.pending_change(state, RULE, "probe-a") is None


def test_a_flapping_probe_cannot_confirm_a_steady_one() -> None:
    steady = series("2016-01-07 00:00:00", "u" * 10 + "d" * 40)
    # Mostly steady but flapping once an hour around the onset: it still settles on
    # "down", but its flaps make it weigh too little to confirm.
    flappy = series("2016-01-07 00:00:00", "u" * 4 + "dudududu" + "d" * 38)
    result = crowd.analyse({"steady": steady, "flappy": flappy}, RULE)
    onsets = [e for e in result.events if e.kind == "onset"]
    assert len(onsets) == 1
    assert onsets[0].probes == 2 and 1.0 < onsets[0].weight < 2.0
    assert onsets[0].confidence == "single-probe"


def test_mostly_inconclusive_probes_weigh_less() -> None:
    clean = series("2016-01-07 00:00:00", "u" * 10 + "d" * 40)
    murky = series("2016-01-07 00:00:00", ("i" * 4 + "u") * 2 + ("i" * 4 + "d") * 8)
    result = crowd.analyse({"clean": clean, "murky": murky}, RULE)
    assert result.states["murky"].weight == pytest.approx(0.4)
    onset = next(e for e in result.events if e.kind == "onset")
    assert onset.probes == 2 and onset.weight == pytest.approx(1.4)
    assert onset.confidence == "single-probe"
    # Alone, such a probe is below the weight of an event at all.
    alone = crowd.analyse({"murky": murky}, RULE)
    assert alone.events == []


def test_probes_far_apart_in_time_are_two_events() -> None:
    a = series("2016-01-07 00:00:00", "u" * 10 + "d" * 40)
    b = series("2016-01-07 00:00:00", "u" * 40 + "d" * 10)  # 30 hours later: outside
    result = crowd.analyse({"a": a, "b": b}, RULE)
    assert [(e.kind, e.confidence) for e in result.events] == [
        ("onset", "single-probe"), ("onset", "single-probe")]


def test_stray_failure_and_stray_success_are_not_events() -> None:
    a = series("2016-01-07 00:00:00", "u" * 10 + "d" + "u" * 10 + "d" * 30 + "u" + "d" * 10)
    result = crowd.analyse({"a": a}, RULE)
    assert [e.kind for e in result.events] == ["onset"]
    assert result.states["a"].flaps == 2


def test_restoration_carries_the_methods_that_ended_and_can_be_pending() -> None:
    a = series("2016-01-07 00:00:00", "u" * 5 + "d" * 30 + "u" * 3)  # restored 3 h ago
    b = series("2016-01-07 00:10:00", "u" * 5 + "d" * 30 + "u" * 3)
    result = crowd.analyse({"a": a, "b": b}, RULE)
    kinds = [(e.kind, e.confidence, e.pending, e.methods) for e in result.events]
    assert kinds == [("onset", "confirmed", False, ("stun_dpi",)),
                     ("restoration", "confirmed", True, ("stun_dpi",))]
    assert result.current.status == "ok"


def test_sparse_runs_one_per_phase_like_the_morocco_replay() -> None:
    runs = [Observation("2016-01-04 10:00:00", "ok"),
            Observation("2016-01-08 10:00:00", "blocked", ("stun_dpi",)),
            Observation("2016-02-12 10:00:00", "blocked", ("stun_dpi",)),
            Observation("2016-11-04 10:00:00", "ok")]
    fixed = [Observation("2016-01-04 10:30:00", "ok"),
             Observation("2016-01-08 10:30:00", "ok"),
             Observation("2016-02-12 10:30:00", "blocked", ("app_stun_dpi",)),
             Observation("2016-11-04 10:30:00", "ok")]
    for obs, onset, previous in ((runs, "2016-01-08 10:00:00", "2016-01-04 10:00:00"),
                                 (fixed, "2016-02-12 10:30:00", "2016-01-08 10:30:00")):
        result = crowd.analyse({"p": obs}, RULE)
        assert [(e.kind, e.at, e.previous, e.confidence) for e in result.events] == [
            ("onset", onset, previous, "single-probe"),
            ("restoration", obs[-1].at, obs[-2].at, "single-probe")]


def test_anonymous_runs_are_one_probe() -> None:
    # Files without a pseudonym all land on one key: they never confirm each other.
    merged = sorted(series("2016-01-07 00:00:00", "u" * 10 + "d" * 40)
                    + series("2016-01-07 00:30:00", "u" * 11 + "d" * 39),
                    key=lambda o: o.at)
    result = crowd.analyse({crowd.ANONYMOUS: merged}, RULE)
    assert [(e.kind, e.confidence, e.probes) for e in result.events] == [
        ("onset", "single-probe", 1)]


def test_k_is_configurable_and_impaired_counts_as_down_unless_told() -> None:
    probes = {f"p{i}": series("2016-01-07 00:00:00", "u" * (10 + i) + "m" * 30)
              for i in range(3)}
    three = crowd.analyse(probes, Rule(probes=3))
    assert [(e.kind, e.confidence, e.probes) for e in three.events] == [
        ("onset", "confirmed", 3)]
    four = crowd.analyse(probes, Rule(probes=4))
    assert four.events[0].confidence == "single-probe"
    assert crowd.analyse(probes, Rule(impaired_is_down=False)).events == []


def test_incremental_advance_equals_the_whole_fold() -> None:
    obs = series("2016-01-07 00:00:00", "uuuduuuiddddddddddddddddddddddddddduuuuuuuudu" * 3,
                 step_min=45)
    whole, whole_changes = crowd.fold(obs, RULE, "p")
    state, changes = crowd.ProbeState(), []
    for o in obs:
        state, settled = crowd.advance(state, o, RULE, "p")
        changes.extend(settled)
    assert state == whole and changes == whole_changes


def test_current_status_mixed_and_stale_probes() -> None:
    up = series("2016-01-07 00:00:00", "u" * 30)
    down = series("2016-01-07 00:00:00", "d" * 30)
    assert crowd.analyse({"a": up, "b": down}, RULE).current.status == "mixed"
    old = series("2016-01-01 00:00:00", "d" * 5)  # last seen days before the others
    result = crowd.analyse({"a": up, "old": old}, RULE)
    assert (result.current.status, result.current.probes) == ("ok", 1)


@pytest.mark.parametrize("kwargs", [{"probes": 0}, {"window_s": 0}, {"min_weight": 0},
                                    {"probes": 2, "min_weight": 3}])
def test_rule_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Rule(**kwargs)  # type: ignore[arg-type]
