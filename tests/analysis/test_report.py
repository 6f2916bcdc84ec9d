"""``voip-probe report``: a self-contained HTML file, rendered in headless Chromium."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from typer.testing import CliRunner

from probe.cli import _load_commands, app
from tests.helpers.browser import screenshot
from tests.helpers.results_factory import BLOCKED, INCONCLUSIVE, OK, times, write_run

_load_commands()


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
    from PIL import Image, ImageStat

    out, _html, _ts = _report(tmp_path)
    shot = screenshot(out.as_uri(), tmp_path / "shot.png", size=(1100, 1000))
    image = Image.open(shot).convert("RGB")
    stat = ImageStat.Stat(image)
    assert max(stat.var) > 100, f"blank screenshot (variance {stat.var})"
    # The charts were drawn: many pixels in the "blocked" red and the "ok" green.
    colors = {rgb: n for n, rgb in image.getcolors(maxcolors=1 << 24)}
    red, green = colors.get((0xC6, 0x28, 0x28), 0), colors.get((0x2E, 0x7D, 0x32), 0)
    assert red > 2000 and green > 10000, (red, green)


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


def test_close_events_get_labels_that_do_not_overlap(tmp_path: Path) -> None:
    """A ban switched on and off within hours, in a month of runs: the event labels are
    stacked in lanes instead of being drawn over each other."""
    from probe.analysis import chart
    from probe.analysis.report import service_chart
    from probe.analysis.timeline import Rule, build_timeline
    from probe.results import expand_paths

    ts = times("2016-01-01 00:00:00", 60, step_min=720) + times("2016-02-01 00:00:00", 6,
                                                                 step_min=30)
    statuses = [OK] * 60 + [BLOCKED, OK, BLOCKED, OK, BLOCKED, OK]
    for t, status in zip(ts, statuses, strict=True):
        write_run(tmp_path, t, {("whatsapp", "calls"): status}, measurements_per_function=1)
    tl = build_timeline(expand_paths([tmp_path]), Rule(window=1, threshold=1), lambda m: None)
    svg = service_chart(tl.networks[0], "whatsapp")
    labels = re.findall(r'<text class="event-label" x="([\d.]+)" y="([\d.]+)"[^>]*>'
                        r"<title>[^<]*</title>([^<]+)</text>", svg)
    assert len(labels) == 6  # three onsets and three restorations, 30 minutes apart
    boxes = [(float(x), float(x) + chart.text_width(text), float(y)) for x, y, text in labels]
    for a, b in itertools.combinations(boxes, 2):
        assert a[2] != b[2] or a[1] <= b[0] or b[1] <= a[0], (a, b)  # other lane, or apart
    assert len({b[2] for b in boxes}) >= 3
