"""probe.analysis.chart: marker labels never overlap, time axes are readable (also measured in a
real browser)."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.analysis import chart
from probe.analysis.chart import Marker, Row, Span
from tests.helpers.browser import dump_dom


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _clear(placed: list[chart.PlacedLabel]) -> list[str]:
    """What overlaps: two boxes in one lane, or a line crossing a box it does not own."""
    faults = []
    for a, b in itertools.combinations(placed, 2):
        if a.lane == b.lane and a.left < b.right and b.left < a.right:
            faults.append(f"boxes {a.marker.label!r} and {b.marker.label!r}")
    for line, box in itertools.product(placed, placed):
        # A line rises from the rows to its own lane; it crosses every lower lane.
        if line is not box and box.lane < line.lane and box.left <= line.x <= box.right:
            faults.append(f"line of {line.marker.label!r} through {box.marker.label!r}")
    return faults


def test_close_events_get_lanes_and_nothing_overlaps() -> None:
    xs = [100.0, 101.0, 104.0, 130.0, 130.0, 180.0, 600.0]
    placed = chart.place_labels([(x, Marker(0, f"onset calls {i}", "onset"))
                                 for i, x in enumerate(xs)])
    assert _clear(placed) == []
    assert max(p.lane for p in placed) >= 3  # close events were stacked, not overlaid
    assert next(p for p in placed if p.x == 600.0).lane == 0  # a far one stays low


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 800), st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz _/·", min_size=1, max_size=40)), max_size=25))
def test_labels_never_overlap_whatever_the_positions(items: list[tuple[float, str]]) -> None:
    placed = chart.place_labels([(x, Marker(0, label, "onset")) for x, label in items])
    assert len(placed) == len(items)
    assert _clear(placed) == []


@pytest.mark.parametrize(("start", "end", "unit", "labels"), [
    ("2016-01-04 09:00:00", "2016-01-04 12:00:00", "30 min",
     ["4 Jan 2016 09:00", "09:30", "10:00", "10:30", "11:00", "11:30", "12:00"]),
    ("2016-01-04 09:00:00", "2016-01-06 09:00:00", "6 h",
     ["4 Jan 2016 12:00", "18:00", "5 Jan 00:00", "06:00", "12:00", "18:00",
      "6 Jan 00:00", "06:00"]),
    ("2016-01-04 09:00:00", "2016-04-04 09:00:00", "2 weeks",
     ["18 Jan 2016", "1 Feb", "15 Feb", "29 Feb", "14 Mar", "28 Mar"]),
    ("2016-01-04 09:00:00", "2017-01-04 09:00:00", "1 month",
     ["Feb 2016", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
      "Jan 2017"]),
    ("2010-06-01 00:00:00", "2016-11-04 00:00:00", "1 year",
     ["2011", "2012", "2013", "2014", "2015", "2016"]),
])
def test_time_axis_over_hours_days_months_a_year(start: str, end: str, unit: str,
                                                 labels: list[str]) -> None:
    t0, t1 = ts(start), ts(end)
    ticks = chart.time_ticks(t0, t1, 738, 110, 860)
    assert [t.label for t in ticks] == labels, unit
    assert all(t0 <= t.at <= t1 for t in ticks)
    gaps = {round(b.at - a.at) for a, b in itertools.pairwise(ticks)}
    if unit in ("30 min", "6 h"):  # even spacing on a clock
        assert len(gaps) == 1
    boxes = chart.tick_boxes(ticks, t0, t1, 110, 738, 860)
    assert all(b[1] - a[2] >= chart.GAP_PX for a, b in itertools.pairwise(boxes))
    assert boxes[0][1] >= 0 and boxes[-1][2] <= 860


def test_narrow_charts_take_larger_steps() -> None:
    t0, t1 = ts("2016-01-01 00:00:00"), ts("2016-12-31 00:00:00")
    wide = chart.time_ticks(t0, t1, 738, 110, 860)
    narrow = chart.time_ticks(t0, t1, 200, 60, 272)
    assert 2 <= len(narrow) < len(wide)


def test_one_instant_and_reversed_range_still_render() -> None:
    t = ts("2016-11-04 10:00:00")
    assert [x.label for x in chart.time_ticks(t, t, 738)] == ["4 Nov 2016 10:00"]
    svg = chart.render([Row("calls", [Span(t, t, "ok", "calls: ok")])], [], start=t, end=t,
                       aria_label="x")
    assert svg.startswith("<svg") and "4 Nov 2016 10:00" in svg


def test_text_is_escaped_and_nothing_is_fetched() -> None:
    t0 = ts("2016-01-01 00:00:00")
    svg = chart.render([Row("<b>calls</b>", [Span(t0, t0 + 60, "blocked", "a&b")])],
                       [Marker(t0 + 30, "<script>", "onset", title='"quoted"')],
                       start=t0, end=t0 + 3600, aria_label="<x>")
    assert "<b>" not in svg and "<script>" not in svg and "&lt;script&gt;" in svg
    assert not re.search(r"\b(src|href)\s*=|url\(|@import", svg)


_MEASURE = """
<script>
const labels = [...document.querySelectorAll('text.event-label')].map(t => t.getBBox());
const lines = [...document.querySelectorAll('g.marker line')].map(l => l.getBBox());
const ticks = [...document.querySelectorAll('text.tick')].map(t => t.getBBox());
const hit = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width &&
                      a.y < b.y + b.height && b.y < a.y + a.height;
