"""``voip-probe report``: a self-contained HTML file, rendered in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from probe.cli import _load_commands, app
from tests.helpers.results_factory import BLOCKED, INCONCLUSIVE, OK, times, write_run

_load_commands()
CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _build(folder: Path) -> list[str]:
    ts = times("2016-01-01 09:00:00", 10, step_min=720)
    for i, t in enumerate(ts):
        calls = BLOCKED if 3 <= i < 7 else OK
        write_run(folder, t, {("whatsapp", "messaging"): OK, ("whatsapp", "calls"): calls,
                              ("viber", "calls"): INCONCLUSIVE if i == 5 else OK})
        write_run(folder, t, {("whatsapp", "calls"): OK}, asn="AS6713", network_type="fixed")
    return ts


def _report(tmp_path: Path) -> tuple[Path, str, list[str]]:
    data = tmp_path / "results"
    data.mkdir()
    ts = _build(data)
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["report", str(data), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out, out.read_text(), ts


def test_report_is_self_contained_and_has_the_parts(tmp_path: Path) -> None:
    _out, html, ts = _report(tmp_path)
    # Nothing to fetch: no src/href/url()/@import anywhere (the SVG xmlns is a name only).
    assert not re.search(r"\b(src|href)\s*=|url\(|@import", html)
    assert html.count("<svg") == 3  # whatsapp + viber on mobile, whatsapp on fixed
    assert "AS36903 mobile" in html and "AS6713 fixed" in html
    # The events table holds the onset and restoration with their times.
    assert re.search(rf"<td>{ts[3]}</td><td>{ts[2]}</td><td>whatsapp</td><td>calls</td>"
                     r'<td class="s-blocked">onset</td>', html)
    assert re.search(rf"<td>{ts[7]}</td><td>{ts[6]}</td><td>whatsapp</td><td>calls</td>"
                     r'<td class="s-ok">restoration</td>', html)
    assert "Latest verdicts" in html


def test_names_from_files_are_escaped(tmp_path: Path) -> None:
    write_run(tmp_path, "2016-01-01 09:00:00", {("<script>alert(1)</script>", "calls"): OK})
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(tmp_path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("chromium is missing under CI=true (see .ci/run)")
        pytest.skip("chromium is not installed")
    from PIL import Image, ImageStat

    out, _html, _ts = _report(tmp_path)
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--no-first-run",
           "--disable-sync", f"--user-data-dir={profile}", "--window-size=1100,1000",
           f"--screenshot={shot}", out.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert shot.exists(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    image = Image.open(shot).convert("RGB")
    stat = ImageStat.Stat(image)
    assert max(stat.var) > 100, f"blank screenshot (variance {stat.var})"
    # The charts were drawn: many pixels in the "blocked" red and the "ok" green.
    colors = {rgb: n for n, rgb in image.getcolors(maxcolors=1 << 24)}
    red, green = colors.get((0xC6, 0x28, 0x28), 0), colors.get((0x2E, 0x7D, 0x32), 0)
    assert red > 2000 and green > 10000, (red, green)
    shutil.rmtree(profile, ignore_errors=True)


def test_chart_merges_runs_with_the_same_status(tmp_path: Path) -> None:
    from probe.analysis.report import service_chart
    from probe.analysis.timeline import Rule, build_timeline
    from probe.results import expand_paths

    statuses = [OK] * 40 + [BLOCKED] * 40 + [OK] * 40
    for t, status in zip(times("2016-01-01 00:00:00", 120, step_min=30), statuses,
                         strict=True):
        write_run(tmp_path, t, {("whatsapp", "calls"): status, ("whatsapp", "web"): OK},
                  measurements_per_function=1)
    tl = build_timeline(expand_paths([tmp_path]), Rule(), lambda m: None)
    svg = service_chart(tl.networks[0], "whatsapp")
    assert re.findall(r"<title>calls: (\w+) from [^(]+\((\d+) runs\)", svg) == [
        ("ok", "40"), ("blocked", "40"), ("ok", "40")]
    assert len(re.findall(r"<title>web: ", svg)) == 1
    assert svg.count("stroke-dasharray") == 2  # onset and restoration markers
