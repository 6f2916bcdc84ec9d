"""``voip-probe run``: measure this network now and write a results file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from probe.cli.app import app
from probe.cli.common import EXIT_USAGE, UsageError, command_boundary, fail, stderr_console
from probe.model import NETWORK_TYPES, RunConfig

HELP = """Run every check (DNS, TCP, TLS, HTTPS, STUN/TURN, UDP) against the services' endpoints
on the network you are on now, print per service whether messaging, registration and calls
work, and write a timestamped results file (JSON Lines) to upload later.

Exit codes: 0 nothing blocked; 1 blocking or impairment found; 2 usage or configuration
error; 3 inconclusive (the network looks offline); 4 internal error."""


@app.command("run", help=HELP)
def run_command(
    targets: Annotated[list[Path] | None, typer.Option(
        "--targets", metavar="FILE",
        help="Target file (TOML); repeatable. Default: the shipped files. "
        "When given, only these files are used, controls included.")] = None,
    services: Annotated[str | None, typer.Option(
        "--services", metavar="NAMES",
        help="Only these services, comma-separated (e.g. whatsapp,viber). "
        "Controls always run.")] = None,
    resolver: Annotated[str | None, typer.Option(
        "--resolver", metavar="IP",
        help="IP address of the DNS resolver to use (IP or IP:PORT). "
        "Default: the system resolver.")] = None,
    doh: Annotated[str | None, typer.Option(
        "--doh", metavar="URL",
        help="DNS-over-HTTPS URL of a control resolver, to detect tampering.")] = None,
    reflector: Annotated[str | None, typer.Option(
        "--reflector", metavar="HOST",
        help="Host of a cooperating voip-probe reflector (UDP echo/STUN), "
        "for the UDP and differential call tests.")] = None,
    ca_bundle: Annotated[Path | None, typer.Option(
        "--ca-bundle", metavar="PEM",
        help="Extra CA certificates (PEM) to trust for TLS checks.")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS",
        help="Budget of each check, in seconds.")] = 10.0,
    output: Annotated[Path, typer.Option(
        "--output", metavar="DIR",
        help="Folder for the results file.")] = Path("results"),
    network_type: Annotated[str | None, typer.Option(
        "--network-type", metavar="TYPE",
        help="mobile, fixed, wifi or unknown. Asked when unset and a "
        "terminal is attached.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the run summary as JSON on stdout (human output on stderr).")]
        = False,
    include_ip: Annotated[bool, typer.Option(
        "--include-ip", help="Write this network's public IP into the results (off by "
        "default: it can identify you).")] = False,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", metavar="N",
        help="How many checks may run at once.")] = 256,
    stun_server: Annotated[list[str] | None, typer.Option(
        "--stun-server", metavar="HOST[:PORT]",
        help="STUN server (HOST[:PORT]) that tells this network's public "
        "address, to look up its ASN and country; repeatable. Default: the ones in "
        "configs/identity.toml. The address itself is never written (see --include-ip).")]
        = None,
    asn_db: Annotated[Path | None, typer.Option(
        "--asn-db", metavar="FILE",
        help="Local IP-to-ASN table (CSV or TSV lines prefix,asn,cc,name) to "
        "use instead of DNS lookups (Team Cymru style).")] = None,
    deep: Annotated[bool, typer.Option(
        "--deep", help="After the scan, locate where each blocked endpoint is blocked "
        "(voip-probe locate; needs root or CAP_NET_RAW, skipped otherwise).")] = False,
) -> None:
    with command_boundary():
        cfg = build_config(resolver=resolver, doh=doh, reflector=reflector, ca_bundle=ca_bundle,
                           timeout=timeout, network_type=network_type, include_ip=include_ip,
                           concurrency=concurrency, interactive=not as_json,
                           stun_servers=stun_server, asn_db=asn_db)
        from probe.targets import load_plan

        wanted = services.split(",") if services else None
        plan = load_plan(targets, wanted)
        outcome = execute(plan, cfg, output, deep=deep_settings(cfg) if deep else None)
        if as_json:
            sys.stdout.write(json.dumps(public_summary(outcome.summary), indent=2) + "\n")
        raise typer.Exit(outcome.exit_code)


def build_config(*, resolver: str | None, doh: str | None, reflector: str | None,
                 ca_bundle: Path | None, timeout: float, network_type: str | None,
                 include_ip: bool, concurrency: int, interactive: bool,
                 stun_servers: list[str] | None = None,
                 asn_db: Path | None = None) -> RunConfig:
    if timeout <= 0 or timeout > 600:
        raise UsageError(f"--timeout must be between 0 and 600 seconds (got {timeout})")
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if resolver is not None:
        from probe.checks.dns import parse_resolver

        try:
            parse_resolver(resolver)
        except ValueError:
            raise UsageError(f"--resolver must be an IP address (or IP:PORT), got {resolver!r}")\
                from None
    if doh is not None and not doh.startswith("https://"):
        raise UsageError(f"--doh must be an https:// URL, got {doh!r}")
    if ca_bundle is not None and not ca_bundle.is_file():
        raise UsageError(f"--ca-bundle {ca_bundle}: no such file")
    for server in stun_servers or []:
        from probe.net import split_host_port
        from probe.targets import valid_hostname

        try:
            host, port = split_host_port(server, 3478)
        except ValueError:
            host, port = "", 0
        if not valid_hostname(host) or not 1 <= port <= 65535:
            raise UsageError(f"--stun-server must be HOST or HOST:PORT, got {server!r}")
    if asn_db is not None:
        from probe.identity import IdentityConfigError, load_asn_db

        try:
            load_asn_db(asn_db)
        except IdentityConfigError as exc:
            raise UsageError(f"--asn-db {exc}") from None
    if network_type is None:
        network_type = ask_network_type() if interactive else "unknown"
    if network_type not in NETWORK_TYPES:
        raise UsageError(f"--network-type must be one of {', '.join(NETWORK_TYPES)} "
                         f"(got {network_type!r})")
    return RunConfig(timeout_s=timeout, resolver=resolver, doh_url=doh, reflector=reflector,
                     ca_bundle=str(ca_bundle) if ca_bundle else None, concurrency=concurrency,
                     include_ip=include_ip, network_type=network_type,
                     stun_servers=tuple(stun_servers or ()),
                     asn_db=str(asn_db) if asn_db else None)


def ask_network_type() -> str:
    """Ask the volunteer which network this is (only with a terminal attached); a typo is
    asked again instead of ending the run with a usage error."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return "unknown"
    while True:
        try:
            answer = str(typer.prompt(
                "Which network are you on? (mobile = 3G/4G/5G, fixed = ADSL/fibre at home, "
                "wifi, unknown)", default="unknown", err=True)).strip().lower()
        except typer.Abort:  # Ctrl-C or Ctrl-D at the prompt: the volunteer stops here
            raise KeyboardInterrupt from None
        if answer in NETWORK_TYPES:
            return answer
        typer.echo(f"{answer!r} is not one of {', '.join(NETWORK_TYPES)}", err=True)


