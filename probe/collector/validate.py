"""Validation of an uploaded results file (DESIGN.md "Results file" and "Collector").

Everything here is pure (bytes in, an :class:`Upload` or a :class:`Rejected` out), so the
server stores nothing unless the whole file passed. A body is validated while it streams
in (:class:`Inflater` then :class:`LineValidator`, fed chunk by chunk): every limit holds
before anything is kept, and only the facts the index needs are kept, never the parsed
lines, so memory stays a few lines' worth whatever the body inflates to. Checks:

- transfer: ``Content-Encoding`` is identity or gzip, inflated in bounded pieces; the
  inflated size is bounded as it grows (a gzip bomb is stopped after ``max_bytes``);
- framing: UTF-8 JSON Lines, every line a JSON object, the last line ending in a newline
  (a torn last line is refused: ``voip-probe upload`` removes it before sending); JSON
  that readers disagree on is refused: duplicate keys, numbers out of range (``1e999``
  would be read as infinity, integers beyond 64 bits), ``NaN``/``Infinity``;
- schema: each measurement carries OONI's base fields (df-000) plus ``service``,
  ``function`` and ``schema_version``, with ``test_keys.failure`` present (``null`` or a
  failure string); the last line is the ``"record": "summary"`` line, unless the upload is
  declared partial (a crashed run, which has no summary);
- counts: a bounded number of lines and line length; one ``report_id`` for the whole file;
  the summary's ``measurements`` count (when present) matches the measurement lines.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from probe import SCHEMA_VERSION
from probe.pseudonym import ANNOTATION as PSEUDONYM_ANNOTATION
from probe.pseudonym import PATTERN as PSEUDONYM_PATTERN
from probe.results import MAX_LINE_BYTES

Record = dict[str, Any]

MAX_BYTES_DEFAULT = 16 * 1024 * 1024
MAX_LINES_DEFAULT = 200_000
# A line's limit, MAX_LINE_BYTES, is the results format's (probe.results): the probe's
# writer never writes a longer line, so no censor's junk can get a report refused.
# Inflated output comes in pieces of at most this much (a bomb is cut into pieces too).
PIECE_BYTES = 64 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The summary's per-function counts go into INTEGER columns (32-bit on PostgreSQL).
MAX_COUNT = 2**31 - 1

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Matched with fullmatch: "^...$" would also accept a trailing newline ("MA\n").
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_ASN_RE = re.compile(r"AS\d{1,10}")
_CC_RE = re.compile(r"[A-Z]{2}")
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
# An uploaded file's original name is kept as metadata only (storage is by hash); it
# must be a plain file name, so nothing that looks like a path or control bytes.
_FILENAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
_PSEUDONYM_RE = re.compile(PSEUDONYM_PATTERN)
_SHORT_STR = 256
_REQUIRED = (
    "measurement_start_time", "probe_asn", "probe_cc", "report_id", "software_name",
    "software_version", "input", "test_name", "test_keys", "service", "function",
    "schema_version",
)
_SUMMARY_REQUIRED = (
    "schema_version", "report_id", "measurement_start_time", "probe_asn", "probe_cc",
    "network", "services",
)


class Rejected(Exception):
    """The upload is refused; ``status`` is the HTTP status, ``str(exc)`` the reason."""

    def __init__(self, status: int, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(slots=True)
class Measurement:
    line: int
    record: Record


@dataclass(slots=True)
class Upload:
    """A validated results file: its identity, what the index needs of it, and where its
    bytes are (in memory, ``data``, or a staged file, ``staged``).

    The measurement lines are not kept: :meth:`iter_measurements` reads them again, one
    at a time, so a large file costs one line of memory, not all its parsed records."""

    sha256: str
    report_id: str
    size_bytes: int
    count: int  # measurement lines
    summary: Record | None
    first: Record | None  # the first measurement line
    network_type: str
    pseudonym: str | None  # the first well-formed probe pseudonym annotation
    data: bytes | None = None
    staged: Path | None = None

    @property
    def complete(self) -> bool:
        return self.summary is not None

    def iter_measurements(self) -> Iterator[Measurement]:
        """The measurement lines, parsed again (they passed validation)."""
        for lineno, raw in enumerate(self._lines(), start=1):
            rec = _load_line(raw, lineno)
            if "record" not in rec:
                yield Measurement(lineno, rec)

    @property
    def measurements(self) -> list[Measurement]:
        return list(self.iter_measurements())

    def _lines(self) -> Iterator[bytes]:
        if self.data is not None:  # split on "\n" only, as the validator did ("\r" is
            yield from self.data.split(b"\n")[:-1]  # JSON whitespace inside a line)
        elif self.staged is not None:
            with open(self.staged, "rb") as fh:
                for raw in fh:
                    yield raw.rstrip(b"\n")


class Inflater:
    """Undoes ``Content-Encoding`` piece by piece: each chunk of the body in, pieces of at
    most :data:`PIECE_BYTES` out, so that nothing inflates a whole bomb at once. The
    caller bounds the total (:class:`LineValidator`)."""

    def __init__(self, encoding: str | None) -> None:
        enc = (encoding or "identity").strip().lower()
        if enc not in ("", "identity", "gzip", "x-gzip"):
            raise Rejected(415, f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
        self.gzip = enc in ("gzip", "x-gzip")
        self._d: Any = None  # zlib's decompress object of the current gzip member

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if not self.gzip:
            for at in range(0, len(chunk), PIECE_BYTES):
                yield chunk[at:at + PIECE_BYTES]
            return
        data = chunk
        try:
            while data:
                if self._d is None or self._d.eof:  # a gzip stream may hold several members
                    self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = self._d.decompress(data, PIECE_BYTES)
                if out:
                    yield out
                while len(out) == PIECE_BYTES and not self._d.unconsumed_tail \
                        and not self._d.eof:  # output held back inside zlib
                    out = self._d.decompress(b"", PIECE_BYTES)
                    if out:
                        yield out
                data = self._d.unused_data if self._d.eof else self._d.unconsumed_tail
        except zlib.error as exc:
            raise Rejected(400, f"body is not valid gzip: {exc}") from None

    def finish(self) -> None:
        if self.gzip and self._d is not None and not self._d.eof:
            raise Rejected(400, "gzip body is truncated")


class LineValidator:
    """Validates a results file fed in pieces (inflated bytes), line by line, keeping
    nothing but the facts the index needs: the limits hold before anything is kept.

    ``sink`` receives every accepted byte (the staged file). :meth:`finish` returns the
    :class:`Upload` (without ``data`` or ``staged``: the caller sets where the bytes are)."""

    def __init__(self, *, partial: bool = False, max_bytes: int = MAX_BYTES_DEFAULT,
                 max_lines: int = MAX_LINES_DEFAULT, max_line_bytes: int = MAX_LINE_BYTES,
                 sink: Callable[[bytes], None] | None = None, gzip: bool = False) -> None:
        self.partial = partial
        self.gzip = gzip
        self.max_bytes = max_bytes
        self.max_lines = max_lines
        self.max_line_bytes = max_line_bytes
        self.sink = sink
        self.size = 0
        self._hash = hashlib.sha256()
        self._pending = bytearray()  # the line being received
        self._lines = 0
        self._count = 0
        self._report_id: str | None = None
        self._summary: Record | None = None
        self._first: Record | None = None
        self._first_network: str | None = None
        self._pseudonym: str | None = None

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise Rejected(413, (f"gzip body inflates beyond the limit of {self.max_bytes} "
                                 "bytes") if self.gzip else
                           f"results file larger than the limit of {self.max_bytes} bytes")
        self._hash.update(data)
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._pending:
                self._pending += data[start:end]
                line = bytes(self._pending)
                self._pending.clear()
            else:
                line = data[start:end]
            self._line(line)
            start = end + 1
        rest = len(data) - start
        if len(self._pending) + rest > self.max_line_bytes:
            raise Rejected(413, f"line {self._lines + 1}: longer than "
                                f"{self.max_line_bytes} bytes")
        self._pending += data[start:]
        if self.sink is not None:
            self.sink(data)

    def _line(self, raw: bytes) -> None:
        self._lines += 1
        lineno = self._lines
        if lineno > self.max_lines:
            raise Rejected(413, f"too many lines: more than {self.max_lines} (the limit)")
        if len(raw) > self.max_line_bytes:
            raise Rejected(413, f"line {lineno}: longer than {self.max_line_bytes} bytes")
        if self._summary is not None:
            raise Rejected(422, f"line {lineno - 1}: the summary line must be the last line")
        rec = _load_line(raw, lineno)
        if rec.get("record") == "summary":
            _check_summary(rec, lineno)
            self._summary = rec
        elif "record" in rec:
            raise Rejected(422, f"line {lineno}: unknown record type {rec['record']!r}")
        else:
            _check_measurement(rec, lineno)
            self._count += 1
            self._note_measurement(rec)
        rid = rec["report_id"]
        if self._report_id is None:
            self._report_id = rid
        elif rid != self._report_id:
            raise Rejected(
                422, f"line {lineno}: report_id {rid!r} differs from line 1 "
                     f"({self._report_id!r})"
            )

    def _note_measurement(self, rec: Record) -> None:
        if self._first is None:
            self._first = {k: rec.get(k) for k in _FIRST_KEYS}
        ann = rec.get("annotations")
        if not isinstance(ann, dict):
            return
        value = ann.get("network_type")
        if self._first_network is None and isinstance(value, str) and value \
                and _storable(value):
            self._first_network = value[:32]
        value = ann.get(PSEUDONYM_ANNOTATION)
        if self._pseudonym is None and isinstance(value, str) \
                and _PSEUDONYM_RE.fullmatch(value):
            self._pseudonym = value

    def finish(self) -> Upload:
        if self.size == 0:
            raise Rejected(400, "empty body: expected a results file (JSON Lines)")
        if self._pending:
            raise Rejected(
                400,
                "torn last line: the file does not end with a newline (a crashed run's "
                "file must be sent without its torn last line; voip-probe upload does this)",
            )
        summary = self._summary
        if summary is None and not self.partial:
            raise Rejected(
                422,
                'the last line is not the "record": "summary" line (a truncated file?); '
                "a crashed run's file is accepted only as a partial upload (?partial=true)",
            )
        if summary is not None and "measurements" in summary:
            declared = summary["measurements"]
            if type(declared) is not int or declared != self._count:
                raise Rejected(
                    422,
                    f"line {self._lines}: the summary counts {declared!r} measurements but "
                    f"the file holds {self._count} (lines lost or added?)",
                )
        if summary is None and not self._count:
            raise Rejected(422, "partial upload without any measurement")
        network = "unknown"
        stated = summary.get("network", {}).get("type") if summary is not None else None
        if isinstance(stated, str) and stated:
            network = stated[:32]
        elif self._first_network is not None:
            network = self._first_network
        return Upload(sha256=self._hash.hexdigest(), report_id=self._report_id or "",
                      size_bytes=self.size, count=self._count, summary=summary,
                      first=self._first, network_type=network, pseudonym=self._pseudonym)


_FIRST_KEYS = ("measurement_start_time", "probe_asn", "probe_cc", "software_name",
               "software_version")


def inflate(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding`` of a whole body; stop as soon as the output would exceed
    ``max_bytes``."""
    inflater = Inflater(encoding)
    out = bytearray()
    for piece in inflater.feed(body):
        out += piece
        if len(out) > max_bytes:
            if inflater.gzip:
                raise Rejected(413, f"gzip body inflates beyond the limit of {max_bytes} "
                                    "bytes")
            raise Rejected(413, f"results file larger than the limit of {max_bytes} bytes")
    inflater.finish()
    return bytes(out)


