"""Rendering for people (rich, on stderr): run summaries, locate findings, comparisons
and timelines. Commands parse and call the library; what they print is drawn here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from probe.analysis.compare import Comparison
    from probe.analysis.timeline import Timeline

STATUS_STYLE = {"ok": "green", "blocked": "bold red", "impaired": "yellow",
                "inconclusive": "magenta"}
FUNCTION_COLUMNS = ("dns", "messaging", "registration", "web", "calls")

EXPLAIN = {
    "ok": "works",
    "blocked": "does not work, and the network itself works",
    "impaired": "partly works (some endpoints fail, or it is throttled)",
    "inconclusive": "cannot tell (the network looks offline or too lossy)",
}


# What each blocking method means, in words a volunteer can repeat (one line per method
# shown under the table; tests/test_render.py checks every method of DESIGN.md has one).
METHOD_TEXT = {
    "dns_nxdomain": "the resolver says the name does not exist (NXDOMAIN)",
    "dns_servfail": "the resolver fails for the name (SERVFAIL)",
    "dns_timeout": "no DNS answer comes back for the name",
    "dns_injection": "forged DNS answers arrive on the way (injection)",
    "dns_bogon": "the resolver answers a private or reserved address (bogon)",
    "tcp_reset": "connections are cut by a reset (RST)",
    "tcp_timeout": "connection attempts get no answer (packets dropped)",
    "tcp_refused": "connections are refused",
    "tls_sni": "TLS fails only when the service's name is sent (SNI filtering)",
    "tls_failure": "TLS handshakes fail whatever the name",
    "http_failure": "HTTPS requests fail after the TLS handshake",
    "udp_blocked": "UDP to the call ports gets nothing back",
    "stun_dpi": "STUN (call set-up) is dropped while other UDP passes on the same port",
    "app_stun_dpi": "the app's own STUN is dropped while plain STUN passes",
    "relay_unreachable": "the call relays cannot be reached",
    "throttled": "call-like traffic is slowed down",
}


def styled(status: str) -> str:
    from rich.markup import escape

    return f"[{STATUS_STYLE.get(status, 'white')}]{escape(str(status))}[/]"


def render_summary(console: Console, summary: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    net = summary.get("network", {})
    table = Table(title="Per service and function: verdict, endpoints reachable/tried, "
                  "how blocked", title_justify="left", box=box.SIMPLE_HEAD, show_lines=True,
                  pad_edge=False, padding=(0, 0), collapse_padding=True)
    # Six columns of at most 13 characters: fits an 80-column terminal or log.
    table.add_column("service", overflow="fold", min_width=12)
    for fn in FUNCTION_COLUMNS:
        table.add_column(fn, overflow="fold", min_width=12)
    for sid, svc in summary.get("services", {}).items():
        cells = []
        for fn in FUNCTION_COLUMNS:
            v = svc.get("functions", {}).get(fn)
            if v is None:
                cells.append("[dim]-[/]")
                continue
            cell = f"{styled(v['status'])}\n{v['reachable']}/{v['total']}"
            if v.get("methods"):
                cell += "\n[dim]" + "\n".join(v["methods"]) + "[/]"
            cells.append(cell)
        table.add_row(f"[bold]{sid}[/]\n{styled(svc['status'])}", *cells)
    console.print(table)
    shown = sorted({m for svc in summary.get("services", {}).values()
                    for v in svc.get("functions", {}).values() for m in v.get("methods", ())})
    for method in shown:
        console.print(f"[dim]{method}[/]: {METHOD_TEXT.get(method, method)}", highlight=False)
    for note in summary.get("notes", ()):
        console.print(note, highlight=False, markup=False)
    reflector = summary.get("reflector") or {}
    if reflector.get("host") and reflector.get("source") != "option":
        console.print(f"reflector: {reflector['host']} (from the "
                      f"{'configuration' if reflector['source'] == 'config' else 'collector'})",
                      highlight=False, markup=False)
    controls = net.get("controls", {})
    console.print(
        f"network: [bold]{net.get('status')}[/] ({net.get('asn')}, {net.get('cc')}, "
        f"{net.get('type')}); controls reachable {controls.get('reachable', 0)}/"
        f"{controls.get('total', 0)}", highlight=False)
    if net.get("status") == "offline":
        console.print("[magenta]The network looks offline: no control and no endpoint could "
                      "be reached, so nothing can be said about blocking. Connect and run "
                      "again.[/]")
    console.print(f"results: {summary.get('results_file')}", highlight=False, markup=False)


def render_findings(console: Console, findings: list[dict[str, Any]]) -> None:
    """One line per ``locate`` finding."""
    from rich.markup import escape

    if not findings:
        console.print("locate: no blocked endpoint to locate")
        return
    for f in findings:
        where = (f"hop {f['hop']} ({f['hop_address'] or 'address unknown'})"
                 if f["hop"] is not None else "could not be located")
        injected = ", forged answer (injected)" if f["injected"] else ""
        line = (f"locate: {f['service']} {f['function']} {f['endpoint']} "
                f"[{f['method'] or '?'}]: {where}{injected}")
        console.print(escape(line), highlight=False)


KIND_LABEL = {"newly_blocked": "[bold red]newly blocked[/]", "restored": "[green]restored[/]",
              "method_changed": "[yellow]method changed[/]",
              "fraction_changed": "[cyan]fraction changed[/]"}


def describe_verdict(verdict: dict[str, Any] | None) -> str:
    """``blocked 0/3 stun_dpi`` with the status coloured, for tables. Results files may
    come from anyone: what they say is text, never markup."""
    from rich.markup import escape

    if verdict is None:
        return "[dim]absent[/]"
    status = str(verdict.get("status", "inconclusive"))
    counts = f"{verdict.get('reachable', '?')}/{verdict.get('total', '?')}"
    text = f"{styled(status)} {escape(counts)}"
    methods = [str(m) for m in verdict.get("methods") or []]
    return text + (f" [dim]{escape(', '.join(methods))}[/]" if methods else "")


def render_comparison(console: Console, result: Comparison) -> dict[str, int]:
    """The per service and function table of ``compare``; returns the change counts."""
    from rich.markup import escape
    from rich.table import Table

    a, b = result.before, result.after
    table = Table(title=escape(f"{a.asn} {a.network_type}: {a.start} -> {b.start}"),
                  title_justify="left")
    for column in ("service", "function", "before", "after", "change"):
        table.add_column(column)
    for row in result.rows:
        label = KIND_LABEL[row.change.kind] if row.change else "[dim]-[/]"
        table.add_row(escape(row.service), escape(row.function), describe_verdict(row.before),
                      describe_verdict(row.after), label)
    console.print(table)
    counts = {k: sum(c.kind == k for c in result.changes) for k in KIND_LABEL}
    console.print(", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items()))
    return counts


def render_timeline(console: Console, timeline: Timeline, files: int) -> None:
    """Per network: the events, and where each service function stands."""
    from rich.markup import escape
    from rich.table import Table

    for net in timeline.networks:
        first, last = net.runs[0].start, net.runs[-1].start
        console.rule(f"[bold]{escape(f'{net.asn} {net.network_type}')}[/]: "
                     f"{len(net.runs)} runs, {escape(f'{first} .. {last}')}")
        if net.events:
            events = Table(title="events", title_justify="left")
            for column in ("at", "previous", "service", "function", "event", "methods"):
                events.add_column(column)
            for e in net.events:
                kind = "[bold red]onset[/]" if e.kind == "onset" else "[green]restoration[/]"
                events.add_row(escape(e.at), escape(e.previous), escape(e.service),
                               escape(e.function), kind, escape(", ".join(e.methods)))
            console.print(events)
        else:
            console.print("no onset or restoration detected")
        now = Table(title="where things stand", title_justify="left")
        for column in ("service", "function", "state", "since", "latest", "note"):
            now.add_column(column)
        for c in net.current:
            state = {True: "[bold red]down[/]", False: "[green]up[/]",
                     None: "[dim]unknown[/]"}[c.state]
            latest = styled(c.latest_status)
            if c.latest_methods:
                latest += f" [dim]{escape(', '.join(c.latest_methods))}[/]"
            note = f"unconfirmed change since {c.pending_since}" if c.pending_since else ""
            if c.conclusive_runs == 0:
                note = "no conclusive run"
            now.add_row(escape(c.service), escape(c.function), state, escape(c.since or ""),
                        latest, escape(note))
        console.print(now)
    n_events = sum(len(n.events) for n in timeline.networks)
    console.print(f"{files} files, {timeline.runs} runs, {len(timeline.networks)} networks, "
                  f"{n_events} events" + (f", {timeline.skipped_files} files skipped"
                                        if timeline.skipped_files else ""))
