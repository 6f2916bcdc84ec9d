"""The collector's public status page: server-rendered HTML over the status tables.

- ``/``: per country, each network (ASN + network type) with the current status of
  every service and function, how many probes say so, the latest event; below, the
  events (onset/restoration, dates, methods, confidence) with links to their raw
  measurements through the API. Filters: country, ASN, service, date range (a plain
  ``GET`` form: everything works without JavaScript; the small script only submits the
  form when a choice changes).
- ``/network/{cc}/{asn}/{network_type}``: per service, the current status of each
  function, a status-over-time chart (:mod:`probe.analysis.chart`, the same code as
  ``voip-probe report``; one bar per day, coloured by the day's majority status, event
  lines solid when confirmed and dashed when single-probe) and the events.

Nothing is fetched from elsewhere: styles, the script and the charts are inline. Pages
come from :class:`PageCache`: a page is rendered again only when an upload changed the
status tables behind it (their ``version``), and not more often than ``min_age_s``.
Everything read from uploads is escaped.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from probe.analysis import chart
from probe.analysis.crowd import CONFIRMED, Rule, seconds
from probe.collector.aggregate import StatusReader
from probe.collector.filters import Filters
from probe.model import REPORTED_FUNCTIONS

EVENTS_ON_OVERVIEW = 200
STATUS_ORDER = {"blocked": 0, "impaired": 1, "mixed": 2, "inconclusive": 3, "ok": 4}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:20px auto;color:#222;
     background:#fff;max-width:1180px;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:28px;
   border-bottom:1px solid #ccc} h3{font-size:15px;margin:18px 0 4px}
a{color:#0b57d0}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td small{display:block;color:#666;font-size:11px}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.s-ok{color:#2e7d32} .s-blocked{color:#c62828;font-weight:bold} .s-impaired{color:#b07800}
.s-mixed{color:#b07800} .s-inconclusive{color:#777} .muted{color:#666;font-size:13px}
td.s-blocked{background:#fdecea} td.s-impaired,td.s-mixed{background:#fff6dd}
.confirmed{font-weight:bold} .single-probe{font-style:italic}
form.filters{display:flex;flex-wrap:wrap;gap:10px;align-items:end;background:#f7f7f7;
   padding:8px 10px;border:1px solid #e3e3e3;font-size:13px}
form.filters label{display:flex;flex-direction:column;gap:2px}
.chart{max-width:100%;height:auto}
"""

# Submits the filter form when a select or date changes; the button stays for everyone
# else (and for text fields).
SCRIPT = """
document.querySelectorAll('form.filters select, form.filters input[type=date]')
  .forEach(function (el) { el.addEventListener('change', function () {
    el.form.submit(); }); });
document.documentElement.classList.add('js');
"""


@dataclass(frozen=True, slots=True)
class PageRequest:
    """What a page shows: filters from the query string (already validated)."""

    filters: Filters
    network: tuple[str, str, str] | None = None  # cc, asn, network type


def _time_label(at: str | None) -> str:
    return f"{at} UTC" if at else "-"


def _network_href(cc: str, asn: str, network_type: str, **query: str | None) -> str:
    path = f"/network/{quote(cc, safe='')}/{quote(asn, safe='')}/{quote(network_type, safe='')}"
    kept = {k: v for k, v in query.items() if v}
    return path + (f"?{urlencode(kept)}" if kept else "")


def raw_href(event: dict[str, Any]) -> str:
    """The API query for the measurements behind an event: that network, service and
    function, from the last run before the change to the last probe that saw it."""
    return "/api/v1/measurements?" + urlencode({
        "cc": event["cc"], "asn": event["asn"], "network_type": event["network_type"],
        "service": event["service"], "function": event["function"],
        "since": event["previous"], "until": event["last_at"], "limit": 1000})


