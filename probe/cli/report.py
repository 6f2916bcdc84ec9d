"""``voip-probe report FILES|DIR -o report.html``: one self-contained HTML report.

Parses options, builds the timeline (same streaming read and event rule as
``voip-probe timeline``), renders :func:`probe.analysis.report.render_report` to a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from probe.cli.app import app
from probe.cli.common import UsageError, command_boundary, stderr_console, tracked_files, warner
from probe.cli.options import RULE_HELP, ConfirmOpt, ImpairedIsOkOpt, PathsArg, WindowOpt


@app.command("report")
def report_command(
    paths: PathsArg,
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="HTML file to write.")] = Path("report.html"),
    title: Annotated[str, typer.Option("--title", help="Heading of the page.")] = (
        "voip-probe report"),
    window: WindowOpt = 3,
    confirm: ConfirmOpt = 2,
    impaired_is_ok: ImpairedIsOkOpt = False,
) -> None:
    """Write one HTML file (opens without network) with a status-over-time chart per
    service and network, the onset/restoration events and the latest verdicts."""
    with command_boundary():
        from probe.analysis.report import render_report
        from probe.analysis.timeline import Rule, build_timeline

        console = stderr_console()
        try:
            rule = Rule(window=window, threshold=confirm, impaired_is_down=not impaired_is_ok)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        _files, stream = tracked_files(paths, console)
        timeline = build_timeline(stream, rule, warner(console))
        rule_text = (f"Events: a change counts when {rule.threshold} of {rule.window} "
                     f"conclusive runs agree. " + RULE_HELP.split(". ", 1)[0] + ".")
        html = render_report(timeline, title=title, rule_text=rule_text)
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(html, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{output}: cannot write the report ({exc.strerror})") from None
        events = sum(len(n.events) for n in timeline.networks)
        console.print(f"wrote {output}: {timeline.runs} runs, {len(timeline.networks)} "
                      f"networks, {events} events")