def check_filename(name: str | None) -> str | None:
    """Return a safe original file name, or raise :class:`Rejected`."""
    if name is None or name == "":
        return None
    if not _FILENAME_RE.fullmatch(name) or ".." in name:
        raise Rejected(
            400,
            "filename must be a plain file name (letters, digits, '.', '_', '+', '-'; "
            "at most 200 characters; no path)",
        )
    return name


def parse_upload(
    data: bytes, *, partial: bool = False, max_lines: int = MAX_LINES_DEFAULT,
    max_bytes: int | None = None,
) -> Upload:
    """Validate a whole (inflated) results file held in memory; raise :class:`Rejected`
    on any fault."""
    validator = LineValidator(partial=partial, max_lines=max_lines,
                              max_bytes=len(data) if max_bytes is None else max_bytes)
    validator.feed(data)
    upload = validator.finish()
    upload.data = data
    return upload


def _load_line(raw: bytes, lineno: int) -> Record:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(
            400, f"line {lineno}: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    if not text.strip():
        raise Rejected(400, f"line {lineno}: empty line")
    try:
        rec = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                         parse_int=_int64, object_pairs_hook=_unique_keys)
    except _BadValue as exc:
        raise Rejected(400, f"line {lineno}: {exc}") from None
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise Rejected(400, f"line {lineno}: not valid JSON ({exc})") from None
    if not isinstance(rec, dict):
        raise Rejected(422, f"line {lineno}: not a JSON object")
    return rec