def _events_table(events: list[dict[str, Any]], *, with_network: bool) -> str:
    if not events:
        return '<p class="muted no-events">No onset or restoration in this selection.</p>'
    head = ("<tr><th>at (first run in the new state)</th><th>previous run</th>"
            + ("<th>network</th>" if with_network else "")
            + "<th>service</th><th>function</th><th>event</th><th>methods</th>"
              "<th>confidence</th><th>raw</th></tr>")
    rows = []
    for e in events:
        network = ""
        if with_network:
            href = _network_href(e["cc"], e["asn"], e["network_type"])
            network = (f'<td><a href="{escape(href)}">{escape(e["cc"])} {escape(e["asn"])} '
                       f'{escape(e["network_type"])}</a></td>')
        status = "blocked" if e["kind"] == "onset" else "ok"
        pending = " (waiting: not yet held for the window)" if e["pending"] else ""
        rows.append(
            f'<tr class="event" data-kind="{escape(e["kind"])}" '
            f'data-confidence="{escape(e["confidence"])}" data-cc="{escape(e["cc"])}" '
            f'data-asn="{escape(e["asn"])}" data-network-type="{escape(e["network_type"])}" '
            f'data-service="{escape(e["service"])}" data-function="{escape(e["function"])}" '
            f'data-at="{escape(e["at"])}">'
            f'<td>{escape(e["at"])}</td><td>{escape(e["previous"])}</td>{network}'
            f'<td>{escape(e["service"])}</td><td>{escape(e["function"])}</td>'
            f'<td class="s-{status}">{escape(e["kind"])}</td>'
            f'<td>{escape(", ".join(e["methods"]) or "-")}</td>'
            f'<td class="{escape(e["confidence"])}">{escape(e["confidence"])}'
            f'<small>{e["probes"]} probe{"s" * (e["probes"] != 1)}, weight '
            f'{e["weight"]:g}{escape(pending)}</small></td>'
            f'<td><a class="raw" href="{escape(raw_href(e))}">measurements</a></td></tr>')
    return f'<table class="events">{head}{"".join(rows)}</table>'


def _status_cell(item: dict[str, Any] | None, function: str) -> str:
    if item is None:
        return f'<td class="absent" data-function="{escape(function)}">-</td>'
    status = item["status"]
    return (f'<td class="s-{escape(status)}" data-function="{escape(function)}" '
            f'data-status="{escape(status)}">{escape(status)}'
            f'<small>{item["probes"]} probe{"s" * (item["probes"] != 1)}, since '
            f'{escape((item["since"] or "-")[:10])}</small></td>')


def _functions(items: Iterable[dict[str, Any]]) -> list[str]:
    seen = {i["function"] for i in items}
    return sorted(seen, key=lambda f: (REPORTED_FUNCTIONS.index(f)
                                       if f in REPORTED_FUNCTIONS else 99, f))


def _filters_form(action: str, filters: Filters, options: dict[str, list[str]],
                  *, network_page: bool) -> str:
    def select(name: str, label: str, values: list[str], current: str | None) -> str:
        opts = ['<option value="">all</option>'] + [
            f'<option value="{escape(v)}"{" selected" if v == current else ""}>'
            f"{escape(v)}</option>" for v in values]
        return (f'<label>{escape(label)}<select name="{name}">{"".join(opts)}</select>'
                "</label>")

    parts = []
    if not network_page:
        parts.append(select("cc", "country", options.get("cc", []), filters.cc))
        parts.append(f'<label>ASN<input name="asn" size="9" placeholder="AS36903" '
                     f'value="{escape(filters.asn or "")}"></label>')
    parts.append(select("service", "service", options.get("service", []), filters.service))
    for name, value in (("since", filters.since), ("until", filters.until)):
        parts.append(f'<label>{"from" if name == "since" else "to"} (UTC)'
                     f'<input type="date" name="{name}" value="{escape((value or "")[:10])}">'
                     "</label>")
    return (f'<form class="filters" method="get" action="{escape(action)}">{"".join(parts)}'
            f'<button type="submit">Apply</button> <a href="{escape(action)}">reset</a></form>')


