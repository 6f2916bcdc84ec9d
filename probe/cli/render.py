"""Rendering of run summaries for people (rich, on stderr)."""

from __future__ import annotations

from typing import Any

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
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def render_summary(console: Any, summary: dict[str, Any]) -> None:
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
    controls = net.get("controls", {})
    console.print(
        f"network: [bold]{net.get('status')}[/] ({net.get('asn')}, {net.get('cc')}, "
        f"{net.get('type')}); controls reachable {controls.get('reachable', 0)}/"
        f"{controls.get('total', 0)}", highlight=False)
    if net.get("status") == "offline":
        console.print("[magenta]The network looks offline: no control and no endpoint could "
                      "be reached, so nothing can be said about blocking. Connect and run "
                      "again.[/]")
    console.print(f"results: {summary.get('results_file')}", highlight=False)
