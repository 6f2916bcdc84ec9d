"""``voip-probe compare`` and ``voip-probe timeline`` end to end (stdout/stderr, exit codes)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from probe.cli import _load_commands, app
from tests.helpers.results_factory import BLOCKED, OK, times, write_run

_load_commands()
runner = CliRunner()
CALLS, MSG = ("whatsapp", "calls"), ("whatsapp", "messaging")


def test_compare_json_on_stdout_table_on_stderr(tmp_path: Path) -> None:
    a = write_run(tmp_path, "2016-01-06 09:00:00", {MSG: OK, CALLS: OK})
    b = write_run(tmp_path, "2016-01-07 09:00:00", {MSG: OK, CALLS: BLOCKED})
    result = runner.invoke(app, ["compare", str(a), str(b), "--json"])
    assert result.exit_code == 1, result.output  # something is newly blocked
    out = json.loads(result.stdout)
    assert [(c["service"], c["function"], c["kind"]) for c in out["changes"]] == [
        ("whatsapp", "calls", "newly_blocked")]
    assert "newly blocked" in result.stderr and "{" not in result.stderr
    back = runner.invoke(app, ["compare", str(b), str(a)])
    assert back.exit_code == 0 and back.stdout == ""
    assert "restored" in back.stderr


def test_compare_refuses_different_networks(tmp_path: Path) -> None:
    a = write_run(tmp_path, "2016-01-06 09:00:00", {CALLS: OK})
    b = write_run(tmp_path, "2016-01-07 09:00:00", {CALLS: BLOCKED}, network_type="fixed")
    result = runner.invoke(app, ["compare", str(a), str(b), "--json"])
    assert result.exit_code == 2 and result.stdout == ""
    assert "different networks" in result.stderr and "--force" in result.stderr
    forced = runner.invoke(app, ["compare", str(a), str(b), "--json", "--force"])
    assert forced.exit_code == 1 and json.loads(forced.stdout)["changes"]


def test_compare_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    a = write_run(tmp_path, "2016-01-06 09:00:00", {CALLS: OK})
    result = runner.invoke(app, ["compare", str(a), str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and "nope.jsonl" in result.stderr


def test_timeline_json_and_summary(tmp_path: Path) -> None:
    ts = times("2016-01-01 09:00:00", 8, step_min=1440)
    for i, t in enumerate(ts):
        write_run(tmp_path, t, {MSG: OK, CALLS: BLOCKED if 3 <= i < 6 else OK})
    write_run(tmp_path, ts[7], {CALLS: OK}, crashed=True)  # skipped or recomputed, never fatal
    result = runner.invoke(app, ["timeline", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (net,) = out["networks"]
    assert [(e["kind"], e["at"], e["previous"]) for e in net["events"]] == [
        ("onset", ts[3], ts[2]), ("restoration", ts[6], ts[5])]
    assert "restoration" in result.stderr and "9 files" in result.stderr


def test_timeline_options_are_validated(tmp_path: Path) -> None:
    write_run(tmp_path, "2016-01-01 09:00:00", {CALLS: OK})
    bad = runner.invoke(app, ["timeline", str(tmp_path), "--window", "4", "--confirm", "2"])
    assert bad.exit_code == 2 and "majority" in bad.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    none = runner.invoke(app, ["timeline", str(empty)])
    assert none.exit_code == 2 and "no results files" in none.stderr


def test_files_from_anyone_are_shown_as_text_not_markup(tmp_path: Path) -> None:
    """A crafted results file (names and methods holding rich markup) is data: compare and
    timeline show it verbatim instead of crashing on ``[/]``."""
    odd = ("odd[/]svc", "calls[bold]")
    a = write_run(tmp_path, "2016-01-06 09:00:00", {odd: OK})
    b = write_run(tmp_path, "2016-01-07 09:00:00", {odd: ("blocked", ["[/]stun_dpi"])})
    result = runner.invoke(app, ["compare", str(a), str(b)])
    assert result.exit_code == 1, result.output
    assert "odd[/]svc" in result.stderr and "[/]stun_dpi" in result.stderr
    timeline = runner.invoke(app, ["timeline", str(tmp_path)])
    assert timeline.exit_code == 0, timeline.output
    assert "MarkupError" not in timeline.output and "odd[/]svc" in timeline.stderr
