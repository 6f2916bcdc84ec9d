"""``voip-probe upload``: send results files to a collector (see :mod:`probe.upload`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from probe.cli.app import app
from probe.cli.common import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_USAGE, UsageError, command_boundary
from probe.cli.options import json_flag

if TYPE_CHECKING:
    from probe import upload as up

_STYLE = {"stored": "green", "already_stored": "green", "spooled": "yellow", "rejected": "red"}


@app.command("upload")
def upload(
    files: Annotated[list[Path] | None, typer.Argument(
        help="Results files (.jsonl, .jsonl.gz) or folders holding them.")] = None,
    collector: Annotated[str | None, typer.Option(
        "--collector", envvar="VOIP_PROBE_COLLECTOR",
        help="Collector base URL, e.g. https://collector.example.org. Default: `collector` "
             "in $XDG_CONFIG_HOME/voip-probe/config.toml.")] = None,
    pending: Annotated[bool, typer.Option(
        "--pending", help="Also send the files left in the spool by earlier attempts.")] = False,
    spool_dir: Annotated[Path | None, typer.Option(
        "--spool", help="Spool folder. Default: $XDG_DATA_HOME/voip-probe/spool.")] = None,
    attempts: Annotated[int, typer.Option(
        min=1, max=20, help="Tries per file before it stays in the spool.")] = 4,
    timeout: Annotated[float, typer.Option(min=1, help="Per-request timeout, seconds.")] = 60,
    json_out: bool = json_flag("the per-file outcomes"),
) -> None:
    """Upload results files to a collector; files that cannot be sent now wait in a spool.

    Sending a file twice is harmless: its SHA-256 is its identity. A crashed run's file is
    sent without its torn last line. Exit 0 when every file is stored, 3 when some stay in
    the spool (collector unreachable or busy: retry with --pending), 2 when the collector
    refused a file (kept in spool/rejected/ with the reason) or on bad options.
    """
    with command_boundary():
        from probe import upload as up
        from probe.results import ResultsError, expand_paths

        if not files and not pending:
            raise UsageError("give results files or folders to upload, or --pending")
        try:
            base = up.collector_url(collector)
            spool = up.Spool(spool_dir)
            paths = expand_paths(list(files or []))
            items = spool.pending() if pending else []
            queued = {i.sha256 for i in items}
            notes: dict[str, str] = {}
            for path in paths:
                item = up.prepare(path)
                if item.dropped_torn_line:
                    notes[item.sha256] = "torn last line of a crashed run left out"
                if item.sha256 not in queued:
                    items.append(item)
                    queued.add(item.sha256)
        except (up.UploadError, ResultsError) as exc:
            raise UsageError(str(exc)) from None
        try:
            outcomes = _send(items, up.Uploader(base, attempts=attempts, timeout_s=timeout),
                             spool, notes)
        except up.UploadError as exc:
            raise UsageError(str(exc)) from None
        if json_out:
            typer.echo(json.dumps({"collector": base, "spool": str(spool.root),
                                   "files": [o.as_dict() for o in outcomes]}, indent=2))
        statuses = {o.status for o in outcomes}
        if "rejected" in statuses:
            raise typer.Exit(EXIT_USAGE)
        raise typer.Exit(EXIT_INCONCLUSIVE if "spooled" in statuses else EXIT_OK)


def _send(items: list[up.Prepared], uploader: up.Uploader, spool: up.Spool,
          notes: dict[str, str]) -> list[up.Outcome]:
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from probe import upload as up
    from probe.cli.common import stderr_console

    console = stderr_console()
    if not items:
        console.print("nothing to upload (the spool is empty)")
        return []

    def show(outcome: up.Outcome) -> None:
        note = notes.get(outcome.id or "")
        extra = f" ({note})" if note else ""
        # The message is the collector's text and the name may come from the spool: text.
        console.print(f"[{_STYLE[outcome.status]}]{outcome.status.replace('_', ' ')}[/] "
                      f"{escape(f'{outcome.file}: {outcome.message}{extra}')}",
                      highlight=False, soft_wrap=True)

    try:
        if len(items) == 1:
            return up.deliver(items, uploader, spool, show)
        with Progress(TextColumn("uploading"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("upload", total=len(items))

            def step(outcome: up.Outcome) -> None:
                show(outcome)
                bar.advance(task)

            outcomes = up.deliver(items, uploader, spool, step)
        counts = {s: sum(o.status == s for o in outcomes) for s in _STYLE}
        console.print(", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n))
        return outcomes
    finally:
        uploader.close()
