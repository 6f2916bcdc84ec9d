"""Reading a run's summary line from the end of its results file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from probe.analysis.summaries import load_summary
from probe.results import ResultsError
from tests.helpers.results_factory import OK, write_run

T0 = "2016-11-04 09:30:00"


def test_summary_longer_than_the_tail_block(tmp_path: Path) -> None:
    spec = {(f"service{i}", fn): OK for i in range(400)
            for fn in ("dns", "messaging", "calls")}
    path = write_run(tmp_path, T0, spec, measurements_per_function=1)
    assert len(path.read_bytes().splitlines()[-1]) > 64 * 1024
    warnings: list[str] = []
    summary = load_summary(path, warnings.append)
    assert summary is not None and warnings == []
    assert len(list(summary.functions())) == 1200


def test_summary_without_newline_is_kept_with_a_warning(tmp_path: Path) -> None:
    path = write_run(tmp_path, T0, {("whatsapp", "calls"): OK})
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    warnings: list[str] = []
    summary = load_summary(path, warnings.append)
    assert summary is not None and summary.start == T0
    assert warnings and "no newline" in warnings[0]


def test_single_line_file_and_blank_tail(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"record": "summary", "measurement_start_time": T0,
                                "network": {"asn": "AS1", "type": "fixed"},
                                "services": {}}) + "\n\n\n")
    summary = load_summary(path, lambda m: None)
    assert summary is not None and (summary.asn, summary.network_type) == ("AS1", "fixed")


def test_malformed_summary_is_reported(tmp_path: Path, monkeypatch) -> None:
    import sys
    import types

    monkeypatch.setitem(sys.modules, "probe.verdicts", types.ModuleType("probe.verdicts"))
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"record": "summary", "services": [1, 2]}) + "\n")
    warnings: list[str] = []
    assert load_summary(path, warnings.append) is None
    assert "has no 'services' object" in warnings[0]


def test_truncated_gzip_and_empty_file(tmp_path: Path, monkeypatch) -> None:
    import sys
    import types

    monkeypatch.setitem(sys.modules, "probe.verdicts", types.ModuleType("probe.verdicts"))
    good = write_run(tmp_path, T0, {("whatsapp", "calls"): OK}, compress=True)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(good.read_bytes()[:-30])
    warnings: list[str] = []
    assert load_summary(good, warnings.append) is not None
    assert load_summary(cut, warnings.append) is None  # its summary line is gone
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert load_summary(empty, warnings.append) is None
    assert gzip.decompress(good.read_bytes()).endswith(b"}\n")
    with pytest.raises(ResultsError, match="no such results file"):
        load_summary(tmp_path / "missing.jsonl", warnings.append)


def test_a_file_that_is_not_results_is_skipped(tmp_path: Path, monkeypatch) -> None:
    import sys
    import types

    calls: list[int] = []
    fake = types.ModuleType("probe.verdicts")
    fake.summarize = lambda records: calls.append(1)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "probe.verdicts", fake)
    path = tmp_path / "other.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n')
    warnings: list[str] = []
    assert load_summary(path, warnings.append) is None
    assert calls == [] and "not a results file" in warnings[0]


def test_summarize_failing_on_one_file_is_a_warning(tmp_path: Path, monkeypatch) -> None:
    import sys
    import types

    def summarize(records):
        raise KeyError("test_keys")

    fake = types.ModuleType("probe.verdicts")
    fake.summarize = summarize  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "probe.verdicts", fake)
    path = write_run(tmp_path, T0, {("whatsapp", "calls"): OK}, crashed=True)
    warnings: list[str] = []
    assert load_summary(path, warnings.append) is None
    assert any("could not be summarized" in w and "KeyError" in w for w in warnings)
