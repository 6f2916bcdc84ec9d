"""Results files: a crash-safe JSON Lines writer and a tolerant reader.

Format (DESIGN.md "Results file"): one measurement per line, the last line a
``{"record": "summary", ...}`` line holding the run summary. The writer appends each
line with a single ``os.write`` on an ``O_APPEND`` descriptor, so a run killed at any
moment (even SIGKILL) leaves every completed line intact; at worst the last line is
torn. Readers skip a torn last line with a warning instead of failing.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Record = dict[str, Any]
Warn = Callable[[str], None]


class ResultsError(Exception):
    """A results file cannot be read at all (missing, not JSON Lines)."""


def results_filename(start_compact: str, asn: str, network_type: str, short_id: str) -> str:
    """``<UTC start, e.g. 20161104T093000Z>_<ASN>_<network type>_<short id>.jsonl``."""
    return f"{start_compact}_{asn}_{network_type}_{short_id}.jsonl"


class ResultsWriter:
    """Append-only JSONL writer; every ``write`` is one complete line on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644
        )
        self.lines = 0

    def write(self, record: Record) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:  # os.write may write less than asked for (signals, full disk)
            n = os.write(self._fd, view)
            view = view[n:]
        self.lines += 1

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def iter_records(path: Path, warn: Warn | None = None) -> Iterator[Record]:
    """Yield every valid record of a results file, streaming (constant memory).

    A torn or invalid line is skipped and reported through ``warn`` with its line
    number; the last line of a crashed run is the usual case.
    """
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file")
    with _open_text(path) as fh:
        lineno = 0
        pending: str | None = None
        for raw in fh:
            lineno += 1
            if pending is not None:
                yield from _parse(pending, lineno - 1, path, warn, last=False)
            pending = raw
        if pending is not None:
            yield from _parse(pending, lineno, path, warn, last=True)


def _parse(raw: str, lineno: int, path: Path, warn: Warn | None, last: bool) -> Iterator[Record]:
    text = raw.strip()
    if not text:
        return
    torn = last and not raw.endswith("\n")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if warn is not None:
            what = "torn last line (the run was cut short)" if last else f"invalid line ({exc})"
            warn(f"{path}:{lineno}: skipped {what}")
        return
    if not isinstance(obj, dict):
        if warn is not None:
            warn(f"{path}:{lineno}: skipped a line that is not a JSON object")
        return
    if torn and warn is not None:
        warn(f"{path}:{lineno}: last line has no newline (the run was cut short); kept it")
    yield obj


@dataclass(slots=True)
class ResultsFile:
    path: Path
    measurements: list[Record] = field(default_factory=list)
    summary: Record | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.summary is not None


def read_results(path: Path | str) -> ResultsFile:
    """Read a whole results file (for files of one run; use iter_records to stream)."""
    out = ResultsFile(Path(path))
    for rec in iter_records(out.path, out.warnings.append):
        if rec.get("record") == "summary":
            out.summary = rec
        else:
            out.measurements.append(rec)
    if not out.measurements and out.summary is None and not out.warnings:
        out.warnings.append(f"{out.path}: empty results file")
    return out


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files given directly, plus every ``*.jsonl`` / ``*.jsonl.gz`` inside given folders.

    Hidden files and folders inside a given folder (``.runs/``, ``.git/``) are skipped:
    they hold work files (e.g. the lab replay's un-dated originals), not results.
    """
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            inside = [*p.rglob("*.jsonl"), *p.rglob("*.jsonl.gz")]
            found.extend(sorted(f for f in inside if not any(
                part.startswith(".") for part in f.relative_to(p).parts)))
        elif p.exists():
            found.append(p)
        else:
            raise ResultsError(f"{p}: no such file or folder")
    return found