def _storable(value: str) -> bool:
    """Text a database can index: no NUL (PostgreSQL refuses it), no lone surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _BadValue(ValueError):
    """Valid JSON syntax that readers disagree on, refused with its own reason."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """A JSON number as a float; one too large for a double (``1e999``) would be read as
    infinity and written back as ``Infinity``, which is not JSON."""
    value = float(text)
    if not math.isfinite(value):
        raise _BadValue(f"number {text[:40]} is out of range (not a finite double)")
    return value


def _int64(text: str) -> int:
    """A JSON integer within a signed 64-bit range: what databases and most JSON readers
    hold exactly (Python's own ints are unbounded)."""
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise _BadValue(f"integer {text[:40]} is out of range (signed 64-bit)")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> Record:
    """An object without duplicate keys: readers disagree on which value of a duplicate
    counts (Python keeps the last, others the first), so the stored file and its index
    could say different things."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _BadValue(f"duplicate key {key[:64]!r} in a JSON object")
            seen.add(key)
    return obj


def _str(rec: Record, key: str, lineno: int, *, nullable: bool = False,
         limit: int = _SHORT_STR) -> None:
    value = rec.get(key)
    if value is None and nullable:
        return
    if not isinstance(value, str) or not value or len(value) > limit:
        what = "a string or null" if nullable else "a non-empty string"
        raise Rejected(422, f"line {lineno}: {key!r} must be {what} (at most {limit} chars)")
    if not _storable(value):
        raise Rejected(422, f"line {lineno}: {key!r} holds a NUL character or invalid Unicode")


def _time(rec: Record, lineno: int) -> None:
    value = rec.get("measurement_start_time")
    ok = isinstance(value, str) and _TIME_RE.fullmatch(value)
    if ok:
        try:
            datetime.strptime(value, TIME_FORMAT)  # type: ignore[arg-type]
        except ValueError:
            ok = False
    if not ok:
        raise Rejected(
            422, f"line {lineno}: 'measurement_start_time' must be UTC 'YYYY-MM-DD HH:MM:SS'"
        )


def _common(rec: Record, lineno: int) -> None:
    _time(rec, lineno)
    if not isinstance(rec.get("probe_asn"), str) or not _ASN_RE.fullmatch(rec["probe_asn"]):
        raise Rejected(422, f"line {lineno}: 'probe_asn' must look like 'AS1234'")
    if not isinstance(rec.get("probe_cc"), str) or not _CC_RE.fullmatch(rec["probe_cc"]):
        raise Rejected(422, f"line {lineno}: 'probe_cc' must be a two-letter country code")
    _str(rec, "report_id", lineno)
    version = rec.get("schema_version")
    if type(version) is not int or not 1 <= version <= SCHEMA_VERSION:
        raise Rejected(
            422, f"line {lineno}: 'schema_version' must be an integer 1..{SCHEMA_VERSION}"
        )


def _check_measurement(rec: Record, lineno: int) -> None:
    missing = [k for k in _REQUIRED if k not in rec]
    if missing:
        raise Rejected(422, f"line {lineno}: missing field(s) {', '.join(missing)}")
    _common(rec, lineno)
    for key in ("software_name", "software_version", "test_name"):
        _str(rec, key, lineno)
    _str(rec, "input", lineno, nullable=True, limit=2048)
    for key in ("service", "function"):
        value = rec.get(key)
        if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
            raise Rejected(422, f"line {lineno}: {key!r} must be a short lower-case name")
    keys = rec["test_keys"]
    if not isinstance(keys, dict):
        raise Rejected(422, f"line {lineno}: 'test_keys' must be an object")
    if "failure" not in keys:
        raise Rejected(422, f"line {lineno}: 'test_keys' has no 'failure' key")
    failure = keys["failure"]
    if failure is not None and (not isinstance(failure, str) or not failure
                                or len(failure) > _SHORT_STR or not _storable(failure)):
        raise Rejected(422, f"line {lineno}: 'test_keys.failure' must be null or a string")
    runtime = rec.get("test_runtime")
    if runtime is not None and (isinstance(runtime, bool)
                                or not isinstance(runtime, int | float) or runtime < 0):
        raise Rejected(422, f"line {lineno}: 'test_runtime' must be a non-negative number")
    if "annotations" in rec and not isinstance(rec["annotations"], dict):
        raise Rejected(422, f"line {lineno}: 'annotations' must be an object")


def _check_summary(rec: Record, lineno: int) -> None:
    missing = [k for k in _SUMMARY_REQUIRED if k not in rec]
    if missing:
        raise Rejected(422, f"line {lineno}: summary line misses field(s) {', '.join(missing)}")
    _common(rec, lineno)
    network = rec["network"]
    if not isinstance(network, dict):
        raise Rejected(422, f"line {lineno}: summary 'network' must be an object")
    for key in ("status", "type"):
        value = network.get(key)
        if value is not None and (not isinstance(value, str) or not _storable(value)):
            raise Rejected(422, f"line {lineno}: summary 'network.{key}' must be a string")
    services = rec["services"]
    if not isinstance(services, dict):
        raise Rejected(422, f"line {lineno}: summary 'services' must be an object")
    for name, svc in services.items():
        where = f"line {lineno}: summary service {name!r}"
        if not _NAME_RE.fullmatch(name) or not isinstance(svc, dict):
            raise Rejected(422, f"{where}: must be a short name mapped to an object")
        functions = svc.get("functions", {})
        if not isinstance(functions, dict):
            raise Rejected(422, f"{where}: 'functions' must be an object")
        for fname, fn in functions.items():
            if not _NAME_RE.fullmatch(fname) or not isinstance(fn, dict):
                raise Rejected(422, f"{where}: function {fname!r} must map to an object")
            if not isinstance(fn.get("status"), str) or not _storable(fn["status"]):
                raise Rejected(422, f"{where}: function {fname!r} has no 'status' string")
            methods = fn.get("methods", [])
            if not isinstance(methods, list) or not all(
                    isinstance(m, str) and _storable(m) for m in methods):
                raise Rejected(422, f"{where}: function {fname!r}: 'methods' must be strings")
            for count in ("reachable", "total"):
                value = fn.get(count, 0)
                if type(value) is not int or not 0 <= value <= MAX_COUNT:
                    raise Rejected(
                        422, f"{where}: function {fname!r}: {count!r} must be an integer >= 0 "
                             f"and at most {MAX_COUNT}"
                    )


def network_type(upload: Upload) -> str:
    """The access type (mobile, fixed, ...) of the run, ``unknown`` when not stated."""
    return upload.network_type
