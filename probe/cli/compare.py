"""``voip-probe compare A B``: what changed between two runs on the same network.

Parses options, calls :func:`probe.analysis.compare.compare`, renders a table on stderr
(:func:`probe.cli.render.render_comparison`) and, with ``--json``, the DESIGN.md
"Comparison and timeline" object on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from probe.cli.app import app
from probe.cli.common import (
    EXIT_FOUND,
    EXIT_OK,
    UsageError,
    command_boundary,
    load_run,
    stderr_console,
    warner,
)
from probe.cli.options import json_flag


@app.command("compare")
def compare_command(
    before: Annotated[Path, typer.Argument(help="Results file of the earlier run.")],
    after: Annotated[Path, typer.Argument(help="Results file of the later run.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Compare runs from different networks (ASN or network type) anyway."
    )] = False,
    json_out: bool = json_flag("{before, after, changes}"),
) -> None:
    """Show what changed between two runs: newly blocked, restored, method changed or
    fraction of reachable endpoints changed, per service and function.

    Inconclusive functions are shown but never counted as a change. Exit code 1 when
    something is newly blocked, 0 otherwise, 2 for unreadable files or runs from different
    networks (unless --force).
    """
    with command_boundary():
        from probe.analysis.compare import NetworkMismatch, compare
        from probe.cli.render import render_comparison

        console = stderr_console()
        warn = warner(console)
        runs = [load_run(path, warn) for path in (before, after)]
        try:
            result = compare(runs[0], runs[1], force=force)
        except NetworkMismatch as exc:
            raise UsageError(str(exc)) from None
        counts = render_comparison(console, result)
        if json_out:
            sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
        raise typer.Exit(EXIT_FOUND if counts["newly_blocked"] else EXIT_OK)
