"""Option definitions shared by several commands, declared once.

``run``, ``locate`` and ``watch`` take the same scan options (the run's targets, resolver,
reflector, budget ...): :func:`scan_options` adds them to a command, which receives them
as one :class:`ScanArgs`. ``timeline`` and ``report`` share the event rule's options. Each
option is an ``Annotated`` type, so every command shows the same flag, metavar and help.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_CONCURRENCY = 256
DEFAULT_OUTPUT = Path("results")

# --- the scan (run, locate, watch) --------------------------------------------------

@dataclass(frozen=True, slots=True)
class ScanArgs:
    """The scan options as a command received them (see :func:`probe.cli.scan.build_config`)."""

    targets: list[Path] | None = None
    services: str | None = None
    resolver: str | None = None
    doh: str | None = None
    reflector: str | None = None
    ca_bundle: Path | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    output: Path = DEFAULT_OUTPUT
    network_type: str | None = None
    include_ip: bool = False
    no_pseudonym: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    stun_server: list[str] | None = None
    asn_db: Path | None = None
    deep: bool = False


# Each scan option: its flag, metavar (None for a switch) and help text; its type and
# default are ScanArgs's.
_SCAN_HELP: dict[str, tuple[str, str | None, str]] = {
    "targets": ("--targets", "FILE", "Target file (TOML); repeatable. Default: the shipped "
                "files. When given, only these files are used, controls included."),
    "services": ("--services", "NAMES", "Only these services, comma-separated (e.g. "
                 "whatsapp,viber). Controls always run."),
    "resolver": ("--resolver", "IP", "IP address of the DNS resolver to use (IP or IP:PORT). "
                 "Default: the system resolver."),
    "doh": ("--doh", "URL", "DNS-over-HTTPS URL of a control resolver, to detect tampering."),
    "reflector": ("--reflector", "HOST", "Host of a cooperating voip-probe reflector (UDP "
                  "echo/STUN), for the UDP and differential call tests."),
    "ca_bundle": ("--ca-bundle", "PEM", "Extra CA certificates (PEM) to trust for TLS checks."),
    "timeout": ("--timeout", "SECONDS", "Budget of each check, in seconds."),
    "output": ("--output", "DIR", "Folder for the results files."),
    "network_type": ("--network-type", "TYPE", "mobile, fixed, wifi or unknown. Asked when "
                     "unset and a terminal is attached."),
    "include_ip": ("--include-ip", None, "Write this network's public IP into the results "
                   "(off by default: it can identify you)."),
    "no_pseudonym": ("--no-pseudonym", None, "Leave out this device's random pseudonym for "
                     "this network (it lets a collector tell independent probes apart; it "
                     "changes every 28 days and differs per network). Without it, a "
                     "collector cannot count your runs as an independent confirmation."),
    "concurrency": ("--concurrency", "N", "How many checks may run at once."),
    "stun_server": ("--stun-server", "HOST[:PORT]", "STUN server (HOST[:PORT]) that tells "
                    "this network's public address, to look up its ASN and country; "
                    "repeatable. Default: the ones in configs/identity.toml. The address "
                    "itself is never written (see --include-ip)."),
    "asn_db": ("--asn-db", "FILE", "Local IP-to-ASN table (CSV or TSV lines "
               "prefix,asn,cc,name) to use instead of DNS lookups (Team Cymru style)."),
    "deep": ("--deep", None, "After the scan, locate where each blocked endpoint is blocked "
             "(voip-probe locate; needs root or CAP_NET_RAW, skipped otherwise)."),
}
SCAN_OPTIONS: dict[str, Any] = {
    name: Annotated[kind, typer.Option(flag, metavar=metavar, help=text)]
    for name, kind in get_type_hints(ScanArgs).items()
    for flag, metavar, text in [_SCAN_HELP[name]]
}


def scan_options(omit: Iterable[str] = ()) -> Callable[[Callable[..., None]],
                                                        Callable[..., None]]:
    """Give a command the scan options (all but ``omit``), after its own: the command
    declares a last parameter ``scan: ScanArgs`` and receives them in it (omitted ones
    keep their defaults)."""
    left_out = set(omit)
    defaults = ScanArgs()

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "scan"]
        shared = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                    default=getattr(defaults, f.name),
                                    annotation=SCAN_OPTIONS[f.name])
                  for f in fields(ScanArgs) if f.name not in left_out]

        @functools.wraps(command)
        def with_scan(**kwargs: Any) -> None:
            scan = ScanArgs(**{k: kwargs.pop(k) for k in list(kwargs) if k in SCAN_OPTIONS})
            command(scan=scan, **kwargs)

        params = own + shared
        with_scan.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=params, return_annotation=None)
        with_scan.__annotations__ = {p.name: p.annotation for p in params}
        return with_scan

    return decorate


# --- the event rule (timeline, report) ----------------------------------------------

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
PathsArg = Annotated[list[Path], typer.Argument(
    help="Results files, or folders searched for *.jsonl / *.jsonl.gz.")]
WindowOpt = Annotated[int, typer.Option(
    "--window", min=1, help="Conclusive runs looked at to confirm a change.")]
ConfirmOpt = Annotated[int, typer.Option(
    "--confirm", min=1, help="How many of them must be in the new state.")]
ImpairedIsOkOpt = Annotated[bool, typer.Option(
    "--impaired-is-ok", help="Count 'impaired' as working instead of as down.")]


# --- output -------------------------------------------------------------------------

def json_flag(what: str, *, human_on_stderr: bool = False) -> Any:
    """The ``--json`` flag of a command that prints ``what`` as JSON on stdout. Used as the
    parameter's default value."""
    tail = " (human output on stderr)" if human_on_stderr else ""
    return typer.Option(False, "--json", help=f"Print {what} as JSON on stdout{tail}.")
