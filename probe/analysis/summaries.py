"""Run summaries of results files, read without loading the measurements.

``compare``, ``timeline`` and ``report`` only need each run's summary: the
``{"record": "summary", ...}`` line that ends every complete results file (DESIGN.md
"Results file", "Run summary"). :func:`load_summary` reads that line from the end of the
file (a seek and one small read for plain files; a streaming pass that parses only the
last line for gzip files), so the cost per run does not grow with its measurements.

A file without a summary line (a run cut short by a crash, or a torn last line) is
recomputed from its measurements with ``probe.verdicts.summarize`` when this version
has it; otherwise the file is skipped with a warning. Either way a crashed file never
stops the analysis of the others.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.model import STATUSES
from probe.results import ResultsError, iter_records

Record = dict[str, Any]
Warn = Callable[[str], None]

_FIRST_BLOCK = 8 * 1024
_TAIL_BLOCK = 1024 * 1024
# The run summary's own keys (DESIGN.md "Run summary"), in contract order.
RUN_SUMMARY_KEYS = ("report_id", "results_file", "network", "services")


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run: where it came from, which network, when, and its verdicts."""

    path: Path
    record: Record  # the summary line as stored (or as recomputed)
    recomputed: bool = False

    @property
    def start(self) -> str:
        """``measurement_start_time`` ("YYYY-MM-DD HH:MM:SS", UTC; sorts as text)."""
        return str(self.record.get("measurement_start_time") or "")

    @property
    def report_id(self) -> str:
        return str(self.record.get("report_id") or "")

    @property
    def network(self) -> Record:
        net = self.record.get("network")
        return net if isinstance(net, dict) else {}

    @property
    def asn(self) -> str:
        return str(self.network.get("asn") or self.record.get("probe_asn") or "AS0")

    @property
    def cc(self) -> str:
        return str(self.network.get("cc") or self.record.get("probe_cc") or "ZZ")

    @property
    def network_type(self) -> str:
        return str(self.network.get("type") or "unknown")

    @property
    def online(self) -> bool:
        return bool(self.network.get("status", "online") != "offline")

    @property
    def services(self) -> dict[str, Record]:
        services = self.record.get("services")
        return services if isinstance(services, dict) else {}

    def functions(self) -> Iterator[tuple[str, str, Record]]:
        """``(service, function, verdict)`` for every function verdict of the run."""
        for service, sv in self.services.items():
            fns = sv.get("functions") if isinstance(sv, dict) else None
            if not isinstance(fns, dict):
                continue
            for function, fv in fns.items():
                if isinstance(fv, dict):
                    yield service, function, fv

    def run_summary(self) -> Record:
        """The run summary in the ``run --json`` contract shape, plus when it ran."""
        out: Record = {k: self.record.get(k) for k in RUN_SUMMARY_KEYS}
        out["measurement_start_time"] = self.record.get("measurement_start_time")
        return out


def function_status(verdict: Record) -> str:
    """The verdict's status, ``inconclusive`` when absent or not in the vocabulary."""
    status = verdict.get("status")
    return status if status in STATUSES else "inconclusive"


def function_methods(verdict: Record) -> tuple[str, ...]:
    methods = verdict.get("methods")
    if not isinstance(methods, list):
        return ()
    return tuple(sorted({m for m in methods if isinstance(m, str)}))


