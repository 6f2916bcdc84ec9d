"""Status-over-time charts as inline SVG: one implementation for ``voip-probe report``
and the collector's status page.

A chart has one row per label (a service function), each a sequence of :class:`Span`
(a status holding from ``start`` to ``end``, epoch seconds UTC), and vertical
:class:`Marker` lines (onset and restoration events) whose labels sit in lanes above
the rows. The SVG needs nothing from outside (no fonts, scripts or images), so a page
or file holding it opens offline.

Two layout promises, both tested:

- **Marker labels never overlap**, each other or another marker's line. Labels are
  drawn in a monospace font, so their width is known here (:func:`text_width`, an upper
  bound). They are placed from the rightmost marker to the leftmost, each starting just
  right of its own line, in the lowest lane where its box is clear of the boxes in that
  lane and of every line that rises through that lane. Because every box already placed
  starts right of the marker being placed, the new marker's own line never crosses a
  box, so a lane is always found. Labels may run past the plot's right end: the SVG is
  widened for them.
- **Time axis ticks are readable**: the step is the smallest "round" calendar step
  (minutes, hours, days, weeks, months, years; see :data:`STEPS`) whose tick spacing
  fits the widest label of that step, ticks fall on calendar boundaries (midnight UTC,
  the first of a month), and labels name the date only where it changes (the first
  tick, a new day, a new year).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

COLORS = {"ok": "#2e7d32", "impaired": "#f9a825", "blocked": "#c62828",
          "inconclusive": "#9e9e9e", "absent": "#eeeeee"}
EVENT_COLORS = {"onset": "#c62828", "restoration": "#2e7d32"}

FONT_PX = 11
# Monospace advance widths are 0.6 em (DejaVu Sans Mono 0.602, Liberation Mono 0.600);
# the margin makes the estimate an upper bound. Characters beyond Latin may be wide.
CHAR_EM = 0.62
WIDE_CHAR_EM = 1.2
LANE_H = 15
ROW_H = 22
AXIS_H = 34
GAP_PX = 6
MIN_LABEL_W = 60
FONT = "DejaVu Sans Mono,Liberation Mono,Menlo,Consolas,monospace"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
          "Dec")


@dataclass(frozen=True, slots=True)
class Span:
    """One status holding over ``[start, end)`` (epoch seconds, UTC)."""

    start: float
    end: float
    status: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    spans: Sequence[Span]


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical event line; ``style`` is ``solid`` or ``dashed``."""

    at: float
    label: str
    kind: str  # onset | restoration: the label's colour
    title: str = ""
    style: str = "dashed"


@dataclass(frozen=True, slots=True)
class PlacedLabel:
    marker: Marker
    x: float  # the marker line
    left: float  # the label box
    right: float
    lane: int  # 0 is the lane nearest the rows


@dataclass(frozen=True, slots=True)
class Tick:
    at: float
    label: str


def text_width(text: str, font_px: float = FONT_PX) -> float:
    """An upper bound on the rendered width of ``text`` in the chart's monospace font."""
    return sum((CHAR_EM if ord(c) < 0x2E80 else WIDE_CHAR_EM) for c in text) * font_px


def place_labels(xs_labels: Sequence[tuple[float, Marker]]) -> list[PlacedLabel]:
    """Lanes for marker labels (module docstring): no box overlaps another box, and no
    marker line crosses a box. ``xs_labels`` holds each marker's x position."""
    placed: list[PlacedLabel] = []
    order = sorted(xs_labels, key=lambda item: (-item[0], item[1].label))
    for x, marker in order:
        left = x + 3
        right = left + text_width(marker.label)
        lane = 0
        while not _lane_is_free(placed, lane, left, right):
            lane += 1
        placed.append(PlacedLabel(marker, x, left, right, lane))
    placed.sort(key=lambda p: (p.x, p.lane))
    return placed


def _lane_is_free(placed: Sequence[PlacedLabel], lane: int, left: float, right: float) -> bool:
    for other in placed:
        if other.lane == lane and left < other.right + GAP_PX and other.left < right + GAP_PX:
            return False  # two boxes in one lane
        if other.lane > lane and left - GAP_PX <= other.x <= right + GAP_PX:
            return False  # a line rising to a higher lane would cross this box
    return True


# -- time axis ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Step:
    """A tick step: ``unit`` is minute, hour, day, week, month or year."""

    unit: str
    count: int

    @property
    def min_seconds(self) -> float:
        """The shortest real time between two ticks (months are 28 days at least)."""
        base = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400,
                "month": 28 * 86400, "year": 365 * 86400}[self.unit]
        return float(base * self.count)


