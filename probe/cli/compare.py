"""``voip-probe compare A B``: what changed between two runs on the same network.

Parses options, calls :func:`probe.compare.compare`, renders a table on stderr and, with
``--json``, the DESIGN.md "Comparison and timeline" object on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from probe.cli.app import app
from probe.cli.common import EXIT_FOUND, EXIT_OK, UsageError, command_boundary, stderr_console

STATUS_STYLE = {"ok": "green", "blocked": "bold red", "impaired": "yellow",
                "inconclusive": "dim"}
KIND_LABEL = {"newly_blocked": "[bold red]newly blocked[/]", "restored": "[green]restored[/]",
              "method_changed": "[yellow]method changed[/]",
              "fraction_changed": "[cyan]fraction changed[/]"}


def describe_verdict(verdict: dict | None) -> str:
    """``blocked 0/3 stun_dpi`` with the status coloured, for tables."""
    if verdict is None:
        return "[dim]absent[/]"
    status = verdict.get("status", "inconclusive")
    style = STATUS_STYLE.get(status, "")
    text = f"[{style}]{status}[/] {verdict.get('reachable', '?')}/{verdict.get('total', '?')}"
    methods = verdict.get("methods") or []
    return text + (f" [dim]{', '.join(methods)}[/]" if methods else "")


@app.command("compare")
def compare_command(
    before: Annotated[Path, typer.Argument(help="Results file of the earlier run.")],
    after: Annotated[Path, typer.Argument(help="Results file of the later run.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Compare runs from different networks (ASN or network type) anyway."
    )] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print {before, after, changes} as JSON on stdout.")] = False,
) -> None:
    """Show what changed between two runs: newly blocked, restored, method changed or
    fraction of reachable endpoints changed, per service and function.

    Inconclusive functions are shown but never counted as a change. Exit code 1 when
    something is newly blocked, 0 otherwise, 2 for unreadable files or runs from different
    networks (unless --force).
    """
    with command_boundary():
        from rich.table import Table

        from probe.compare import NetworkMismatch, compare
        from probe.results import ResultsError
        from probe.summaries import load_summary

        console = stderr_console()

        def warn(message: str) -> None:
            console.print(f"[yellow]warning:[/] {message}", highlight=False)

        runs = []
        for path in (before, after):
            try:
                summary = load_summary(path, warn)
            except (ResultsError, OSError) as exc:
                raise UsageError(str(exc)) from None
            if summary is None:
                raise UsageError(f"{path}: no run summary could be read (see the warning)")
            runs.append(summary)
        try:
            result = compare(runs[0], runs[1], force=force)
        except NetworkMismatch as exc:
            raise UsageError(str(exc)) from None

        a, b = result.before, result.after
        table = Table(title=f"{a.asn} {a.network_type}: {a.start} -> {b.start}",
                      title_justify="left")
        for column in ("service", "function", "before", "after", "change"):
            table.add_column(column)
        for row in result.rows:
            label = KIND_LABEL[row.change.kind] if row.change else "[dim]-[/]"
            table.add_row(row.service, row.function, describe_verdict(row.before),
                          describe_verdict(row.after), label)
        console.print(table)
        counts = {k: sum(c.kind == k for c in result.changes) for k in KIND_LABEL}
        console.print(", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items()))
        if json_out:
            sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
        raise typer.Exit(EXIT_FOUND if counts["newly_blocked"] else EXIT_OK)