def load_summary(path: Path, warn: Warn) -> RunSummary | None:
    """The run summary of one results file, or ``None`` (after a warning) if it has none
    and cannot be recomputed. Raises :class:`ResultsError` for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file")
    last, torn = _last_line(path)
    if last is not None:
        try:
            obj = json.loads(last)
        except (json.JSONDecodeError, UnicodeDecodeError):
            obj = None
        if isinstance(obj, dict) and obj.get("record") == "summary":
            problem = _summary_problem(obj)
            if problem is None:
                if torn:
                    warn(f"{path}: last line has no newline (the run was cut short); kept it")
                return RunSummary(path, obj)
            warn(f"{path}: last line: summary {problem}; recomputing from the measurements")
    return _recompute(path, warn)


def iter_summaries(paths: Iterable[Path], warn: Warn) -> Iterator[RunSummary]:
    """Summaries of many files, one at a time (files without one are warned about)."""
    for path in paths:
        summary = load_summary(path, warn)
        if summary is not None:
            yield summary


def _summary_problem(obj: Record) -> str | None:
    if not isinstance(obj.get("services"), dict):
        return "has no 'services' object"
    if "network" in obj and not isinstance(obj["network"], dict):
        return "has a 'network' that is not an object"
    return None


def _last_line(path: Path) -> tuple[bytes | None, bool]:
    """The last non-blank line of the file and whether it lacks its newline."""
    with open(path, "rb") as fh:
        if fh.read(2) == b"\x1f\x8b":
            return _last_line_gzip(path)
        end = fh.seek(0, os.SEEK_END)
        buf = b""
        pos = end
        block = _FIRST_BLOCK
        while pos > 0:
            step = min(block, pos)
            block = min(block * 4, _TAIL_BLOCK)  # summaries are small; grow only if needed
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
            body = buf.rstrip()
            cut = body.rfind(b"\n")
            if cut >= 0:
                return body[cut + 1:] or None, not buf.endswith(b"\n")
        body = buf.rstrip()
        return (body or None), not buf.endswith(b"\n")


def _last_line_gzip(path: Path) -> tuple[bytes | None, bool]:
    last: bytes | None = None
    raw_last = b""
    try:
        with gzip.open(path, "rb") as fh:
            for raw in fh:
                if raw.strip():
                    last, raw_last = raw.strip(), raw
    except (OSError, EOFError):  # a gzip stream cut short: what came before still counts
        return last, True
    return last, not raw_last.endswith(b"\n")


def _recompute(path: Path, warn: Warn) -> RunSummary | None:
    try:
        from probe.verdicts import summarize
    except ImportError:
        warn(f"{path}: no summary line (the run was cut short) and this version cannot "
             "recompute verdicts from measurements; skipped")
        return None
    measurements = [r for r in iter_records(path, warn)
                    if r.get("record") != "summary" and "service" in r and "function" in r]
    if not measurements:
        warn(f"{path}: no summary line and no measurements (not a results file?); skipped")
        return None
    try:
        result = summarize(measurements)
    except Exception as exc:  # one odd file must not stop the analysis of the others
        warn(f"{path}: no summary line, and its measurements could not be summarized "
             f"({type(exc).__name__}: {exc}); skipped")
        return None
    summary: Record = result.to_json() if hasattr(result, "to_json") else dict(result)
    first = measurements[0]
    net: dict[str, Any] = summary.get("network") or {}
    annotations: dict[str, Any] = first.get("annotations") or {}
    if not isinstance(net, dict):
        net = {}
    if not isinstance(annotations, dict):
        annotations = {}
    network = {
        "status": net.get("status", "online"),
        "asn": net.get("asn") or first.get("probe_asn"),
        "cc": net.get("cc") or first.get("probe_cc"),
        "type": net.get("type") or annotations.get("network_type") or "unknown",
    }
    record: Record = {
        "record": "summary",
        "schema_version": first.get("schema_version", 1),
        "report_id": summary.get("report_id") or first.get("report_id"),
        # The run's start is every measurement's test_start_time (the first measurement
        # starts later: the identity lookup comes first).
        "measurement_start_time": summary.get("measurement_start_time")
        or first.get("test_start_time") or first.get("measurement_start_time"),
        "probe_asn": network["asn"],
        "probe_cc": network["cc"],
        "results_file": summary.get("results_file") or str(path),
        "network": network,
        "services": summary.get("services", {}),
    }
    warn(f"{path}: no summary line (the run was cut short); verdicts recomputed from "
         f"{len(measurements)} measurements")
    return RunSummary(path, record, recomputed=True)
