"""``voip-probe locate``: where on the path the blocking happens (needs raw sockets).

Without ``--endpoint`` it runs the same scan as ``voip-probe run`` (same options, same
results file), then locates every blocked endpoint with TTL-limited test/control probes
(:mod:`probe.locate`); the findings are added to the results file and printed. With
``--endpoint`` it locates just the endpoints given. Also used by ``run --deep``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from probe.cli.app import app
from probe.cli.common import (
    EXIT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    command_boundary,
    stderr_console,
)

HELP = """Find where on the path the censor sits. For each blocked endpoint, probes carrying
the real payload (the DNS query, the STUN request, the TCP SYN, the TLS ClientHello with the
real name) and a control payload (a control name, random bytes, a decoy name) are sent with
IP TTL 1, 2, 3 ...; the first hop where they are treated differently is the censor's
distance ("hop", 1 = your first router), and the router that answers there is its address.
Forged resets and DNS answers are recognised by their IP TTL and IP ID ("injected").

Needs raw sockets: run it as root (sudo) or give Python CAP_NET_RAW.

Output with --json: {"findings": [{"service", "function", "endpoint", "method", "hop",
"hop_address", "injected"}]}. Exit codes as for run (0 nothing blocked, 1 blocking found,
2 usage error or no raw sockets, 3 inconclusive, 4 internal error)."""


def skipped_message() -> str:
    from probe.ttlprobe import RAW_SKIPPED

    return RAW_SKIPPED


@app.command("locate", help=HELP)
def locate_command(
    targets: Annotated[list[Path] | None, typer.Option(
        "--targets", help="Target file (TOML); repeatable. Default: the shipped files.")]
        = None,
    services: Annotated[str | None, typer.Option(
        "--services", help="Only these services, comma-separated.")] = None,
    endpoint: Annotated[list[str] | None, typer.Option(
        "--endpoint", help="Locate this endpoint without a scan; repeatable: dns://NAME, "
        "stun://HOST:PORT, udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT.")] = None,
    resolver: Annotated[str | None, typer.Option(
        "--resolver", help="IP address of the DNS resolver (IP or IP:PORT). Default: the "
        "system resolver.")] = None,
    doh: Annotated[str | None, typer.Option(
        "--doh", help="DNS-over-HTTPS URL of a control resolver (for the scan).")] = None,
    reflector: Annotated[str | None, typer.Option(
        "--reflector", help="Host of a cooperating voip-probe reflector (for the scan).")]
        = None,
    ca_bundle: Annotated[Path | None, typer.Option(
        "--ca-bundle", help="Extra CA certificates (PEM) to trust for TLS checks.")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Budget of each check, in seconds; each TTL-limited probe waits "
        "at most a quarter of it (1 s at most).")] = 10.0,
    output: Annotated[Path, typer.Option(
        "--output", help="Folder for the results file of the scan.")] = Path("results"),
    network_type: Annotated[str | None, typer.Option(
        "--network-type", help="mobile, fixed, wifi or unknown.")] = None,
    max_hops: Annotated[int, typer.Option(
        "--max-hops", help="Give up after this many hops.")] = 30,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the findings as JSON on stdout (human output on stderr).")]
        = False,
    include_ip: Annotated[bool, typer.Option(
        "--include-ip", help="Write this network's public IP into the results.")] = False,
) -> None:
    with command_boundary():
        from probe.cli.run import build_config
        from probe.ttlprobe import has_raw_sockets

        console = stderr_console()
        cfg = build_config(resolver=resolver, doh=doh, reflector=reflector, ca_bundle=ca_bundle,
                           timeout=timeout, network_type=network_type, include_ip=include_ip,
                           concurrency=256, interactive=not as_json and not endpoint)
        if not 1 <= max_hops <= 64:
            raise UsageError(f"--max-hops must be between 1 and 64 (got {max_hops})")
        if not has_raw_sockets():
            console.print(f"[yellow]{skipped_message()}[/]", highlight=False)
            raise typer.Exit(EXIT_USAGE)
        from probe.targets import load_plan

        settings = settings_for(cfg.timeout_s, max_hops)
        wanted = services.split(",") if services else None
        plan = load_plan(targets, wanted)
        if endpoint:
            findings = by_hand(endpoint, plan, cfg, settings, console)
            code = EXIT_FOUND if any(f["hop"] is not None for f in findings) else EXIT_OK
        else:
            from probe.cli.run import execute

            outcome = execute(plan, cfg, output, deep=settings)
            findings = outcome.summary.get("locate", {}).get("findings", [])
            code = outcome.exit_code
        if as_json:
            sys.stdout.write(json.dumps({"findings": findings}, indent=2) + "\n")
        raise typer.Exit(code)


def settings_for(timeout_s: float, max_hops: int = 30) -> Any:
    from probe.locate import Settings

    return Settings(max_hops=max_hops, wait_s=min(1.0, max(0.2, timeout_s / 4)),
                    connect_timeout_s=min(timeout_s, 10.0))


def by_hand(values: list[str], plan: Any, cfg: Any, settings: Any,
            console: Any) -> list[dict[str, Any]]:
    from probe.locate import locate
    from probe.locate_targets import EndpointError, endpoint_targets

    try:
        targets = endpoint_targets(values, plan, cfg)
    except EndpointError as exc:
        raise UsageError(str(exc)) from None
    findings = [f.to_json() for f in locate(targets, settings, log(console))]
    render_findings(console, findings)
    return findings


def log(console: Any) -> Any:
    from rich.markup import escape

    def write(message: str) -> None:
        console.print(f"[dim]{escape(message)}[/]", highlight=False)

    return write


def render_findings(console: Any, findings: list[dict[str, Any]]) -> None:
    """One line per finding, for people (stderr)."""
    from rich.markup import escape

    if not findings:
        console.print("locate: no blocked endpoint to locate")
        return
    for f in findings:
        where = (f"hop {f['hop']} ({f['hop_address'] or 'address unknown'})"
                 if f["hop"] is not None else "could not be located")
        injected = ", forged answer (injected)" if f["injected"] else ""
        line = (f"locate: {f['service']} {f['function']} {f['endpoint']} "
                f"[{f['method'] or '?'}]: {where}{injected}")
        console.print(escape(line), highlight=False)