def _document(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}"
            f"<script>{SCRIPT}</script></body></html>\n")


def _legend() -> str:
    return (f'<p class="legend">{chart.legend_html()}'
            '<span>— confirmed event</span><span>- - single-probe event</span></p>')


def _rule_text(rule: Rule) -> str:
    hours = rule.window_s / 3600
    return (f"An event is <b>confirmed</b> when independent probes on that network weighing "
            f"at least {rule.probes:g} saw the same change within {hours:g} h of each other "
            "(a steady probe weighs 1; probes that flap or are mostly inconclusive weigh "
            "less); <b>single-probe</b> otherwise. A change must last "
            f"{hours:g} h on a probe; a probe flapping back and forth makes no event. "
            "Probes are told apart by a random pseudonym per network that changes every 28 "
            "days; no address is kept.")


def render_overview(reader: StatusReader, req: PageRequest, rule: Rule) -> str:
    f = req.filters
    current = reader.current(f)
    events = reader.events(f, limit=EVENTS_ON_OVERVIEW)
    everything = reader.current(Filters())
    options = {"cc": sorted({c["cc"] for c in everything}),
               "service": sorted({c["service"] for c in everything})}
    functions = _functions(current) or list(REPORTED_FUNCTIONS)
    latest: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for e in events:  # newest first
        latest.setdefault((e["cc"], e["asn"], e["network_type"], e["service"]), e)
    by_country: dict[str, dict[tuple[str, str], dict[str, dict[str, dict[str, Any]]]]] = {}
    for c in current:
        by_country.setdefault(c["cc"], {}).setdefault((c["asn"], c["network_type"]), {}) \
            .setdefault(c["service"], {})[c["function"]] = c
    sections = []
    for cc in sorted(by_country):
        rows = []
        for (asn, network_type), services in sorted(by_country[cc].items()):
            href = _network_href(cc, asn, network_type, service=f.service,
                                 since=f.since and f.since[:10], until=f.until and f.until[:10])
            runs = max((i["runs"] for s in services.values() for i in s.values()), default=0)
            for index, (service, fns) in enumerate(sorted(services.items())):
                network_cell = ""
                if index == 0:
                    network_cell = (
                        f'<td rowspan="{len(services)}"><a href="{escape(href)}">'
                        f"{escape(asn)} {escape(network_type)}</a><small>{runs} runs of the "
                        f"busiest function</small></td>")
                last = latest.get((cc, asn, network_type, service))
                last_cell = "<td>-</td>"
                if last is not None:
                    last_cell = (f'<td class="{escape(last["confidence"])}">'
                                 f'{escape(last["kind"])} {escape(last["function"])} '
                                 f'{escape(last["at"][:10])}<small>'
                                 f'{escape(last["confidence"])}</small></td>')
                rows.append(
                    f'<tr class="service-row" data-cc="{escape(cc)}" data-asn="{escape(asn)}" '
                    f'data-network-type="{escape(network_type)}" '
                    f'data-service="{escape(service)}">{network_cell}'
                    f"<td>{escape(service)}</td>"
                    + "".join(_status_cell(fns.get(fn), fn) for fn in functions)
                    + f"{last_cell}</tr>")
        head = ("<tr><th>network</th><th>service</th>"
                + "".join(f"<th>{escape(fn)}</th>" for fn in functions)
                + "<th>latest event</th></tr>")
        sections.append(f'<section class="country" id="cc-{escape(cc)}" data-cc="{escape(cc)}">'
                        f"<h2>{escape(cc)}</h2><table class=\"networks\">{head}"
                        f"{''.join(rows)}</table></section>")
    if not sections:
        sections.append('<p class="muted">No runs in this selection yet.</p>')
    as_of = max((c["as_of"] or "" for c in everything), default="")
    more = ""
    if len(events) == EVENTS_ON_OVERVIEW:
        more = (f'<p class="muted">The {EVENTS_ON_OVERVIEW} newest events; all of them: '
                '<a href="/api/v1/events">/api/v1/events</a>.</p>')
    body = (
        "<header><h1>Are internet calls blocked?</h1>"
        f'<p class="muted">WhatsApp, Skype/Teams, Viber and Google Meet, measured by voip-probe '
        f"volunteers: {sum(len(n) for n in by_country.values())} networks in "
        f"{len(by_country)} countries in this selection; latest run {escape(as_of or '-')} "
        f"UTC. {_rule_text(rule)}</p></header>"
        + _filters_form("/", f, options, network_page=False) + _legend()
        + "".join(sections)
        + f"<h2>Events</h2>{_events_table(events, with_network=True)}{more}"
        + '<footer class="muted"><p>Data: <a href="/api/v1/events">/api/v1/events</a>, '
          '<a href="/api/v1/summary">/api/v1/summary</a>, '
          '<a href="/api/v1/measurements">/api/v1/measurements</a>; '
          '<a href="/openapi.json">OpenAPI</a>.</p></footer>')
    return _document("Are internet calls blocked? voip-probe status", body)


