"""``voip-probe watch --every 30m``: measure periodically, one results file per run.

Each run is exactly what ``voip-probe run`` does (the same options and the same library
call, :func:`probe.cli.scan.execute`), started every ``--every`` (measured from the
start of the previous run; a run that takes longer than the interval is followed at
once by the next). After each run the new file is optionally uploaded (``--collector``
or ``--upload``, :mod:`probe.upload`); an upload that fails leaves the file in the
upload spool and never stops the watch. Ctrl-C stops cleanly: a run in progress still
writes its summary line, and the command prints what was done and exits 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from probe.cli import scan as scanning
from probe.cli.app import app
from probe.cli.common import UsageError, command_boundary, parse_duration, stderr_console
from probe.cli.options import ScanArgs, scan_options

EXIT_INTERRUPTED = 130  # what `voip-probe run` exits with on Ctrl-C


def parse_interval(text: str) -> float:
    """``30m``, ``1h``, ``90s``, ``1.5h`` (a bare number is minutes) -> seconds."""
    return parse_duration(text, "--every")


@dataclass(slots=True)
class Watcher:
    """The schedule, separate from what a run does (so tests can drive it with fakes)."""

    every_s: float
    count: int | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    runs: int = 0
    late: list[int] = field(default_factory=list)  # runs that overran the interval

    def loop(self, run_once: Callable[[int], None],
             on_wait: Callable[[float], None] | None = None) -> int:
        """Call ``run_once(n)`` every ``every_s`` seconds until ``count`` runs are done
        (forever when ``None``); KeyboardInterrupt propagates to the caller."""
        next_start = self.clock()
        while self.count is None or self.runs < self.count:
            now = self.clock()
            if next_start > now:
                if on_wait is not None:
                    on_wait(next_start - now)
                self.sleep(next_start - now)
            started = self.clock()
            run_once(self.runs + 1)
            self.runs += 1
            next_start = started + self.every_s
            if self.clock() > next_start:
                self.late.append(self.runs)
                next_start = self.clock()
        return self.runs


class _Upload:
    """After-each-run upload through :mod:`probe.upload`."""

    def __init__(self, collector: str | None, spool_dir: Path | None) -> None:
        from probe import upload as up

        self.up = up
        try:
            self.base = up.collector_url(collector)
            self.spool = up.Spool(spool_dir)
        except up.UploadError as exc:
            raise UsageError(str(exc)) from None

    def send(self, path: Path) -> str:
        up = self.up
        uploader = up.Uploader(self.base)
        try:
            (outcome,) = up.deliver([up.prepare(path)], uploader, self.spool)
        except up.UploadError as exc:
            return f"upload failed: {exc}"
        finally:
            uploader.close()
        return f"upload: {outcome.status.replace('_', ' ')} ({outcome.message})"


@app.command("watch")
@scan_options()
def watch_command(
    every: Annotated[str, typer.Option(
        "--every", metavar="DURATION",
        help="Time between the starts of two runs: 30m, 2h, 90s ...")] = "30m",
    count: Annotated[int | None, typer.Option(
        "--count", min=1, metavar="N",
        help="Stop after this many runs (default: until Ctrl-C).")] = None,
    upload: Annotated[bool, typer.Option(
        "--upload", help="Upload each results file after its run (to --collector, or the "
        "collector in the config file).")] = False,
    collector: Annotated[str | None, typer.Option(
        "--collector", metavar="URL", envvar="VOIP_PROBE_COLLECTOR",
        help="Collector base URL; implies --upload.")] = None,
    spool_dir: Annotated[Path | None, typer.Option(
        "--spool", metavar="DIR", help="Upload spool folder (default: as for `upload`).")] = None,
    *,
    scan: ScanArgs,
) -> None:
    """Run the measurements periodically (each run as `voip-probe run` does it, one
    results file each), optionally uploading each file; stop with Ctrl-C.

    Exit code 0 when stopped by Ctrl-C or after --count runs; 2 for bad options.
    """
    with command_boundary():
        console = stderr_console()
        every_s = parse_interval(every)
        cfg = scanning.build_config(scan, interactive=True, collector=collector)
        plan = scanning.load_plan(scan)
        deep_cfg = scanning.deep_settings(cfg) if scan.deep else None
        output = scan.output
        sender = _Upload(collector, spool_dir) if (upload or collector) else None
        watcher = Watcher(every_s, count)

        def run_once(n: int) -> None:
            console.rule(f"run {n}" + (f" of {count}" if count else "") +
                         f" ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC)")
            try:
                # The same call as `run`; prints the table and the results file's name.
                outcome = scanning.execute(plan, cfg, output, deep=deep_cfg)
            except typer.Exit as stop:
                if stop.exit_code == EXIT_INTERRUPTED:  # `run` turns Ctrl-C into exit 130
                    raise KeyboardInterrupt from None
                raise
            if sender is not None:
                # The line quotes the collector's answer: text, not markup.
                console.print(sender.send(Path(outcome.results_file)), highlight=False,
                              markup=False)

        def on_wait(seconds: float) -> None:
            at = time.strftime("%H:%M:%S", time.gmtime(time.time() + seconds))
            console.print(f"[dim]next run at {at} UTC (in {seconds:.0f} s); Ctrl-C to stop[/]")

        stopped = False
        try:
            watcher.loop(run_once, on_wait)
        except KeyboardInterrupt:
            stopped = True
        how = "stopped by Ctrl-C" if stopped else "done"
        console.print(f"{how}: {watcher.runs} complete run(s), results in {output}"
                      + (f"; {len(watcher.late)} run(s) took longer than --every"
                         if watcher.late else ""), highlight=False)
