"""One complete run, as ``voip-probe run`` and ``voip-probe watch`` do it.

The identity lookup (who is the probe: ASN, country; the public IP only to scrub it) runs
beside the scan, so it costs the run no time of its own. Nothing is written before it is
known: the file's name carries the ASN, every line carries the run's identity fields, and
the IP must be scrubbed from everything written. Measurements that complete earlier wait
in memory; once the identity is in, the results file is opened with its contract name,
they are written (stamped with the identity, scrubbed), and every later measurement is
written as it completes. The identity always finishes before the summary, which is
appended as the last line. A run stopped by Ctrl-C after the file exists still gets its
summary line (marked ``interrupted``); stopped before, it writes nothing (the address to
scrub is not known); a run killed outright keeps every completed line (see
:mod:`probe.results`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from probe import pseudonym
from probe.model import Identity, Plan, Record, RunConfig
from probe.net import Network, RealNetwork
from probe.privacy import collecting_own_addresses, scrub
from probe.results import ResultsWriter, fit_line, line_bytes, results_filename, summary_path
from probe.runner import ProgressFn, RunInfo, ooni_time, run_plan
from probe.verdicts import fallback_lines, overall_exit_code, reflector_left_out, summarize


@dataclass(slots=True)
class RunOutcome:
    summary: dict[str, Any]
    results_file: Path
    exit_code: int
    records: list[Record] = field(default_factory=list)


def new_report_id(start: datetime, identity: Identity) -> tuple[str, str]:
    """(report_id, short id): OONI-like, with 96 random bits."""
    rand = base64.b32encode(os.urandom(10)).decode().lower().rstrip("=")
    asn_num = identity.asn.removeprefix("AS") or "0"
    return f"{start:%Y%m%dT%H%M%SZ}_voipprobe_{identity.cc}_{asn_num}_{rand}", rand[:8]


async def resolve_identity(cfg: RunConfig, net: Network) -> Identity:
    """The probe's network identity (:mod:`probe.identity`); AS0/ZZ when unknown, as OONI
    writes an unknown network."""
    from probe import identity as identity_mod

    found: Identity = await identity_mod.lookup(cfg, net)
    return found


def pseudonym_annotations(identity: Identity, network_type: str) -> dict[str, str]:
    """The probe's pseudonym on this network (:mod:`probe.pseudonym`) as annotations,
    with a note when it could not be kept."""
    name, note = pseudonym.pseudonym_for(identity.asn, identity.cc, network_type)
    return {pseudonym.ANNOTATION: name, **({"pseudonym_note": note} if note else {})}


# Runs after the scan, before the summary line (``run --deep``): given the scan's records,
# an emit function for extra records and the run's shared fields, returns extra summary keys.
AfterScan = Callable[[list[Record], Callable[[Record], None], RunInfo], dict[str, Any] | None]


def process_started() -> float | None:
    """When this process started, on the ``time.monotonic()`` clock (the event loop's),
    or None where that cannot be read (Linux: ``/proc/self/stat``)."""
    try:
        stat = Path("/proc/self/stat").read_text(encoding="ascii")
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return time.monotonic() - max(age, 0.0)


def run_session(plan: Plan, cfg: RunConfig, output_dir: Path, *,
                net: Network | None = None, progress: ProgressFn | None = None,
                now: datetime | None = None, after_scan: AfterScan | None = None,
                started: float | None = None) -> RunOutcome:
    """Run the plan and write one results file; returns the summary and exit code.
    ``started``: when the user's run began (``time.monotonic()``; default: now), from
    which the runner keeps the scan within two budgets (:func:`probe.runner.run_plan`)."""
    # Every address a server reports as the probe's own during the run is scrubbed too.
    with collecting_own_addresses() as learned:
        return _run_session(plan, cfg, output_dir, learned, net=net, progress=progress,
                            now=now, after_scan=after_scan, started=started)


def _run_session(plan: Plan, cfg: RunConfig, output_dir: Path, learned: set[str], *,
                 net: Network | None, progress: ProgressFn | None, now: datetime | None,
                 after_scan: AfterScan | None, started: float | None) -> RunOutcome:
    net = net or RealNetwork()
    start = now or datetime.now(UTC)
    out = _Output(cfg, start, Path(output_dir), learned)
    loop_start = datetime.now(UTC)
    interrupted = False
    extra: dict[str, Any] | None = None
    # Ctrl-C must never leave a file without its summary line. During the scan it
    # interrupts (asyncio cancels the run, and what was measured gets an ``interrupted``
    # summary); from the moment the scan ends until the summary is written it waits (is
    # remembered).
    ctrl_c = _CtrlC()
    ctrl_c.defer()
    try:
        try:
            ctrl_c.allow()
            asyncio.run(_scan(plan, cfg, net, out, progress, started))
            if after_scan is not None:
                extra = after_scan(list(out.written), out.emit, out.info)
            ctrl_c.defer()
        except KeyboardInterrupt:
            ctrl_c.defer()
            interrupted = True
        if out.writer is None or out.identity is None:
            # Stopped before the identity was known: the address to scrub is unknown, so
            # nothing measured can be written.
            raise KeyboardInterrupt
        out.scrub_again()
        summary = build_summary(out.written, out.info, out.identity, cfg, out.path,
                                (datetime.now(UTC) - loop_start).total_seconds())
        if extra:
            summary.update(extra)
        if interrupted:
            summary["interrupted"] = True
        line = {"record": "summary", **summary, "results_file": summary_path(out.path)}
        out.writer.write(scrub(line, out.all_secrets()))
    finally:  # whatever happened, the file is closed and Ctrl-C works again afterwards
        out.close()
        pressed = ctrl_c.restore()
    if pressed and not interrupted:
        interrupted = True  # pressed as the run ended: the file is complete all the same
    if interrupted:
        raise KeyboardInterrupt(str(out.path))
    return RunOutcome(summary, out.path, overall_exit_code(summary), out.written)


async def _scan(plan: Plan, cfg: RunConfig, net: Network, out: _Output,
                progress: ProgressFn | None, started: float | None) -> None:
    """The identity lookup and the scan side by side; the file opens when the identity
    is in. A failure of either (a bad identity file, a bug) stops the other."""
    scan = asyncio.ensure_future(run_plan(plan, cfg, net, out.info, out.emit, progress,
                                          started))
    identity = asyncio.ensure_future(resolve_identity(cfg, net))
    try:
        out.open(await asyncio.shield(identity))
    except asyncio.CancelledError:
        # Ctrl-C before the identity was in: the scan stops now, and the lookup (bounded
        # by identity.IDENTITY_BUDGET_S) is let finish, so that what was measured can be
        # scrubbed and written with an interrupted summary. A second Ctrl-C gives up.
        scan.cancel()
        await asyncio.gather(scan, return_exceptions=True)
        out.open(await identity)
        raise
    except BaseException:
        scan.cancel()
        identity.cancel()
        await asyncio.gather(scan, identity, return_exceptions=True)
        raise
    await scan


class _Output:
    """The results file of one run: measurements wait in memory until the identity is
    known, then every one is stamped with it, scrubbed and written."""

    def __init__(self, cfg: RunConfig, start: datetime, output_dir: Path,
                 learned: set[str] | None = None) -> None:
        self.cfg = cfg
        self.output_dir = output_dir
        # Identity fields stay at OONI's "unknown" until the lookup is in.
        self.info = RunInfo(report_id="", start=start, network_type=cfg.network_type)
        self.identity: Identity | None = None
        self.path = output_dir
        self.secrets: list[str] = []
        self.learned = learned if learned is not None else set()
        self.first_secrets: frozenset[str] | None = None  # scrubbed with, by the first line
        self.writer: ResultsWriter | None = None
        self.pending: list[Record] = []
        self.written: list[Record] = []

    def open(self, identity: Identity) -> None:
        """Take the identity, create the file and write what waited for it."""
        cfg, start = self.cfg, self.info.start
        report_id, short_id = new_report_id(start, identity)
        name = results_filename(f"{start:%Y%m%dT%H%M%SZ}", identity.asn, cfg.network_type,
                                short_id)
        self.path = self.output_dir / name
        self.secrets = [] if cfg.include_ip or not identity.ip else [identity.ip]
        annotations = {"identity_source": identity.source,
                       **({"identity_note": identity.note} if identity.note else {})}
        if cfg.pseudonym:
            annotations.update(pseudonym_annotations(identity, cfg.network_type))
        info = self.info
        info.report_id, info.probe_asn, info.probe_cc = report_id, identity.asn, identity.cc
        info.probe_network_name = identity.network_name
        info.probe_ip = identity.ip if cfg.include_ip else None
        info.annotations = annotations
        self.identity = identity
        writer = ResultsWriter(self.path)
        self.writer = writer.__enter__()
        pending, self.pending = self.pending, []
        for record in pending:
            self._write(record)

    def emit(self, record: Record) -> None:
        if self.writer is None:
            self.pending.append(record)
        else:
            self._write(record)

    def _write(self, record: Record) -> None:
        assert self.writer is not None
        stamped = self.info.stamp({k: v for k, v in record.items() if not k.startswith("_")})
        # Cut to the collector's line limit before it is written and judged, so that the
        # verdicts read from the file are the ones computed now.
        secrets = self.all_secrets()
        if self.first_secrets is None:
            self.first_secrets = frozenset(secrets)
        clean = fit_line(scrub(stamped, secrets))
        self.writer.write(clean)
        self.written.append(clean)

    def scrub_again(self) -> None:
        """Lines written before an address was learnt as the probe's own (a STUN server
        told a later check) are scrubbed of it too: the file is rewritten if that changes
        a line. Secrets only grow, so the first line was written with the fewest."""
        secrets = self.all_secrets()
        if self.writer is None or self.first_secrets is None \
                or not set(secrets) - self.first_secrets:
            return
        again = [fit_line(scrub(record, secrets)) for record in self.written]
        if any(line_bytes(a) != line_bytes(b) for a, b in zip(again, self.written,
                                                               strict=True)):
            self.writer.rewrite(again)
            self.written[:] = again
        self.first_secrets = frozenset(secrets)

    def all_secrets(self) -> list[str]:
        """The identity's address and every other one learnt as the probe's own so far
        (none with ``--include-ip``)."""
        if self.cfg.include_ip:
            return []
        return [*self.secrets, *sorted(self.learned - set(self.secrets))]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.__exit__(None, None, None)


class _CtrlC:
    """Switches SIGINT between "remember it for later" and the handler in place before.

    A Python-level handler, not a blocked signal mask: a mask blocks the signal in this
    thread only, and a thread started earlier (the live view's refresh) would still take
    it and have KeyboardInterrupt raised here. Handlers always run in the main thread, so
    outside it (a run started from a worker thread) nothing is switched."""

    def __init__(self) -> None:
        self.pressed = False
        self._active = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGINT) if self._active else None
        # None: a handler not installed from Python; the default one is the safe stand-in.
        self._previous = previous if previous is not None else signal.default_int_handler

    def _remember(self, _signum: int, _frame: Any) -> None:
        self.pressed = True

    def defer(self) -> None:
        if self._active:
            signal.signal(signal.SIGINT, self._remember)

    def allow(self) -> None:
        """Back to the earlier handler; a Ctrl-C remembered meanwhile is raised now."""
        self.restore()
        if self.pressed:
            raise KeyboardInterrupt

    def restore(self) -> bool:
        """The earlier handler again; whether Ctrl-C was pressed while deferred."""
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
        return self.pressed


def build_summary(records: list[Record], info: RunInfo, identity: Identity, cfg: RunConfig,
                  path: Path, runtime_s: float) -> dict[str, Any]:
    verdicts = summarize(records)
    network = {"status": verdicts["network"]["status"], "asn": identity.asn, "cc": identity.cc,
               "type": cfg.network_type, "controls": verdicts["network"]["controls"]}
    if identity.network_name:
        network["name"] = identity.network_name
    return {
        "schema_version": info.base()["schema_version"],
        "report_id": info.report_id,
        "software_name": info.base()["software_name"],
        "software_version": info.base()["software_version"],
        "measurement_start_time": ooni_time(info.start),
        "test_runtime": round(runtime_s, 3),
        "probe_asn": identity.asn,
        "probe_cc": identity.cc,
        "results_file": str(path),  # where it is, for this machine (the written line:
                                    # summary_path)
        "measurements": len(records),
        "network": network,
        "services": verdicts["services"],
        "reflector": {"host": cfg.reflector, "source": cfg.reflector_source,
                      "note": cfg.reflector_note},
        "notes": run_notes(records, verdicts["services"], cfg),
    }


def run_notes(records: list[Record], services: dict[str, Any], cfg: RunConfig) -> list[str]:
    """One line each: which calls path works where it was judged on two, and what a run
    without a reflector left out (with why the collector gave none, if it was asked)."""
    notes = fallback_lines(services)
    left_out = reflector_left_out(records)
    if left_out:
        notes.append(left_out + (f" ({cfg.reflector_note})" if cfg.reflector_note else ""))
    return notes
