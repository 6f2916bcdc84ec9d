"""Results files: a crash-safe JSON Lines writer and a tolerant reader.

Format (DESIGN.md "Results file"): one measurement per line, the last line a
``{"record": "summary", ...}`` line holding the run summary. The writer appends each
line with a single ``os.write`` on an ``O_APPEND`` descriptor, so a run killed at any
moment (even SIGKILL) leaves every completed line intact; at worst the last line is
torn. Readers skip a torn last line with a warning instead of failing.

Bounds: a censor can answer one query with thousands of junk datagrams, and a results file
with a line longer than the collector accepts would be refused (a report suppressed). So
what a check records of repeated observations is capped where it is recorded
(:func:`note_event`: the first few, the latest and how many there were), and no line is
ever longer than :data:`MAX_LINE_BYTES`, the collector's limit too (:func:`fit_line`, the
last step before a measurement is written and judged).
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

# The longest line (its JSON, without the newline) a results file may hold: the writer
# never writes a longer one and the collector (probe.collector.validate) refuses one.
MAX_LINE_BYTES = 1024 * 1024
# How many of a repeated observation (replies ignored, datagrams received ...) a record
# keeps: the first ones and the latest; the rest are counted.
KEEP_EVENTS = 8
# Strings longer than this are cut when a line must be shortened to fit.
_CUT_STRING_CHARS = 256


class ResultsError(Exception):
    """A results file cannot be read at all (missing, not JSON Lines)."""


def keep_event(events: list[Any], event: Any) -> None:
    """Append ``event``; once :data:`KEEP_EVENTS` are kept, it takes the last place
    instead (the first ones show how it began, the last one how it ended)."""
    if len(events) < KEEP_EVENTS:
        events.append(event)
    else:
        events[-1] = event


def note_event(record: Record, key: str, event: Any) -> None:
    """Record ``event`` in the list ``record[key]`` (:func:`keep_event`); when more came
    than are kept, ``record[key + "_total"]`` says how many there were."""
    events = record[key]
    total = int(record.get(f"{key}_total", len(events))) + 1
    keep_event(events, event)
    if total > len(events):
        record[f"{key}_total"] = total


@dataclass(slots=True)
class Events:
    """A repeated observation kept as :func:`note_event` keeps it, for records built as
    objects: ``to_json(key)`` gives ``{key: [...]}`` plus ``key_total`` when cut."""

    items: list[Any] = field(default_factory=list)
    total: int = 0

    def add(self, event: Any) -> None:
        self.total += 1
        keep_event(self.items, event)

    def to_json(self, key: str) -> Record:
        out: Record = {key: self.items}
        if self.total > len(self.items):
            out[f"{key}_total"] = self.total
        return out


def line_bytes(record: Record) -> bytes:
    """A record as its results line (without the newline), as the writer writes it."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def fit_line(record: Record, limit: int = MAX_LINE_BYTES) -> Record:
    """``record`` itself when its line fits in ``limit`` bytes; else a copy cut to fit,
    with ``cut_to_fit`` (the original size) in its ``test_keys``.

    Cutting goes as far as needed, in steps: every list keeps its first and latest items
    (:data:`KEEP_EVENTS`, with ``<key>_total`` beside it); long strings are shortened;
    at last ``test_keys`` keeps only its scalar values (``failure`` among them). A record
    without ``test_keys`` that is still too long (a summary) raises ValueError."""
    size = len(line_bytes(record))
    if size <= limit:
        return record
    steps: tuple[Callable[[Record], Record], ...] = (_cut_lists, _cut_strings, _scalars_only)
    cut = record
    for step in steps:
        cut = step(cut)
        if isinstance(cut.get("test_keys"), dict):
            cut["test_keys"]["cut_to_fit"] = {"bytes": size, "limit": limit}
        if len(line_bytes(cut)) <= limit:
            return cut
    raise ValueError(f"a results line of {size} bytes cannot be cut to {limit} bytes")


def _cut_lists(record: Record) -> Record:
    """Every list, at any depth: its first and latest items, the count beside it."""
    cut: Record = _cut_lists_in(record)
    return cut


def _cut_lists_in(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out[key] = _cut_lists_in(item)
            if isinstance(item, list) and len(item) > KEEP_EVENTS:
                out[f"{key}_total"] = max(len(item), int(value.get(f"{key}_total") or 0))
        return out
    if isinstance(value, list):
        kept = value if len(value) <= KEEP_EVENTS \
            else [*value[:KEEP_EVENTS - 1], value[-1]]
        return [_cut_lists_in(item) for item in kept]
    return value


def _cut_strings(record: Record) -> Record:
    """Every string longer than :data:`_CUT_STRING_CHARS`, shortened."""
    cut: Record = _cut_strings_in(record)
    return cut


def _cut_strings_in(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _CUT_STRING_CHARS:
        return value[:_CUT_STRING_CHARS] + "...[cut]"
    if isinstance(value, dict):
        return {_cut_strings_in(k): _cut_strings_in(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings_in(item) for item in value]
    return value


def _scalars_only(record: Record) -> Record:
    keys = record.get("test_keys")
    if not isinstance(keys, dict):
        return record
    return {**record, "test_keys": {k: v for k, v in keys.items()
                                    if v is None or isinstance(v, str | int | float | bool)}}


def results_filename(start_compact: str, asn: str, network_type: str, short_id: str) -> str:
    """``<UTC start, e.g. 20161104T093000Z>_<ASN>_<network type>_<short id>.jsonl``."""
    return f"{start_compact}_{asn}_{network_type}_{short_id}.jsonl"


def summary_path(path: Path) -> str:
    """The results file as the summary names it: as given when the output folder was given
    relative and inside it (``results/<name>.jsonl``, the default), else the bare file
    name. Never an absolute path: it would carry the volunteer's folders (the user name
    in ``/home/<user>/...``) into every uploaded file."""
    parts = path.parent.parts
    if path.is_absolute() or ".." in parts:
        return path.name
    return str(path)


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
        """Append ``record`` as one line, cut to :data:`MAX_LINE_BYTES` if it is longer
        (callers that judge what they write fit it first: :func:`fit_line`)."""
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        data = line_bytes(record)
        if len(data) > MAX_LINE_BYTES:
            data = line_bytes(fit_line(record))
        data += b"\n"
        view = memoryview(data)
        while view:  # os.write may write less than asked for (signals, full disk)
            n = os.write(self._fd, view)
            view = view[n:]
        self.lines += 1

    def rewrite(self, records: list[Record]) -> None:
        """Replace every line written so far by ``records``, then go on appending. A new
        file is renamed over the old one, so a crash leaves one or the other, whole."""
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        tmp = self.path.with_name(f".{self.path.name}.tmp")  # hidden: readers skip it
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(b"".join(line_bytes(fit_line(r)) + b"\n" for r in records))
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.lines = len(records)

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
