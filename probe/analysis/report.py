"""One self-contained HTML report: status over time, events and latest verdicts.

Built from a :class:`probe.analysis.timeline.Timeline` (so the same streaming read and the same
event rule as ``voip-probe timeline``). The page needs no network to open: styles are
inline and each chart is an inline SVG drawn here: one chart per network and service,
one row per function, time running left to right in proportion to real time, each run's
status holding until the next run, dashed lines at onset and restoration events.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from html import escape

from probe.analysis.timeline import NetworkTimeline, Run, Timeline

COLORS = {"ok": "#2e7d32", "impaired": "#f9a825", "blocked": "#c62828",
          "inconclusive": "#9e9e9e", "absent": "#eeeeee"}
FUNCTION_ORDER = ("dns", "messaging", "registration", "web", "calls")
CHART_W, ROW_H, LABEL_W, AXIS_H, TOP_H = 860, 22, 110, 34, 18

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;
     background:#fff;max-width:1040px}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.s-ok{color:#2e7d32} .s-blocked{color:#c62828;font-weight:bold} .s-impaired{color:#b07800}
.s-inconclusive{color:#777} .muted{color:#777;font-size:13px}
"""


def _epoch(start: str) -> float:
    try:
        return datetime.strptime(start, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def _functions(runs: list[Run], service: str) -> list[str]:
    seen = {fn for r in runs for (s, fn) in r.states if s == service}
    return sorted(seen, key=lambda f: (FUNCTION_ORDER.index(f) if f in FUNCTION_ORDER else 99, f))


def _status(run: Run, service: str, function: str) -> str:
    st = run.states.get((service, function))
    if st is None:
        return "absent"
    return st[0] if run.online else "inconclusive"


def service_chart(net: NetworkTimeline, service: str) -> str:
    """An SVG status-over-time chart for one service on one network."""
    runs = net.runs
    functions = _functions(runs, service)
    times = [_epoch(r.start) for r in runs]
    t0, t1 = times[0], times[-1]
    gaps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    tail = gaps[len(gaps) // 2] if gaps else 3600.0  # the last run holds for a typical gap
    span = (t1 + tail - t0) or 1.0
    plot_w = CHART_W - LABEL_W - 10

    def x(t: float) -> float:
        return LABEL_W + (t - t0) / span * plot_w

    height = TOP_H + len(functions) * ROW_H + AXIS_H
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{height}" '
             f'viewBox="0 0 {CHART_W} {height}" role="img" '
             f'aria-label="{escape(service)} status over time on {escape(net.asn)} '
             f'{escape(net.network_type)}">',
             f'<rect x="0" y="0" width="{CHART_W}" height="{height}" fill="#fff"/>']
    for row, function in enumerate(functions):
        y = TOP_H + row * ROW_H
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + ROW_H * 0.68:.1f}" font-size="12" '
                     f'text-anchor="end" fill="#333">{escape(function)}</text>')
        # Run-length merge: consecutive runs with the same status are one rectangle.
        i = 0
        while i < len(runs):
            status = _status(runs[i], service, function)
            j = i + 1
            while j < len(runs) and _status(runs[j], service, function) == status:
                j += 1
            left = x(times[i])
            right = x(times[j]) if j < len(runs) else x(t1 + tail)
            parts.append(f'<rect x="{left:.1f}" y="{y + 2}" width="{max(right - left, 1.5):.1f}" '
                         f'height="{ROW_H - 4}" fill="{COLORS.get(status, "#000")}">'
                         f'<title>{escape(function)}: {escape(status)} from '
                         f'{escape(runs[i].start)} ({j - i} run{"s" * (j - i > 1)})</title></rect>')
            i = j
    axis_y = TOP_H + len(functions) * ROW_H
    parts.append(f'<line x1="{LABEL_W}" y1="{axis_y}" x2="{LABEL_W + plot_w}" y2="{axis_y}" '
                 'stroke="#666"/>')
    ticks = 5 if t1 > t0 else 1
    for k in range(ticks):
        t = t0 + (t1 - t0) * k / max(ticks - 1, 1)
        label = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")
        anchor = "start" if k == 0 else ("end" if k == ticks - 1 and ticks > 1 else "middle")
        parts.append(f'<line x1="{x(t):.1f}" y1="{axis_y}" x2="{x(t):.1f}" y2="{axis_y + 4}" '
                     f'stroke="#666"/><text x="{x(t):.1f}" y="{axis_y + 16}" font-size="11" '
                     f'text-anchor="{anchor}" fill="#444">{label}</text>')
    for event in (e for e in net.events if e.service == service):
        ex = x(_epoch(event.at))
        color = COLORS["blocked"] if event.kind == "onset" else COLORS["ok"]
        parts.append(f'<line x1="{ex:.1f}" y1="{TOP_H - 4}" x2="{ex:.1f}" y2="{axis_y}" '
                     f'stroke="#000" stroke-width="1.5" stroke-dasharray="4 3"/>'
                     f'<text x="{ex + 3:.1f}" y="{TOP_H - 6}" font-size="11" fill="{color}">'
                     f'{escape(event.kind)} {escape(event.function)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _status_cell(status: str) -> str:
    return f'<td class="s-{escape(status)}">{escape(status)}</td>'


def _network_section(net: NetworkTimeline) -> str:
    out = [f"<h2>{escape(net.asn)} {escape(net.network_type)}</h2>",
           f'<p class="muted">{len(net.runs)} runs from {escape(net.runs[0].start)} to '
           f"{escape(net.runs[-1].start)} (UTC)</p>"]
    services = sorted({s for r in net.runs for (s, _f) in r.states})
    for service in services:
        out.append(f"<h3>{escape(service)}</h3>{service_chart(net, service)}")
    out.append("<h3>Events</h3>")
    if net.events:
        rows = "".join(
            f"<tr><td>{escape(e.at)}</td><td>{escape(e.previous)}</td><td>{escape(e.service)}"
            f"</td><td>{escape(e.function)}</td>"
            f'<td class="s-{"blocked" if e.kind == "onset" else "ok"}">{escape(e.kind)}</td>'
            f"<td>{escape(', '.join(e.methods))}</td></tr>" for e in net.events)
        out.append("<table><tr><th>at</th><th>previous</th><th>service</th><th>function</th>"
                   f"<th>event</th><th>methods</th></tr>{rows}</table>")
    else:
        out.append('<p class="muted">No onset or restoration detected.</p>')
    latest = net.runs[-1]
    out.append(f"<h3>Latest verdicts</h3><p class=\"muted\">run of {escape(latest.start)}"
               f"{'' if latest.online else ' (network offline)'}, report "
               f"{escape(latest.report_id)}</p>")
    rows = "".join(
        f"<tr><td>{escape(s)}</td><td>{escape(f)}</td>{_status_cell(st[0])}"
        f"<td>{st[2]}/{st[3]}</td><td>{escape(', '.join(st[1]))}</td></tr>"
        for (s, f), st in sorted(latest.states.items()))
    out.append("<table><tr><th>service</th><th>function</th><th>status</th>"
               f"<th>reachable</th><th>methods</th></tr>{rows}</table>")
    return "".join(out)


def render_report(timeline: Timeline, *, title: str = "voip-probe report",
                  rule_text: str = "") -> str:
    """The whole HTML document as text."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    legend = "".join(f'<span><i style="background:{c}"></i>{escape(s)}</span>'
                     for s, c in COLORS.items())
    body = "".join(_network_section(n) for n in timeline.networks if n.runs)
    if not body:
        body = '<p class="muted">No runs.</p>'
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class=\"muted\">Generated {generated} from "
        f"{timeline.runs} runs on {len(timeline.networks)} networks. {escape(rule_text)}</p>"
        f'<p class="legend">{legend}</p>{body}</body></html>\n'
    )
