"""``voip-probe timeline FILES|DIR``: date onset and restoration of blocking per network.

Parses options, streams the files' run summaries through :mod:`probe.timeline`, prints
the events and where each service function stands (stderr), or with ``--json`` the
DESIGN.md "Comparison and timeline" object (stdout).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from probe.cli.app import app
from probe.cli.common import UsageError, command_boundary, stderr_console

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rich.console import Console

    from probe.timeline import Timeline

RULE_HELP = (
    "Runs are grouped by network (ASN + network type) and ordered in time. Per service "
    "and function, ok is 'up', blocked or impaired is 'down'; inconclusive runs and "
    "offline runs are ignored. A change is confirmed when at least CONFIRM of the WINDOW "
    "conclusive runs starting with it are in the new state (default 2 of 3: one stray "
    "failure, or one call that got through during a ban, is not an event). 'at' is the "
    "first run in the new state, 'previous' the last run in the old one. With a single "
    "run per period (e.g. `voip-probe lab replay`), --window 1 --confirm 1 counts every "
    "change."
)


@app.command("timeline", help=f"Date the onset and restoration of blocking. {RULE_HELP}")
def timeline_command(
    paths: Annotated[list[Path], typer.Argument(
        help="Results files, or folders searched for *.jsonl / *.jsonl.gz.")],
    window: Annotated[int, typer.Option(
        "--window", min=1, help="Conclusive runs looked at to confirm a change.")] = 3,
    confirm: Annotated[int, typer.Option(
        "--confirm", min=1, help="How many of them must be in the new state.")] = 2,
    impaired_is_ok: Annotated[bool, typer.Option(
        "--impaired-is-ok", help="Count 'impaired' as working instead of as down.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print {networks: [{asn, type, runs, events}]} as JSON on stdout.")
    ] = False,
) -> None:
    with command_boundary():
        from probe.results import ResultsError
        from probe.timeline import Rule, build_timeline

        console = stderr_console()
        try:
            rule = Rule(window=window, threshold=confirm, impaired_is_down=not impaired_is_ok)
        except ValueError as exc:
            raise UsageError(f"--window/--confirm: {exc}") from None
        files, stream = tracked_files(paths, console)

        def warn(message: str) -> None:
            console.print(f"[yellow]warning:[/] {message}", highlight=False)

        try:
            timeline = build_timeline(stream, rule, warn)
        except ResultsError as exc:
            raise UsageError(str(exc)) from None
        render(console, timeline, len(files))
        if json_out:
            sys.stdout.write(json.dumps(timeline.to_json(), indent=2) + "\n")


def tracked_files(paths: list[Path], console: Console) -> tuple[list[Path], Iterable[Path]]:
    """The results files PATHS name (a usage error when a path is missing or there is none),
    and the same files behind a progress bar on ``console`` for reading their summaries."""
    from rich.progress import track

    from probe.results import ResultsError, expand_paths

    try:
        files = expand_paths(paths)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    if not files:
        raise UsageError(f"no results files (*.jsonl, *.jsonl.gz) in "
                         f"{', '.join(map(str, paths))}")
    return files, track(files, description="reading run summaries", console=console,
                        transient=True, disable=not console.is_terminal)


def render(console: Console, timeline: Timeline, files: int) -> None:
    from rich.table import Table

    from probe.cli.compare import STATUS_STYLE

    for net in timeline.networks:
        first, last = net.runs[0].start, net.runs[-1].start
        console.rule(f"[bold]{net.asn} {net.network_type}[/]: {len(net.runs)} runs, "
                     f"{first} .. {last}")
        if net.events:
            events = Table(title="events", title_justify="left")
            for column in ("at", "previous", "service", "function", "event", "methods"):
                events.add_column(column)
            for e in net.events:
                kind = "[bold red]onset[/]" if e.kind == "onset" else "[green]restoration[/]"
                events.add_row(e.at, e.previous, e.service, e.function, kind,
                               ", ".join(e.methods))
            console.print(events)
        else:
            console.print("no onset or restoration detected")
        now = Table(title="where things stand", title_justify="left")
        for column in ("service", "function", "state", "since", "latest", "note"):
            now.add_column(column)
        for c in net.current:
            state = {True: "[bold red]down[/]", False: "[green]up[/]",
                     None: "[dim]unknown[/]"}[c.state]
            style = STATUS_STYLE.get(c.latest_status, "")
            latest = f"[{style}]{c.latest_status}[/]"
            if c.latest_methods:
                latest += f" [dim]{', '.join(c.latest_methods)}[/]"
            note = f"unconfirmed change since {c.pending_since}" if c.pending_since else ""
            if c.conclusive_runs == 0:
                note = "no conclusive run"
            now.add_row(c.service, c.function, state, c.since or "", latest, note)
        console.print(now)
    n_events = sum(len(n.events) for n in timeline.networks)
    console.print(f"{files} files, {timeline.runs} runs, {len(timeline.networks)} networks, "
                  f"{n_events} events" + (f", {timeline.skipped_files} files skipped"
                                        if timeline.skipped_files else ""))
