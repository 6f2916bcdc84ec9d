"""``lab replay``'s analysis, drawn in this process (:func:`probe.cli.lab._show_analysis`):
the comparison at each change of scenario on a network, then the timeline of the replay's
folder, on stderr. No root: hand-built results files stand for the phases' runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from probe.cli.lab import _show_analysis
from tests.helpers.results_factory import BLOCKED, OK, write_run

# (scenario, network type, start, status of whatsapp calls): a ban on mobile lines only.
PHASES = [
    ("before", "mobile", "2016-01-04 10:00:00", OK),
    ("before", "fixed", "2016-01-04 10:30:00", OK),
    ("before", "mobile", "2016-01-05 10:00:00", OK),
    ("ban", "mobile", "2016-01-08 10:00:00", BLOCKED),
    ("before", "fixed", "2016-01-08 10:30:00", OK),
    ("ban", "mobile", "2016-02-12 10:00:00", BLOCKED),
    ("after", "mobile", "2016-11-04 10:00:00", OK),
]


def _replay(folder: Path) -> tuple[SimpleNamespace, list[SimpleNamespace]]:
    """A replay plan and its outcomes, as :mod:`probe.lab.replay` gives them."""
    phases, outcomes = [], []
    for scenario, network_type, start, calls in PHASES:
        path = write_run(folder, start, {("whatsapp", "messaging"): OK,
                                         ("whatsapp", "calls"): calls},
                         network_type=network_type)
        phases.append(SimpleNamespace(scenario=scenario, network_type=network_type))
        outcomes.append(SimpleNamespace(results_file=path))
    return SimpleNamespace(phases=phases), outcomes


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one table row a line


def test_compare_at_each_change_of_scenario_then_the_timeline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, outcomes = _replay(tmp_path)
    _show_analysis(tmp_path, plan, outcomes)
    err = capsys.readouterr().err
    # Two runs of one scenario in a row, and the fixed line, which never changes scenario:
    # no comparison for them.
    headers = [line for line in err.splitlines() if line.startswith("compare ")]
    assert headers == ["compare mobile: before -> ban", "compare mobile: ban -> after"]
    assert "1 newly blocked, 0 restored, 0 method changed, 0 fraction changed" in err
    assert "0 newly blocked, 1 restored, 0 method changed, 0 fraction changed" in err
    timeline = err[err.index("\ntimeline\n"):]
    assert "AS36903 mobile" in timeline and "AS36903 fixed" in timeline
    assert "onset" in timeline  # 2016-01-08, confirmed by the next run
    assert "7 files, 7 runs, 2 networks, 1 events" in timeline
    assert "error" not in err


def test_an_unreadable_run_is_one_error_line_and_the_rest_is_shown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, outcomes = _replay(tmp_path)
    broken = outcomes[3].results_file  # the first run of the mobile ban
    broken.write_text("not a results file\n")
    _show_analysis(tmp_path, plan, outcomes)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {broken}: no run summary could be read (see the warning)"]
    assert "compare mobile: ban -> after" in err  # the next comparison is still drawn
    assert "0 newly blocked, 1 restored" in err
    assert "6 runs, 2 networks" in err and "1 files skipped" in err


def test_lab_run_shows_methods_beyond_the_expected_ones(capsys: pytest.CaptureFixture[str],
                                                        ) -> None:
    """A row that passes but carries a method the scenario did not expect says so (a
    check may have misread what it met), in the table and in the JSON; a row that lists
    no expected methods has none beyond them."""
    from probe.cli.lab import _outcome_json, _render_rows
    from probe.lab.play import Row

    rows = [Row("skype", "calls", "impaired", "impaired", ("app_stun_dpi",),
                ("app_stun_dpi", "udp_blocked")),
            Row("viber", "calls", "blocked", "blocked", ("app_stun_dpi",), ("app_stun_dpi",)),
            Row("duo", "calls", "blocked", "blocked", (), ("stun_dpi",))]
    assert [r.extra_methods for r in rows] == [("udp_blocked",), (), ()]
    outcome = SimpleNamespace(rows=rows, passed=True, results_file=None,
                              scenario=SimpleNamespace(name="x"),
                              run=SimpleNamespace(summary={}, exit_code=1))
    _render_rows("x", outcome)
    err = capsys.readouterr().err
    assert "also udp_blocked" in err and err.count("also ") == 1
    assert [r["extra_methods"] for r in _outcome_json(outcome)["rows"]] == [
        ["udp_blocked"], [], []]
