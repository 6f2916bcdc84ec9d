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
