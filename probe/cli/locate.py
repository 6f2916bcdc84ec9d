"""``voip-probe locate``: where on the path the blocking happens (needs raw sockets).

Without ``--endpoint`` it runs the same scan as ``voip-probe run`` (same options, same
results file), then locates every blocked endpoint with TTL-limited test/control probes
(:mod:`probe.locate.core`); the findings are added to the results file and printed. With
``--endpoint`` it locates just the endpoints given. ``run --deep`` takes the same step
through :mod:`probe.cli.scan`.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from probe.cli import scan as scanning
from probe.cli.app import app
from probe.cli.common import (
    EXIT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    command_boundary,
    stderr_console,
)
from probe.cli.options import ScanArgs, json_flag, scan_options
from probe.cli.render import render_findings

if TYPE_CHECKING:
    from rich.console import Console

    from probe.locate.core import Settings
    from probe.model import Plan, RunConfig

HELP = """Find where on the path the censor sits. For each blocked endpoint, probes carrying
the real payload (the DNS query, the STUN request, the TCP SYN, the TLS ClientHello with the
real name) and a control payload (a control name, random bytes, a decoy name) are sent with
IP TTL 1, 2, 3 ...; the first hop where they are treated differently is the censor's
distance ("hop", 1 = your first router), and the router that answers there is its address.
Forged resets and DNS answers are recognised by their IP TTL and IP ID ("injected").

Each TTL-limited probe waits at most a quarter of --timeout (1 s at most).

Needs raw sockets: run it as root (sudo) or give Python CAP_NET_RAW.

Output with --json: {"findings": [{"service", "function", "endpoint", "method", "hop",
"hop_address", "injected"}]}. Exit codes as for run (0 nothing blocked, 1 blocking found,
2 usage error or no raw sockets, 3 inconclusive, 4 internal error)."""



@app.command("locate", help=HELP)
@scan_options(omit=("concurrency", "stun_server", "asn_db", "deep"))
def locate_command(
    endpoint: Annotated[list[str] | None, typer.Option(
        "--endpoint", metavar="URL",
        help="Locate this endpoint without a scan; repeatable: dns://NAME, "
        "stun://HOST:PORT, udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT.")] = None,
    max_hops: Annotated[int, typer.Option(
        "--max-hops", metavar="N",
        help="Give up after this many hops.")] = 30,
    as_json: bool = json_flag("the findings", human_on_stderr=True),
    *,
    scan: ScanArgs,
) -> None:
    with command_boundary():
        from probe.locate.ttl import RAW_SKIPPED, has_raw_sockets

        console = stderr_console()
        cfg = scanning.build_config(scan, interactive=not as_json and not endpoint)
        if not 1 <= max_hops <= 64:
            raise UsageError(f"--max-hops must be between 1 and 64 (got {max_hops})")
        if not has_raw_sockets():
            console.print(f"[yellow]{RAW_SKIPPED}[/]", highlight=False)
            raise typer.Exit(EXIT_USAGE)
        settings = scanning.locate_settings(cfg.timeout_s, max_hops)
        plan = scanning.load_plan(scan)
        if endpoint:
            findings = by_hand(endpoint, plan, cfg, settings, console)
            code = EXIT_FOUND if any(f["hop"] is not None for f in findings) else EXIT_OK
        else:
            outcome = scanning.execute(plan, cfg, scan.output, deep=settings)
            findings = outcome.summary.get("locate", {}).get("findings", [])
            code = outcome.exit_code
        if as_json:
            sys.stdout.write(json.dumps({"findings": findings}, indent=2) + "\n")
        raise typer.Exit(code)


def by_hand(values: list[str], plan: Plan, cfg: RunConfig, settings: Settings,
            console: Console) -> list[dict[str, Any]]:
    from probe.locate.core import locate
    from probe.locate.targets import EndpointError, endpoint_targets

    try:
        targets = endpoint_targets(values, plan, cfg)
    except EndpointError as exc:
        raise UsageError(str(exc)) from None
    findings = [f.to_json() for f in locate(targets, settings, scanning.log_to(console))]
    render_findings(console, findings)
    return findings
