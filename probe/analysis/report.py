"""One self-contained HTML report: status over time, events and latest verdicts.

Built from a :class:`probe.analysis.timeline.Timeline` (so the same streaming read and the
same event rule as ``voip-probe timeline``). The page needs no network to open: styles
are inline and each chart is an inline SVG from :mod:`probe.analysis.chart` (the same code
as the collector's status page): one chart per network and service, one row per
function, time running left to right in proportion to real time, each run's status
holding until the next run, dashed lines at onset and restoration events, labels that
never overlap.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from html import escape

from probe.analysis import chart
from probe.analysis.timeline import NetworkTimeline, Run, Timeline

FUNCTION_ORDER = ("dns", "messaging", "registration", "web", "calls")

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
    times = [_epoch(r.start) for r in runs]
    t0, t1 = times[0], times[-1]
    gaps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    tail = gaps[len(gaps) // 2] if gaps else 3600.0  # the last run holds for a typical gap
    rows = []
    for function in _functions(runs, service):
        spans = []
        # Run-length merge: consecutive runs with the same status are one span.
        i = 0
        while i < len(runs):
            status = _status(runs[i], service, function)
            j = i + 1
            while j < len(runs) and _status(runs[j], service, function) == status:
                j += 1
            end = times[j] if j < len(runs) else t1 + tail
            spans.append(chart.Span(times[i], end, status,
                                    f"{function}: {status} from {runs[i].start} "
                                    f"({j - i} run{'s' * (j - i > 1)})"))
            i = j
        rows.append(chart.Row(function, spans))
    markers = [chart.Marker(_epoch(e.at), f"{e.kind} {e.function}", e.kind,
                            title=f"{e.kind} of {e.function} at {e.at} (previous run "
                                  f"{e.previous}); methods: {', '.join(e.methods) or '-'}")
               for e in net.events if e.service == service]
    return chart.render(rows, markers, start=t0, end=t1 + tail,
                        aria_label=f"{service} status over time on {net.asn} "
                                   f"{net.network_type}")


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
    legend = chart.legend_html()
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
