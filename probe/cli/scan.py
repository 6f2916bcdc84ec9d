"""The scan that ``run``, ``watch`` and ``locate`` share: options -> a run configuration
and a plan, then the run itself with its live view and rendering (stderr).

Commands call these functions; no command module imports another.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from probe.cli.common import EXIT_USAGE, UsageError, fail, stderr_console
from probe.cli.options import ScanArgs
from probe.cli.render import render_findings, render_summary
from probe.hostnames import valid_hostname
from probe.model import NETWORK_TYPES, Plan, RunConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from probe.locate.core import Settings
    from probe.reflector_choice import ReflectorChoice
    from probe.session import RunOutcome


def load_plan(args: ScanArgs) -> Plan:
    """The plan of the given target files (default: the shipped ones), restricted to the
    comma-separated ``--services`` (controls always kept)."""
    from probe.targets import load_plan as load

    return load(args.targets, args.services.split(",") if args.services else None)


def build_config(args: ScanArgs, *, interactive: bool,
                 collector: str | None = None) -> RunConfig:
    """The run configuration of the scan options, each checked (UsageError: exit 2); the
    network type is asked at a terminal when ``interactive`` and not given. Without
    ``--reflector`` the reflector comes from the user configuration, or else from the
    collector (``collector``, or the configured one) when it advertises one."""
    resolver, doh, ca_bundle, timeout = args.resolver, args.doh, args.ca_bundle, args.timeout
    concurrency, stun_servers, asn_db = args.concurrency, args.stun_server, args.asn_db
    network_type = args.network_type
    if timeout <= 0 or timeout > 600:
        raise UsageError(f"--timeout must be between 0 and 600 seconds (got {timeout})")
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    from probe.net import split_host_port
    from probe.resolve import parse_resolver

    if resolver is not None:
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
    reflector = choose_reflector(args.reflector, collector)
    return RunConfig(timeout_s=timeout, resolver=resolver, doh_url=doh,
                     reflector=reflector.host, reflector_source=reflector.source,
                     reflector_note=reflector.note,
                     ca_bundle=str(ca_bundle) if ca_bundle else None,
                     concurrency=concurrency, include_ip=args.include_ip,
                     network_type=network_type, pseudonym=not args.no_pseudonym,
                     stun_servers=tuple(stun_servers or ()),
                     asn_db=str(asn_db) if asn_db else None)


def choose_reflector(option: str | None, collector: str | None) -> ReflectorChoice:
    """``--reflector``, else ``reflector`` in config.toml, else the collector's (given, or
    ``collector`` in config.toml); a bad configuration is a usage error."""
    from probe import upload
    from probe.reflector_choice import ReflectorConfigError
    from probe.reflector_choice import choose_reflector as choose

    if option:
        if not valid_hostname(option):
            raise UsageError(f"--reflector must be a host name or an address, got {option!r}")
        return choose(option, {}, "", None)
    try:
        config = upload.load_config()
        if collector or config.get("collector"):
            collector = upload.collector_url(collector, config)
        return choose(None, config, str(upload.config_path()), collector)
    except (upload.UploadError, ReflectorConfigError) as exc:
        raise UsageError(str(exc)) from None


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
            "reflector", "notes", "locate")
    out = {k: summary[k] for k in keys if k in summary}
    if summary.get("interrupted"):
        out["interrupted"] = True
    return out


def deep_settings(cfg: RunConfig) -> Settings | None:
    """Settings for ``--deep``, or None (with one line saying so) without raw sockets."""
    from probe.locate.ttl import RAW_SKIPPED, has_raw_sockets

    if not has_raw_sockets():
        stderr_console().print(f"[yellow]{RAW_SKIPPED}[/]", highlight=False)
        return None
    return locate_settings(cfg.timeout_s)


def locate_settings(timeout_s: float, max_hops: int = 30) -> Settings:
    from probe.locate.core import Settings

    return Settings(max_hops=max_hops, wait_s=min(1.0, max(0.2, timeout_s / 4)),
                    connect_timeout_s=min(timeout_s, 10.0))


def log_to(console: Console) -> Callable[[str], None]:
    """A logger that prints progress lines of ``locate``, dimmed, on ``console``."""
    from rich.markup import escape

    def write(message: str) -> None:
        console.print(f"[dim]{escape(message)}[/]", highlight=False)

    return write


def execute(plan: Plan, cfg: RunConfig, output: Path,
            deep: Settings | None = None, started: float | None = None) -> RunOutcome:
    """Run the scan (and, given locate settings, the ``--deep`` step); render it.
    ``started``: when the user's run began (:func:`probe.session.run_session`)."""
    from rich.markup import escape

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
        from probe.locate.targets import deep_step

        after_scan = deep_step(plan, cfg, deep, log_to(console))
    with LiveView(console) as view:
        try:
            outcome = run_session(plan, cfg, output, progress=view.update,
                                  after_scan=after_scan, started=started)
        except KeyboardInterrupt as stop:
            console.print(f"[yellow]interrupted[/]: what was measured so far is in "
                          f"{escape(str(stop.args[0] if stop.args else output))}",
                          highlight=False)
            raise typer.Exit(130) from None
    render_summary(console, outcome.summary)
    if "locate" in outcome.summary:
        render_findings(console, outcome.summary["locate"]["findings"])
    return outcome
