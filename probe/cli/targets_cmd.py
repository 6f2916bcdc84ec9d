"""``voip-probe targets list|validate``: inspect and check target files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from probe.cli.app import app
from probe.cli.common import EXIT_USAGE, command_boundary, stderr_console
from probe.cli.options import json_flag

targets_app = typer.Typer(help="List the endpoints the probe checks, or validate target files.",
                          no_args_is_help=True)
app.add_typer(targets_app, name="targets")


@targets_app.command("list", help="List services and endpoints (default: the shipped files).")
def list_command(
    targets: Annotated[list[Path] | None, typer.Option(
        "--targets", help="Target file (TOML); repeatable. Default: the shipped files.")] = None,
    as_json: bool = json_flag("the list of endpoints"),
) -> None:
    with command_boundary():
        from probe.targets import load_plan

        plan = load_plan(targets)
        if as_json:
            out = [{"service": e.service, "function": e.function, "check": e.check,
                    "input": e.input, "pool": e.pool, "source": e.source}
                   for e in plan.endpoints]
            sys.stdout.write(json.dumps(out, indent=2) + "\n")
            return
        from rich.table import Table

        console = stderr_console()
        for svc in plan.services:
            table = Table(title=f"{svc.name} ({svc.id}) — {svc.source}", title_justify="left")
            for col in ("function", "check", "endpoint", "pool"):
                table.add_column(col)
            for e in svc.endpoints:
                table.add_row(e.function, e.check, e.input, e.pool)
            console.print(table)
        console.print(f"{len(plan.services)} services, {len(plan.endpoints)} endpoints")


@targets_app.command("validate", help="Check target files; every problem is reported as "
                     "FILE:LINE: reason (exit 2 if any file is invalid).")
def validate_command(
    files: Annotated[list[Path], typer.Argument(help="Target files to check.")],
) -> None:
    from rich.markup import escape

    from probe.targets import TargetsError, load_file

    console = stderr_console()
    bad = 0
    with command_boundary():
        for f in files:
            try:
                services = load_file(f)
            except TargetsError as exc:
                bad += 1
                console.print(f"[red]✗[/] {escape(str(exc))}", highlight=False)
                continue
            n = sum(len(s.endpoints) for s in services)
            console.print(f"[green]✓[/] {f}: {len(services)} service(s), {n} endpoints",
                          highlight=False)
    if bad:
        raise typer.Exit(EXIT_USAGE)