STEPS = tuple(Step(u, n) for u, n in (
    ("minute", 1), ("minute", 5), ("minute", 10), ("minute", 15), ("minute", 30),
    ("hour", 1), ("hour", 2), ("hour", 3), ("hour", 6), ("hour", 12),
    ("day", 1), ("day", 2), ("week", 1), ("week", 2),
    ("month", 1), ("month", 2), ("month", 3), ("month", 6),
    ("year", 1), ("year", 2), ("year", 5), ("year", 10), ("year", 25), ("year", 50),
    ("year", 100),
))
def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _floor(moment: datetime, step: Step) -> datetime:
    """The last tick boundary of ``step`` at or before ``moment``."""
    if step.unit == "minute":
        return moment.replace(minute=moment.minute - moment.minute % step.count, second=0,
                              microsecond=0)
    if step.unit == "hour":
        return moment.replace(hour=moment.hour - moment.hour % step.count, minute=0,
                              second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if step.unit == "day":
        # Every count-th day since the epoch, so ticks do not depend on the range.
        days = (day - datetime(1970, 1, 1, tzinfo=UTC)).days
        return day - timedelta(days=days % step.count)
    if step.unit == "week":
        monday = day - timedelta(days=day.weekday())
        weeks = (monday - datetime(1970, 1, 5, tzinfo=UTC)).days // 7
        return monday - timedelta(weeks=weeks % step.count)
    if step.unit == "month":
        month0 = (moment.month - 1) - (moment.month - 1) % step.count
        return day.replace(month=month0 + 1, day=1)
    return day.replace(year=moment.year - moment.year % step.count, month=1, day=1)


def _advance(moment: datetime, step: Step) -> datetime:
    if step.unit == "minute":
        return moment + timedelta(minutes=step.count)
    if step.unit == "hour":
        return moment + timedelta(hours=step.count)
    if step.unit == "day":
        return moment + timedelta(days=step.count)
    if step.unit == "week":
        return moment + timedelta(weeks=step.count)
    if step.unit == "month":
        months = moment.month - 1 + step.count
        return moment.replace(year=moment.year + months // 12, month=months % 12 + 1)
    return moment.replace(year=moment.year + step.count)


def _tick_label(moment: datetime, previous: datetime | None, step: Step) -> str:
    """The tick's label: what changed since the previous tick, and the context on the
    first one (module docstring): "4 Jan 2016 09:00", "10:00", "5 Jan 00:00"; "18 Jan
    2016", "1 Feb"; "Mar 2016", "May", "Jan 2017"; "2016"."""
    new_year = previous is None or previous.year != moment.year
    new_day = previous is None or previous.date() != moment.date()
    month = MONTHS[moment.month - 1]
    if step.unit == "year":
        return f"{moment.year}"
    if step.unit == "month":
        return f"{month} {moment.year}" if new_year else month
    date = f"{moment.day} {month}" + (f" {moment.year}" if new_year else "")
    if step.unit in ("day", "week"):
        return date
    return f"{date} {moment:%H:%M}" if new_day else f"{moment:%H:%M}"


def _ticks_of(step: Step, start: float, end: float) -> list[Tick]:
    moment = _floor(_utc(start), step)
    if moment.timestamp() < start:
        moment = _advance(moment, step)
    ticks: list[Tick] = []
    previous: datetime | None = None
    while moment.timestamp() <= end:
        ticks.append(Tick(moment.timestamp(), _tick_label(moment, previous, step)))
        previous = moment
        moment = _advance(moment, step)
    return ticks


def tick_boxes(ticks: Sequence[Tick], start: float, end: float, left_px: float,
               width_px: float, total_px: float) -> list[tuple[float, float, float]]:
    """Each tick label's ``(x, left, right)``: centred on its tick, moved inwards where
    it would leave the drawing (``0 .. total_px``)."""
    boxes = []
    for tick in ticks:
        x = left_px + (tick.at - start) / (end - start) * width_px
        half = text_width(tick.label) / 2
        centre = min(max(x, half), total_px - half)
        boxes.append((x, centre - half, centre + half))
    return boxes


def time_ticks(start: float, end: float, width_px: float, left_px: float = 0.0,
               total_px: float | None = None) -> list[Tick]:
    """Ticks for ``[start, end]`` drawn ``width_px`` wide from ``left_px``: the smallest
    step of :data:`STEPS` whose labels do not overlap (module docstring)."""
    total = total_px if total_px is not None else left_px + width_px
    if end <= start:
        return [Tick(start, _tick_label(_utc(start), None, Step("minute", 1)))]
    span = end - start
    for step in STEPS:
        if span / step.min_seconds > width_px / 20:  # far too many to be readable
            continue
        ticks = _ticks_of(step, start, end)
        boxes = tick_boxes(ticks, start, end, left_px, width_px, total)
        clear = all(b[1] - a[2] >= 2 * GAP_PX for a, b in itertools.pairwise(boxes))
        if len(ticks) >= 2 and clear:
            return ticks
        if len(ticks) < 2:  # larger steps have no more ticks: name where the range starts
            return ticks or [Tick(start, _tick_label(_utc(start), None, Step("minute", 1)))]
    return [Tick(start, f"{_utc(start).year}")]


# -- the chart ----------------------------------------------------------------------

def render(rows: Sequence[Row], markers: Sequence[Marker], *, start: float, end: float,
           aria_label: str, width: int = 860, css_class: str = "chart") -> str:
    """The SVG element for ``rows`` over ``[start, end]`` with event ``markers``."""
    if end <= start:
        end = start + 3600.0
    label_w = max(MIN_LABEL_W, *(text_width(r.label, 12) + 14 for r in rows)) if rows \
        else MIN_LABEL_W
    plot_w = width - label_w - 12

    def x(t: float) -> float:
        return label_w + (min(max(t, start), end) - start) / (end - start) * plot_w

    labels = place_labels([(x(m.at), m) for m in markers])
    lanes = max((p.lane for p in labels), default=-1) + 1
    top = lanes * LANE_H + (6 if lanes else 4)
    axis_y = top + len(rows) * ROW_H
    height = axis_y + AXIS_H
    full_w = max(float(width), *(p.right + 4 for p in labels)) if labels else float(width)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{escape(css_class)}" '
        f'width="{full_w:.0f}" height="{height}" viewBox="0 0 {full_w:.0f} {height}" '
        f'role="img" aria-label="{escape(aria_label)}">',
        f'<rect x="0" y="0" width="{full_w:.0f}" height="{height}" fill="#fff"/>',
    ]
    for index, row in enumerate(rows):
        y = top + index * ROW_H
        parts.append(f'<text x="{label_w - 8}" y="{y + ROW_H * 0.68:.1f}" font-size="12" '
                     f'font-family="{FONT}" text-anchor="end" fill="#333">'
                     f"{escape(row.label)}</text>")
        for span in row.spans:
            left, right = x(span.start), x(span.end)
            parts.append(
                f'<rect class="span s-{escape(span.status)}" x="{left:.1f}" y="{y + 2}" '
                f'width="{max(right - left, 1.5):.1f}" height="{ROW_H - 4}" '
                f'fill="{COLORS.get(span.status, "#000")}"><title>{escape(span.title)}'
                "</title></rect>")
    parts.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" '
                 f'y2="{axis_y}" stroke="#666"/>')
    ticks = time_ticks(start, end, plot_w, label_w, full_w)
    for tick, (tx, left, right) in zip(
            ticks, tick_boxes(ticks, start, end, label_w, plot_w, full_w), strict=True):
        parts.append(f'<line x1="{tx:.1f}" y1="{axis_y}" x2="{tx:.1f}" y2="{axis_y + 4}" '
                     f'stroke="#666"/><text class="tick" x="{(left + right) / 2:.1f}" '
                     f'y="{axis_y + 16}" font-size="{FONT_PX}" font-family="{FONT}" '
                     f'text-anchor="middle" fill="#444">{escape(tick.label)}</text>')
    for p in labels:
        y_label = top - 6 - p.lane * LANE_H
        dash = ' stroke-dasharray="4 3"' if p.marker.style == "dashed" else ""
        color = EVENT_COLORS.get(p.marker.kind, "#000")
        title = escape(p.marker.title or p.marker.label)
        parts.append(
            f'<g class="marker {escape(p.marker.kind)} {escape(p.marker.style)}">'
            f'<line x1="{p.x:.1f}" y1="{y_label - FONT_PX + 2}" x2="{p.x:.1f}" '
            f'y2="{axis_y}" stroke="#000" stroke-width="1.5"{dash}><title>{title}</title>'
            f'</line><text class="event-label" x="{p.left:.1f}" y="{y_label}" '
            f'font-size="{FONT_PX}" font-family="{FONT}" fill="{color}">'
            f"<title>{title}</title>{escape(p.marker.label)}</text></g>")
    parts.append("</svg>")
    return "".join(parts)


def legend_html() -> str:
    """The colour legend, as HTML (shared by the report and the status page)."""
    return "".join(f'<span><i style="background:{c}"></i>{escape(s)}</span>'
                   for s, c in COLORS.items())