const faults = [];
labels.forEach((a, i) => labels.forEach((b, j) => {
  if (i < j && hit(a, b)) faults.push(`labels ${i} and ${j}`); }));
lines.forEach((l, i) => labels.forEach((b, j) => {
  if (i !== j && hit(l, b)) faults.push(`line ${i} crosses label ${j}`); }));
ticks.forEach((a, i) => ticks.forEach((b, j) => {
  if (i < j && hit(a, b)) faults.push(`ticks ${i} and ${j}`); }));
const out = document.createElement('pre');
out.id = 'measured';
out.textContent = JSON.stringify({faults, widths: labels.map(b => b.width),
                                  ticks: ticks.length, labels: labels.length});
document.body.appendChild(out);
</script>
"""


def test_in_a_real_browser_labels_and_ticks_do_not_overlap(tmp_path: Path) -> None:
    """Chromium measures the rendered text: the width estimate is an upper bound, and
    no label touches another label, another marker's line or a tick label."""
    t0 = ts("2016-01-01 00:00:00")
    day = 86400.0
    # A year with bursts of events hours apart (a ban switched on operator by operator),
    # two at the same instant, and one at the very end.
    times = [t0 + 7 * day + h * 3600 for h in (0, 1, 2, 5, 5)] + [
        t0 + 40 * day, t0 + 41 * day, t0 + 300 * day, t0 + 365 * day]
    markers = [Marker(t, f"{'onset' if i % 2 == 0 else 'restoration'} "
                         f"{'calls' if i % 3 else 'messaging'} · confirmed",
                      "onset" if i % 2 == 0 else "restoration",
                      style="solid" if i % 2 else "dashed")
               for i, t in enumerate(times)]
    rows = [Row(f, [Span(t0, t0 + 200 * day, "ok"), Span(t0 + 200 * day, t0 + 365 * day,
                                                          "blocked")])
            for f in ("dns", "messaging", "registration", "web", "calls")]
    svg = chart.render(rows, markers, start=t0, end=t0 + 365 * day, aria_label="test")
    page = tmp_path / "chart.html"
    page.write_text(f"<!DOCTYPE html><html><body>{svg}{_MEASURE}</body></html>")
    dom = dump_dom(page.as_uri())
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    measured = json.loads(found.group(1).replace("&amp;", "&").replace("&quot;", '"'))
    assert measured["labels"] == len(markers) and measured["ticks"] >= 6
    assert measured["faults"] == []
    order = sorted(markers, key=lambda m: (m.at, m.label))  # the SVG's drawing order
    placed = chart.place_labels([(0.0, m) for m in order])
    estimates = {m.label: chart.text_width(m.label) for m in order}
    for width, p in zip(measured["widths"], sorted(placed, key=lambda p: p.marker.at),
                        strict=True):
        assert 0 < width <= estimates[p.marker.label], (p.marker.label, width)
