"""Validation of an uploaded results file (DESIGN.md "Results file" and "Collector").

Everything here is pure (bytes in, a parsed :class:`Upload` or an :class:`Rejected` out),
so the server stores nothing unless the whole file passed. Checks, in order:

- transfer: ``Content-Encoding`` is identity or gzip; the inflated size is bounded while
  inflating (a gzip bomb is stopped after ``max_bytes``, never inflated in full);
- framing: UTF-8 JSON Lines, every line a JSON object, the last line ending in a newline
  (a torn last line is refused: ``voip-probe upload`` removes it before sending);
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
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from probe import SCHEMA_VERSION
from probe.results import MAX_LINE_BYTES

Record = dict[str, Any]

MAX_BYTES_DEFAULT = 32 * 1024 * 1024
MAX_LINES_DEFAULT = 200_000
# A line's limit, MAX_LINE_BYTES, is the results format's (probe.results): the probe's
# writer never writes a longer line, so no censor's junk can get a report refused.

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_ASN_RE = re.compile(r"^AS\d{1,10}$")
_CC_RE = re.compile(r"^[A-Z]{2}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# An uploaded file's original name is kept as metadata only (storage is by hash); it
# must be a plain file name, so nothing that looks like a path or control bytes.
_FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
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

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Measurement:
    line: int
    record: Record


@dataclass(slots=True)
class Upload:
    """A validated results file: raw bytes, identity and parsed lines."""

    data: bytes
    sha256: str
    report_id: str
    measurements: list[Measurement] = field(default_factory=list)
    summary: Record | None = None

    @property
    def complete(self) -> bool:
        return self.summary is not None


def inflate(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding``; stop as soon as the output would exceed ``max_bytes``."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        if len(body) > max_bytes:
            raise Rejected(413, f"results file larger than the limit of {max_bytes} bytes")
        return body
    if enc not in ("gzip", "x-gzip"):
        raise Rejected(415, f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
    out = bytearray()
    data = body
    while data:  # a gzip stream may hold several members
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = d.decompress(data, max_bytes + 1 - len(out))
            out += chunk
            while d.unconsumed_tail and len(out) <= max_bytes:
                out += d.decompress(d.unconsumed_tail, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                raise Rejected(
                    413, f"gzip body inflates beyond the limit of {max_bytes} bytes"
                )
            out += d.flush()
        except zlib.error as exc:
            raise Rejected(400, f"body is not valid gzip: {exc}") from None
        if not d.eof:
            raise Rejected(400, "gzip body is truncated")
        data = d.unused_data
    if len(out) > max_bytes:
        raise Rejected(413, f"gzip body inflates beyond the limit of {max_bytes} bytes")
    return bytes(out)


def check_filename(name: str | None) -> str | None:
    """Return a safe original file name, or raise :class:`Rejected`."""
    if name is None or name == "":
        return None
    if not _FILENAME_RE.match(name) or ".." in name:
        raise Rejected(
            400,
            "filename must be a plain file name (letters, digits, '.', '_', '+', '-'; "
            "at most 200 characters; no path)",
        )
    return name


def parse_upload(
    data: bytes, *, partial: bool = False, max_lines: int = MAX_LINES_DEFAULT
) -> Upload:
    """Validate a whole (inflated) results file; raise :class:`Rejected` on any fault."""
    if not data:
        raise Rejected(400, "empty body: expected a results file (JSON Lines)")
    if not data.endswith(b"\n"):
        raise Rejected(
            400,
            "torn last line: the file does not end with a newline (a crashed run's file "
            "must be sent without its torn last line; voip-probe upload does this)",
        )
    lines = data.split(b"\n")[:-1]
    if len(lines) > max_lines:
        raise Rejected(413, f"too many lines: {len(lines)} (limit {max_lines})")
    upload = Upload(data=data, sha256=hashlib.sha256(data).hexdigest(), report_id="")
    report_id: str | None = None
    for index, raw in enumerate(lines):
        lineno = index + 1
        rec = _load_line(raw, lineno)
        is_last = lineno == len(lines)
        if rec.get("record") == "summary":
            if not is_last:
                raise Rejected(422, f"line {lineno}: the summary line must be the last line")
            _check_summary(rec, lineno)
            upload.summary = rec
        elif "record" in rec:
            raise Rejected(422, f"line {lineno}: unknown record type {rec['record']!r}")
        else:
            _check_measurement(rec, lineno)
            upload.measurements.append(Measurement(lineno, rec))
        rid = rec["report_id"]
        if report_id is None:
            report_id = rid
        elif rid != report_id:
            raise Rejected(
                422, f"line {lineno}: report_id {rid!r} differs from line 1 ({report_id!r})"
            )
    if upload.summary is None and not partial:
        raise Rejected(
            422,
            'the last line is not the "record": "summary" line (a truncated file?); '
            "a crashed run's file is accepted only as a partial upload (?partial=true)",
        )
    if upload.summary is not None and "measurements" in upload.summary:
        declared = upload.summary["measurements"]
        if type(declared) is not int or declared != len(upload.measurements):
            raise Rejected(
                422,
                f"line {len(lines)}: the summary counts {declared!r} measurements but the "
                f"file holds {len(upload.measurements)} (lines lost or added?)",
            )
    if upload.summary is None and not upload.measurements:
        raise Rejected(422, "partial upload without any measurement")
    upload.report_id = report_id or ""
    return upload


def _load_line(raw: bytes, lineno: int) -> Record:
    if len(raw) > MAX_LINE_BYTES:
        raise Rejected(413, f"line {lineno}: longer than {MAX_LINE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(
            400, f"line {lineno}: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    if not text.strip():
        raise Rejected(400, f"line {lineno}: empty line")
    try:
        rec = json.loads(text, parse_constant=_no_constant)
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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


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
    ok = isinstance(value, str) and _TIME_RE.match(value)
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
    if not isinstance(rec.get("probe_asn"), str) or not _ASN_RE.match(rec["probe_asn"]):
        raise Rejected(422, f"line {lineno}: 'probe_asn' must look like 'AS1234'")
    if not isinstance(rec.get("probe_cc"), str) or not _CC_RE.match(rec["probe_cc"]):
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
        if not isinstance(value, str) or not _NAME_RE.match(value):
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
        if not _NAME_RE.match(name) or not isinstance(svc, dict):
            raise Rejected(422, f"{where}: must be a short name mapped to an object")
        functions = svc.get("functions", {})
        if not isinstance(functions, dict):
            raise Rejected(422, f"{where}: 'functions' must be an object")
        for fname, fn in functions.items():
            if not _NAME_RE.match(fname) or not isinstance(fn, dict):
                raise Rejected(422, f"{where}: function {fname!r} must map to an object")
            if not isinstance(fn.get("status"), str) or not _storable(fn["status"]):
                raise Rejected(422, f"{where}: function {fname!r} has no 'status' string")
            methods = fn.get("methods", [])
            if not isinstance(methods, list) or not all(
                    isinstance(m, str) and _storable(m) for m in methods):
                raise Rejected(422, f"{where}: function {fname!r}: 'methods' must be strings")
            for count in ("reachable", "total"):
                value = fn.get(count, 0)
                if type(value) is not int or value < 0:
                    raise Rejected(
                        422, f"{where}: function {fname!r}: {count!r} must be an integer >= 0"
                    )


def network_type(upload: Upload) -> str:
    """The access type (mobile, fixed, ...) of the run, ``unknown`` when not stated."""
    if upload.summary is not None:
        value = upload.summary.get("network", {}).get("type")
        if isinstance(value, str) and value:
            return value[:32]
    for m in upload.measurements:
        ann = m.record.get("annotations")
        value = ann.get("network_type") if isinstance(ann, dict) else None
        if isinstance(value, str) and value and _storable(value):
            return value[:32]
    return "unknown"
