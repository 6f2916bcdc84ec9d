"""Unit tests of the collector's validation of results files (probe.collector.validate)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from probe.collector.validate import (
    MAX_LINE_BYTES,
    PIECE_BYTES,
    Inflater,
    LineValidator,
    Rejected,
    check_filename,
    inflate,
    network_type,
    parse_upload,
)
from tests.helpers.collector_files import measurement, summary


def jsonl(*records: dict[str, Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def good(rid: str = "r1", n: int = 2) -> bytes:
    return jsonl(*[measurement(rid) for _ in range(n)], summary(rid))


def rejected(data: bytes, status: int, words: str, **kw: Any) -> Rejected:
    with pytest.raises(Rejected) as info:
        parse_upload(data, **kw)
    assert info.value.status == status, info.value.message
    assert words in info.value.message
    return info.value


def test_a_file_written_by_the_probe_writer_is_accepted(make_results: Any) -> None:
    data = Path(make_results(4)).read_bytes()
    up = parse_upload(data)
    assert up.sha256 == hashlib.sha256(data).hexdigest()
    assert [m.line for m in up.measurements] == [1, 2, 3, 4]
    assert up.summary is not None and up.complete
    assert network_type(up) == "mobile"


def test_torn_last_line_is_refused(make_results: Any) -> None:
    data = Path(make_results(2, torn=True)).read_bytes()
    rejected(data, 400, "torn last line")


def test_missing_summary_needs_partial(make_results: Any) -> None:
    data = Path(make_results(2, with_summary=False)).read_bytes()
    rejected(data, 422, "not the \"record\": \"summary\" line")
    up = parse_upload(data, partial=True)
    assert not up.complete and len(up.measurements) == 2


def test_summary_must_be_last() -> None:
    data = jsonl(measurement("r"), summary("r"), measurement("r"))
    rejected(data, 422, "line 2: the summary line must be the last line")


@pytest.mark.parametrize("field", [
    "measurement_start_time", "probe_asn", "probe_cc", "report_id", "software_name",
    "software_version", "input", "test_name", "test_keys", "service", "function",
    "schema_version",
])
def test_each_required_field_is_required(field: str) -> None:
    m = measurement("r")
    del m[field]
    rejected(jsonl(measurement("r"), m, summary("r")), 422, f"line 2: missing field(s) {field}")


def test_failure_key_must_be_present() -> None:
    m = measurement("r")
    m["test_keys"] = {"status": 1}
    rejected(jsonl(m, summary("r")), 422, "no 'failure' key")


@pytest.mark.parametrize(("field", "value", "words"), [
    ("measurement_start_time", "2016-11-04T09:30:00Z", "measurement_start_time"),
    ("measurement_start_time", "2016-13-40 09:30:00", "measurement_start_time"),
    ("probe_asn", "36903", "probe_asn"),
    ("probe_cc", "Morocco", "probe_cc"),
    ("schema_version", 99, "schema_version"),
    ("schema_version", True, "schema_version"),
    ("service", "../etc", "service"),
    ("test_keys", [], "test_keys"),
    ("report_id", "", "report_id"),
    ("test_runtime", -1, "test_runtime"),
])
def test_wrong_types_are_refused(field: str, value: Any, words: str) -> None:
    m = measurement("r")
    m[field] = value
    rejected(jsonl(m, summary("r")), 422, words)


def test_summary_schema() -> None:
    s = summary("r")
    s["services"] = {"whatsapp": {"functions": {"calls": {"status": "blocked", "total": -1}}}}
    rejected(jsonl(measurement("r"), s), 422, "'total' must be an integer >= 0")
    s = summary("r")
    del s["network"]
    rejected(jsonl(measurement("r"), s), 422, "summary line misses field(s) network")


def test_one_report_id_per_file() -> None:
    rejected(jsonl(measurement("a"), measurement("b"), summary("a")), 422,
             "line 2: report_id 'b' differs")


@pytest.mark.parametrize(("data", "status", "words"), [
    (b"", 400, "empty body"),
    (b"hello world\n", 400, "line 1: not valid JSON"),
    (b'{"a": NaN}\n', 400, "line 1: not valid JSON"),
    (b"[1, 2]\n", 422, "line 1: not a JSON object"),
    (b"\xff\xfe\n", 400, "line 1: not UTF-8"),
    (b"\n", 400, "line 1: empty line"),
    (b"[" * 100_000 + b"\n", 400, "line 1: not valid JSON"),
    (b'{"record": "other"}\n', 422, "unknown record type"),
])
def test_malformed_bodies(data: bytes, status: int, words: str) -> None:
    rejected(data, status, words)


def test_line_count_and_length_limits() -> None:
    rejected(good(n=5), 413, "too many lines", max_lines=3)
    m = measurement("r")
    m["test_keys"]["blob"] = "x" * MAX_LINE_BYTES
    rejected(jsonl(m, summary("r")), 413, "line 1: longer than")


def test_inflate_gzip_and_limits() -> None:
    data = good()
    assert inflate(gzip.compress(data), "gzip", 10_000) == data
    assert inflate(data, None, 10_000) == data
    # two gzip members concatenated are one stream (RFC 1952)
    assert inflate(gzip.compress(data[:10]) + gzip.compress(data[10:]), "gzip", 10_000) == data
    with pytest.raises(Rejected) as info:
        inflate(data, "identity", 10)
    assert info.value.status == 413


def test_gzip_bomb_is_stopped_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    with pytest.raises(Rejected) as info:
        inflate(bomb, "gzip", 1024 * 1024)
    assert info.value.status == 413 and "inflates beyond" in info.value.message


@pytest.mark.parametrize(("body", "words"), [
    (b"not gzip at all", "not valid gzip"),
    (gzip.compress(b"x" * 1000, mtime=0)[:-12], "truncated"),
], ids=["not-gzip", "truncated"])
def test_broken_gzip(body: bytes, words: str) -> None:
    with pytest.raises(Rejected) as info:
        inflate(body, "gzip", 1 << 20)
    assert info.value.status == 400 and words in info.value.message


def test_unknown_encoding() -> None:
    with pytest.raises(Rejected) as info:
        inflate(b"x", "br", 100)
    assert info.value.status == 415


@pytest.mark.parametrize("name", [
    "../../etc/passwd", "/abs.jsonl", "a/b.jsonl", ".hidden", "nul\0.jsonl", "x" * 201,
    "spaces in name.jsonl", "new\nline.jsonl", "ünïcode.jsonl", "a..b",
])
def test_odd_filenames_are_refused(name: str) -> None:
    with pytest.raises(Rejected) as info:
        check_filename(name)
    assert info.value.status == 400


def test_plain_filenames_are_kept() -> None:
    name = "20161104T093000Z_AS36903_mobile_ab12cd.jsonl"
    assert check_filename(name) == name
    assert check_filename(None) is None


def test_summary_count_must_match_the_lines() -> None:
    s = summary("r")
    s["measurements"] = 3
    rejected(jsonl(measurement("r"), measurement("r"), s), 422,
             "the summary counts 3 measurements but the file holds 2")
    s["measurements"] = 2
    assert len(parse_upload(jsonl(measurement("r"), measurement("r"), s)).measurements) == 2


def test_streamed_in_any_chunking_gives_the_same_upload() -> None:
    """Chunks of any size (one byte, across gzip members and line ends) validate to the
    same upload as the whole body, in pieces never larger than PIECE_BYTES."""
    data = good(n=300)
    body = gzip.compress(data[:1000]) + gzip.compress(data[1000:])
    whole = parse_upload(data)
    for size in (1, 7, 4096, len(body)):
        inflater = Inflater("gzip")
        validator = LineValidator(max_bytes=len(data), gzip=True)
        for at in range(0, len(body), size):
            for piece in inflater.feed(body[at:at + size]):
                assert len(piece) <= PIECE_BYTES
                validator.feed(piece)
        inflater.finish()
        up = validator.finish()
        assert (up.sha256, up.count, up.size_bytes, up.summary) == (
            whole.sha256, whole.count, whole.size_bytes, whole.summary)


def test_a_bomb_inflates_in_bounded_pieces() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    pieces = Inflater("gzip").feed(bomb)
    first = [next(pieces) for _ in range(3)]
    assert all(len(p) == PIECE_BYTES for p in first)  # nothing inflated in one go


@pytest.mark.parametrize(("value", "words"), [
    ("MA\n", "probe_cc"), ("AS36903\n", "probe_asn"), ("whatsapp\n", "service"),
    ("2016-11-04 09:30:00\n", "measurement_start_time"),
])
def test_patterns_refuse_a_trailing_newline(value: str, words: str) -> None:
    m = measurement("r")
    m[words] = value
    rejected(jsonl(m, summary("r")), 422, words)


def test_filename_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(Rejected):
        check_filename("run.jsonl\n")


def test_carriage_returns_inside_a_line_read_back_the_same() -> None:
    """"\r" is JSON whitespace: a line holding one is one line when it is read again for
    the index, from memory as from the staged file."""
    m = json.dumps(measurement("r")).replace(', "probe_cc"', ',\r"probe_cc"')
    data = (m + "\r\n").encode() + jsonl(summary("r"))
    up = parse_upload(data)
    assert [x.record["probe_cc"] for x in up.measurements] == ["MA"]