def public_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` run summary (DESIGN.md contract)."""
    keys = ("report_id", "results_file", "measurement_start_time", "network", "services",
            "locate")
    out = {k: summary[k] for k in keys if k in summary}
    if summary.get("interrupted"):
        out["interrupted"] = True
    return out


def deep_settings(cfg: RunConfig) -> Any:
    """Settings for ``--deep``, or None (with one line saying so) without raw sockets."""
    from probe.cli.locate import settings_for, skipped_message
    from probe.ttlprobe import has_raw_sockets

    if not has_raw_sockets():
        stderr_console().print(f"[yellow]{skipped_message()}[/]", highlight=False)
        return None
    return settings_for(cfg.timeout_s)


def execute(plan: Any, cfg: RunConfig, output: Path, deep: Any = None) -> Any:
    """Run the scan (and, given locate settings, the ``--deep`` step); render it."""
    from probe.cli.live import LiveView
    from probe.session import run_session

    console = stderr_console()
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--output {output}: cannot create the folder ({exc.strerror})", EXIT_USAGE)
    n_checks = len(plan.endpoints)
    console.print(f"[bold]voip-probe[/]: {len(plan.services)} services, {n_checks} checks, "
                  f"budget {cfg.timeout_s:g} s per check", highlight=False)
    after_scan = None
    if deep is not None:
        from probe.cli.locate import log
        from probe.locate_targets import deep_step

        after_scan = deep_step(plan, cfg, deep, log(console))
    with LiveView(console) as view:
        try:
            outcome = run_session(plan, cfg, output, progress=view.update,
                                  after_scan=after_scan)
        except KeyboardInterrupt as stop:
            console.print(f"[yellow]interrupted[/]: what was measured so far is in "
                          f"{stop.args[0] if stop.args else output}", highlight=False)
            raise typer.Exit(130) from None
    from probe.cli.render import render_summary

    render_summary(console, outcome.summary)
    if "locate" in outcome.summary:
        from probe.cli.locate import render_findings

        render_findings(console, outcome.summary["locate"]["findings"])
    return outcome
