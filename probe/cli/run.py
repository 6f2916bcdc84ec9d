"""``voip-probe run``: measure this network now and write a results file."""

from __future__ import annotations

import json
import sys

import typer

from probe.cli import scan as scanning
from probe.cli.app import app
from probe.cli.common import command_boundary
from probe.cli.options import ScanArgs, json_flag, scan_options

HELP = """Run every check (DNS, TCP, TLS, HTTPS, STUN/TURN, UDP) against the services' endpoints
on the network you are on now, print per service whether messaging, registration and calls
work, and write a timestamped results file (JSON Lines) to upload later.

Exit codes: 0 nothing blocked; 1 blocking or impairment found; 2 usage or configuration
error; 3 inconclusive (the network looks offline); 4 internal error."""


@app.command("run", help=HELP)
@scan_options()
def run_command(
    as_json: bool = json_flag("the run summary", human_on_stderr=True),
    *,
    scan: ScanArgs,
) -> None:
    from probe.session import process_started

    with command_boundary():
        cfg = scanning.build_config(scan, interactive=not as_json)
        plan = scanning.load_plan(scan)
        # The run began when the process did: its start-up counts in its two budgets.
        outcome = scanning.execute(plan, cfg, scan.output,
                                   deep=scanning.deep_settings(cfg) if scan.deep else None,
                                   started=process_started())
        if as_json:
            summary = scanning.public_summary(outcome.summary)
            sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        raise typer.Exit(outcome.exit_code)