@lru_cache(maxsize=4096)
def _epoch_day(day: str) -> float:
    return datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()


def _day_status(counts: dict[str, int]) -> str:
    conclusive = {s: counts.get(s, 0) for s in ("ok", "impaired", "blocked")}
    if not any(conclusive.values()):
        return "inconclusive"
    return max(conclusive, key=lambda s: (conclusive[s], s == "blocked"))


def daily_rows(days: list[dict[str, Any]], functions: list[str]) -> list[chart.Row]:
    """Chart rows: each day's majority status, holding until the next day with runs (as
    each run holds until the next one in ``voip-probe report``); equal days merged."""
    rows = []
    for function in functions:
        spans: list[chart.Span] = []
        mine = [d for d in days if d["function"] == function]
        i = 0
        while i < len(mine):
            status = _day_status(mine[i]["counts"])
            j, runs = i, 0
            while j < len(mine) and _day_status(mine[j]["counts"]) == status:
                runs += sum(mine[j]["counts"].values())
                j += 1
            first, last = mine[i]["day"], mine[j - 1]["day"]
            end = _epoch_day(mine[j]["day"]) if j < len(mine) else _epoch_day(last) + 86400
            spans.append(chart.Span(
                _epoch_day(first), end, status,
                f"{function}: {status}, {first}" + (f" to {last}" if last != first else "")
                + f" ({runs} runs)"))
            i = j
        rows.append(chart.Row(function, spans))
    return rows


def markers(events: list[dict[str, Any]]) -> list[chart.Marker]:
    out = []
    for e in events:
        at = seconds(e["at"])
        out.append(chart.Marker(
            at, f"{e['kind']} {e['function']}", e["kind"],
            title=(f"{e['kind']} of {e['service']} {e['function']} at {e['at']} UTC "
                   f"(previous run {e['previous']}); {e['confidence']}: {e['probes']} "
                   f"probe(s), weight {e['weight']:g}; methods: "
                   f"{', '.join(e['methods']) or '-'}"),
            style="solid" if e["confidence"] == CONFIRMED else "dashed"))
    return out


