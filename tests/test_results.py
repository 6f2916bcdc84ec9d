"""Results files: crash safety (SIGKILL mid-run) and the tolerant reader."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probe.results import ResultsError, ResultsWriter, expand_paths, iter_records, read_results
from tests.helpers.dnsserver import LoopbackDnsServer, zone_handler


def test_writer_and_reader_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path) as w:
        w.write({"a": 1, "text": "é"})
        w.write({"record": "summary", "services": {}})
    rf = read_results(path)
    assert rf.measurements == [{"a": 1, "text": "é"}]
    assert rf.summary == {"record": "summary", "services": {}}
    assert rf.warnings == [] and rf.complete


def test_writer_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("{}\n")
    with pytest.raises(FileExistsError):
        ResultsWriter(path)


def test_reader_skips_a_torn_last_line_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"n": 1}\n{"n": 2}\n{"n": 3, "test_ke')
    rf = read_results(path)
    assert [m["n"] for m in rf.measurements] == [2 - 1, 2]
    assert len(rf.warnings) == 1 and "r.jsonl:3: skipped torn last line" in rf.warnings[0]
    assert not rf.complete


def test_reader_reports_bad_middle_lines_and_reads_gzip(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write('{"n": 1}\nnot json\n[1, 2]\n{"n": 2}\n')
    warnings: list[str] = []
    assert [r["n"] for r in iter_records(path, warnings.append)] == [1, 2]
    assert [w.split(": ", 1)[0] for w in warnings] == [f"{path}:2", f"{path}:3"]
    with pytest.raises(ResultsError):
        list(iter_records(tmp_path / "missing.jsonl"))


def test_sigkill_mid_run_keeps_every_completed_measurement(tmp_path: Path) -> None:
    """Kill a real `voip-probe run` while some checks are still waiting; every line that
    was completed is there and valid, and a torn tail is reported, not fatal."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fast = [f"fast{i}.test" for i in range(5)]
    zone = {h: ["127.0.0.1"] for h in fast}
    targets = tmp_path / "t.toml"
    hosts = ", ".join(f'"{h}"' for h in [*fast, "slow.test"])
    targets.write_text(f'[service]\nid = "t"\n[[endpoints]]\nfunction = "messaging"\n'
                       f'check = "tcp"\nhosts = [{hosts}]\nports = [{port}]\n'
                       'expected_networks = ["127.0.0.0/8"]\n')  # loopback, a bogon
    out = tmp_path / "results"
    with LoopbackDnsServer(zone_handler(zone, {"slow.test": "silent"})) as dns:
        proc = subprocess.Popen(
            [sys.executable, "-m", "probe", "run", "--targets", str(targets), "--resolver",
             dns.resolver, "--timeout", "30", "--output", str(out), "--network-type", "fixed"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            files: list[Path] = []
            while time.monotonic() < deadline:
                files = list(out.glob("*.jsonl"))
                if files and files[0].read_bytes().count(b"\n") >= 10:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the run ended before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        finally:
            if proc.poll() is None:
                proc.kill()
            listener.close()
    assert len(files) == 1 and files[0].name.endswith(".jsonl") and "_AS0_fixed_" in files[0].name
    rf = read_results(files[0])
    # 5 fast hosts: a dns and a tcp measurement each, all complete; the slow ones never came.
    assert len(rf.measurements) == 10 and rf.summary is None and rf.warnings == []
    assert {(m["test_name"], m["test_keys"]["failure"]) for m in rf.measurements} == {
        ("dns", None), ("tcp", None)}
    # A kill during a write (or a power cut) leaves a torn tail: the reader reports it.
    with open(files[0], "a") as fh:
        fh.write('{"schema_version": 1, "test_keys": {"fail')
    again = read_results(files[0])
    assert len(again.measurements) == 10
    assert len(again.warnings) == 1 and "torn last line" in again.warnings[0]
    json.dumps(again.measurements)  # everything kept is plain JSON


def test_ctrl_c_mid_run_still_writes_the_summary_line(tmp_path: Path) -> None:
    targets = tmp_path / "t.toml"
    targets.write_text('[service]\nid = "t"\n[[endpoints]]\nfunction = "messaging"\n'
                       'check = "tcp"\nhosts = ["slow.test"]\nports = [443]\n')
    out = tmp_path / "results"
    with LoopbackDnsServer(zone_handler({}, {"slow.test": "silent"})) as dns:
        proc = subprocess.Popen(
            [sys.executable, "-m", "probe", "run", "--targets", str(targets), "--resolver",
             dns.resolver, "--timeout", "30", "--output", str(out), "--network-type", "wifi"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        # Wait for the measurements' own queries (the identity lookup asks the resolver too).
        while time.monotonic() < deadline and \
                sum(1 for name, _ in dns.queries if name == "slow.test") < 2:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    (path,) = out.glob("*.jsonl")
    rf = read_results(path)
    assert rf.summary is not None and rf.summary["interrupted"] is True
    assert "interrupted" in err and str(path) in err


# Which files a folder argument of compare/timeline/report/upload stands for.
def test_folders_are_searched_but_hidden_parts_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / ".data"  # a hidden folder given explicitly is searched
    for rel in ("a.jsonl", "sub/b.jsonl.gz", ".runs/1/c.jsonl", "sub/.d.jsonl", "notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("{}\n")
    got = [f.relative_to(root).as_posix() for f in expand_paths([root])]
    assert got == ["a.jsonl", "sub/b.jsonl.gz"]
    hidden = root / ".runs" / "1" / "c.jsonl"
    assert expand_paths([hidden]) == [hidden]  # a file named directly is always taken
    with pytest.raises(ResultsError, match="no such file or folder"):
        expand_paths([tmp_path / "missing"])


def test_note_event_keeps_the_first_few_and_the_latest_and_counts_all() -> None:
    from probe.results import KEEP_EVENTS, Events, note_event

    record: dict[str, object] = {"ignored": []}
    for i in range(3):
        note_event(record, "ignored", i)
    assert record == {"ignored": [0, 1, 2]}  # under the cap: as before, no count
    for i in range(3, 1000):
        note_event(record, "ignored", i)
    assert record["ignored"] == [*range(KEEP_EVENTS - 1), 999]
    assert record["ignored_total"] == 1000
    events = Events()
    for i in range(20):
        events.add(i)
    assert events.to_json("received") == {"received": [*range(KEEP_EVENTS - 1), 19],
                                          "received_total": 20}


def test_no_line_outgrows_the_collectors_limit(tmp_path: Path) -> None:
    from probe.collector.validate import parse_upload
    from probe.results import KEEP_EVENTS, MAX_LINE_BYTES, fit_line, line_bytes

    base = {"schema_version": 1, "report_id": "r", "test_name": "dns"}
    small = {**base, "test_keys": {"failure": None, "queries": [1, 2]}}
    assert fit_line(small) is small  # what fits is written as it is
    flood = {**base, "test_keys": {"failure": "dns_server_misbehaving", "queries": [
        {"hostname": "a.test", "ignored_replies": [{"reason": "x", "num_bytes": 48}] * 40_000}]}}
    blob = {**base, "test_keys": {"failure": None, "reason": "x" * (3 * MAX_LINE_BYTES)}}
    wide = {**base, "test_keys": {"failure": "f", "failed_operation": "stun", **{
        f"k{i}": {"n": i} for i in range(100_000)}}}
    for big in (flood, blob, wide):
        size = len(line_bytes(big))
        assert size > MAX_LINE_BYTES
        cut = fit_line(big)
        assert len(line_bytes(cut)) <= MAX_LINE_BYTES
        assert cut["test_keys"]["failure"] == big["test_keys"]["failure"]
        assert cut["test_keys"]["cut_to_fit"] == {"bytes": size, "limit": MAX_LINE_BYTES}
    query = fit_line(flood)["test_keys"]["queries"][0]
    assert len(query["ignored_replies"]) == KEEP_EVENTS
    assert query["ignored_replies_total"] == 40_000
    assert fit_line(wide)["test_keys"]["failed_operation"] == "stun"

    path = tmp_path / "r.jsonl"
    with ResultsWriter(path) as w:  # the writer cuts what a caller did not
        w.write(flood)
    assert len(path.read_bytes()) <= MAX_LINE_BYTES + 1
    with pytest.raises(ValueError, match="cannot be cut"):
        fit_line({"record": "summary", "notes": {f"k{i}": i for i in range(200_000)}})
    # The collector's limit is this one constant.
    line = line_bytes(fit_line(blob))
    assert len(line) <= MAX_LINE_BYTES
    with pytest.raises(Exception, match=f"{MAX_LINE_BYTES} bytes"):
        parse_upload(line_bytes(blob) + b"\n", partial=True)
