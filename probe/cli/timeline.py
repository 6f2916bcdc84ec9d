"""``voip-probe timeline FILES|DIR``: date onset and restoration of blocking per network.

Parses options, streams the files' run summaries through :mod:`probe.analysis.timeline`,
prints the events and where each service function stands (stderr,
:func:`probe.cli.render.render_timeline`), or with ``--json`` the DESIGN.md "Comparison
and timeline" object (stdout).
"""

from __future__ import annotations

import json
import sys

from probe.cli.app import app
from probe.cli.common import (
    UsageError,
    command_boundary,
    stderr_console,
    tracked_files,
    warner,
)
from probe.cli.options import (
    RULE_HELP,
    ConfirmOpt,
    ImpairedIsOkOpt,
    PathsArg,
    WindowOpt,
    json_flag,
)


@app.command("timeline", help=f"Date the onset and restoration of blocking. {RULE_HELP}")
def timeline_command(
    paths: PathsArg,
    window: WindowOpt = 3,
    confirm: ConfirmOpt = 2,
    impaired_is_ok: ImpairedIsOkOpt = False,
    json_out: bool = json_flag("{networks: [{asn, type, runs, events}]}"),
) -> None:
    with command_boundary():
        from probe.analysis.timeline import Rule, build_timeline
        from probe.cli.render import render_timeline
        from probe.results import ResultsError

        console = stderr_console()
        try:
            rule = Rule(window=window, threshold=confirm, impaired_is_down=not impaired_is_ok)
        except ValueError as exc:
            raise UsageError(f"--window/--confirm: {exc}") from None
        files, stream = tracked_files(paths, console)
        try:
            timeline = build_timeline(stream, rule, warner(console))
        except ResultsError as exc:
            raise UsageError(str(exc)) from None
        render_timeline(console, timeline, len(files))
        if json_out:
            sys.stdout.write(json.dumps(timeline.to_json(), indent=2) + "\n")