def render_network(reader: StatusReader, req: PageRequest, rule: Rule) -> str | None:
    """The network page, ``None`` when nothing is known about that network."""
    assert req.network is not None
    cc, asn, network_type = req.network
    f = req.filters
    mine = Filters(cc=cc, asn=asn, network_type=network_type, service=f.service,
                         since=f.since, until=f.until)
    everything = reader.current(Filters(cc=cc, asn=asn, network_type=network_type))
    if not everything:
        return None
    current = [c for c in everything if f.service in (None, c["service"])]
    days = reader.daily(mine)
    events = reader.events(mine, limit=10_000)
    if days:
        start = _epoch_day(days[0]["day"]) if f.since is None else _epoch_day(f.since[:10])
        end = (max(_epoch_day(d["day"]) for d in days) + 86400) if f.until is None \
            else _epoch_day(f.until[:10]) + 86400
    else:
        start = end = time.time()
    sections = []
    for service in sorted({c["service"] for c in current}):
        items = [c for c in current if c["service"] == service]
        functions = _functions(items)
        table = "".join(
            f'<tr class="function-row" data-service="{escape(service)}" '
            f'data-function="{escape(c["function"])}" data-status="{escape(c["status"])}">'
            f'<td>{escape(c["function"])}</td><td class="s-{escape(c["status"])}">'
            f'{escape(c["status"])}</td><td>{c["probes"]}</td>'
            f'<td>{escape(_time_label(c["since"]))}</td><td>{c["runs"]}</td>'
            f'<td>{escape(_time_label(c["as_of"]))}</td></tr>'
            for c in sorted(items, key=lambda c: functions.index(c["function"])))
        svc_events = [e for e in events if e["service"] == service]
        svg = chart.render(
            daily_rows([d for d in days if d["service"] == service], functions),
            markers(sorted(svc_events, key=lambda e: e["at"])), start=start, end=end,
            aria_label=f"{service} status per day on {asn} {network_type} ({cc})")
        sections.append(
            f'<section class="service" data-service="{escape(service)}">'
            f"<h2>{escape(service)}</h2>"
            "<table class=\"current\"><tr><th>function</th><th>status now</th>"
            "<th>probes (last window)</th><th>since</th><th>runs</th><th>latest run</th></tr>"
            f"{table}</table>{svg}<h3>Events</h3>"
            f"{_events_table(svc_events, with_network=False)}</section>")
    options = {"service": sorted({c["service"] for c in everything})}
    action = _network_href(cc, asn, network_type)
    raw = "/api/v1/measurements?" + urlencode({"cc": cc, "asn": asn,
                                               "network_type": network_type})
    body = (
        f'<p class="muted"><a href="/">all countries</a> › '
        f'<a href="/?{escape(urlencode({"cc": cc}))}">{escape(cc)}</a></p>'
        f"<h1>{escape(asn)} {escape(network_type)} ({escape(cc)})</h1>"
        f'<p class="muted">Each day is coloured by the status most runs found that day, '
        f"until the next day with runs. {_rule_text(rule)} Raw data: "
        f'<a href="{escape(raw)}">measurements</a>.</p>'
        + _filters_form(action, f, options, network_page=True) + _legend()
        + ("".join(sections) or '<p class="muted">No runs in this selection.</p>'))
    return _document(f"{asn} {network_type} ({cc}): voip-probe status", body)


class PageCache:
    """Rendered pages by URL, kept while the status tables behind them are unchanged.

    Each request asks the database for the tables' generation (one small read); a page
    is rendered again only when it moved, and at most once per ``min_age_s``: uploads
    that arrive together are one batch for the page."""

    def __init__(self, min_age_s: float = 5.0, size: int = 256) -> None:
        self.min_age_s = min_age_s
        self.size = size
        self._pages: OrderedDict[str, tuple[tuple[int, int], float, str | None]] = \
            OrderedDict()
        self._lock = threading.Lock()
        self.renders = 0

    def get(self, url: str, generation: Callable[[], tuple[int, int]],
            render: Callable[[], str | None]) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._pages.get(url)
        if cached is not None and now - cached[1] < self.min_age_s:
            return cached[2]
        gen = generation()
        if cached is not None and cached[0] == gen:
            with self._lock:
                self._pages[url] = (gen, now, cached[2])
            return cached[2]
        page = render()
        with self._lock:
            self.renders += 1
            self._pages[url] = (gen, now, page)
            self._pages.move_to_end(url)
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)
        return page


def day_bounds(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    """A date range from the form (``YYYY-MM-DD``) as inclusive times."""
    start = f"{since[:10]} 00:00:00" if since else None
    end = None
    if until:
        end = (datetime.strptime(until[:10], "%Y-%m-%d") + timedelta(days=1, seconds=-1)
               ).strftime("%Y-%m-%d %H:%M:%S")
    return start, end
