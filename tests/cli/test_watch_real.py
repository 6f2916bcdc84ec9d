"""``voip-probe watch`` for real, on loopback: periodic runs, a service that gets blocked
while it watches, Ctrl-C (SIGINT), then ``timeline`` and ``compare`` on the files it wrote.

Everything is on 127.0.0.1: a loopback DNS server and TCP listeners; "blocking" is the
calls relay's listener closing (connections refused) between two runs.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from probe.analysis.summaries import load_summary
from probe.results import read_results
from tests.helpers.loopback_world import world_dns, write_targets


def _complete(folder: Path) -> list[Path]:
    """Results files whose summary line is written, oldest first."""
    done = []
    for path in sorted(folder.glob("*.jsonl")):
        data = path.read_bytes()
        if data.endswith(b"\n") and b'"record":"summary"' in data.rsplit(b"\n", 2)[-2]:
            done.append(path)
    return done


def _wait_for(folder: Path, n: int, proc: subprocess.Popen, deadline_s: float = 90) -> None:
    end = time.monotonic() + deadline_s
    while len(_complete(folder)) < n:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < end, f"only {len(_complete(folder))} runs done"
        time.sleep(0.05)


def test_watch_runs_periodically_stops_on_ctrl_c_and_feeds_timeline(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    relay = socket.create_server(("127.0.0.1", 0))
    targets = write_targets(tmp_path, listener.getsockname()[1], relay.getsockname()[1])
    out = tmp_path / "results"
    with world_dns() as dns:
        proc = subprocess.Popen(
            [sys.executable, "-m", "probe", "watch", "--every", "2s", "--targets", str(targets),
             "--resolver", dns.resolver, "--timeout", "2", "--output", str(out),
             "--network-type", "fixed"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(out, 2, proc)
            relay.close()  # calls get blocked (connection refused) from now on
            _wait_for(out, 4, proc)
            # Ctrl-C as soon as the fifth run has written its first measurement: most often
            # mid-run. (Not before: a Ctrl-C in the instant between the file's creation and
            # the run's start leaves an empty file; that window is probe.session's.)
            def fifth_started() -> bool:
                found = sorted(out.glob("*.jsonl"))
                return len(found) >= 5 and found[4].stat().st_size > 0

            while not fifth_started() and proc.poll() is None:
                time.sleep(0.005)
            proc.send_signal(signal.SIGINT)
            _stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    listener.close()

    assert proc.returncode == 0, stderr
    assert "stopped by Ctrl-C" in stderr and "Traceback" not in stderr
    files = sorted(out.glob("*.jsonl"))
    assert len(files) == 5
    runs = []
    for path in files:  # every file is complete, even one cut by Ctrl-C mid-run
        rf = read_results(path)
        assert rf.summary is not None and rf.warnings == [], path
        calls = rf.summary["services"].get("chatty", {}).get("functions", {}).get("calls")
        runs.append((rf.summary["measurement_start_time"], calls and calls["status"]))
    last = read_results(files[-1]).summary
    assert last is not None and (last.get("interrupted") or runs[-1][1] == "blocked")
    starts = [time.mktime(time.strptime(s, "%Y-%m-%d %H:%M:%S")) for s, _ in runs]
    # Runs start --every 2 s apart. A run's recorded start is its scheduled start plus a
    # small, load-dependent delay (getting to run_session), and times are whole seconds:
    # one gap may read as 1 s, but the delays do not add up (each run is scheduled from
    # the previous start), so four gaps span at least 4 x 2 s minus that one second.
    assert all(b - a >= 1 for a, b in itertools.pairwise(starts))
    assert starts[-1] - starts[0] >= 2 * (len(starts) - 1) - 1
    statuses = [st for _, st in runs[:4]]  # the four runs before Ctrl-C
    first_blocked = statuses.index("blocked")
    assert first_blocked >= 2 and statuses[:first_blocked] == ["ok"] * first_blocked
    assert statuses[first_blocked:first_blocked + 2] == ["blocked", "blocked"]

    tl = subprocess.run([sys.executable, "-m", "probe", "timeline", str(out), "--json"],
                        capture_output=True, text=True, timeout=60)
    assert tl.returncode == 0, tl.stderr
    (net,) = json.loads(tl.stdout)["networks"]
    assert (net["asn"], net["type"], net["runs"]) == ("AS0", "fixed", len(files))
    assert net["events"] == [{
        "service": "chatty", "function": "calls", "kind": "onset",
        "at": runs[first_blocked][0], "previous": runs[first_blocked - 1][0],
        "methods": ["tcp_refused"]}]

    cmp = subprocess.run([sys.executable, "-m", "probe", "compare", str(files[0]),
                          str(files[first_blocked]), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert cmp.returncode == 1, cmp.stderr
    assert [(c["function"], c["kind"]) for c in json.loads(cmp.stdout)["changes"]] == [
        ("calls", "newly_blocked")]

    # A run that crashed after its measurements but before its summary line: the verdicts
    # recomputed from its measurements (probe.verdicts) equal the ones the run wrote.
    original = files[first_blocked]
    lines = original.read_bytes().splitlines(keepends=True)
    crashed = tmp_path / "crashed" / original.name
    crashed.parent.mkdir()
    crashed.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])
    warnings: list[str] = []
    summary = load_summary(crashed, warnings.append)
    assert summary is not None and summary.recomputed
    assert any("recomputed" in w for w in warnings)
    stored = load_summary(original, warnings.append)
    assert stored is not None
    assert summary.services == stored.services
    assert (summary.asn, summary.network_type, summary.start) == (
        stored.asn, stored.network_type, stored.start)


def _serve(data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``voip-probe serve`` on 127.0.0.1 (a free port), once it answers."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "probe", "serve", "--host", "127.0.0.1",
                                 "--port", str(port), "--data-dir", str(data_dir)],
                                stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"collector did not come up: {log.read_text()}")


def test_watch_uploads_each_run_to_the_collector(tmp_path: Path) -> None:
    import httpx

    listener = socket.create_server(("127.0.0.1", 0))
    targets = write_targets(tmp_path, listener.getsockname()[1], listener.getsockname()[1])
    out = tmp_path / "results"
    server, url = _serve(tmp_path / "collector", tmp_path / "serve.log")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg-config")}
    try:
        with world_dns() as dns:
            res = subprocess.run(
                [sys.executable, "-m", "probe", "watch", "--every", "1s", "--count", "2",
                 "--targets", str(targets), "--resolver", dns.resolver, "--timeout", "2",
                 "--output", str(out), "--network-type", "wifi", "--collector", url],
                capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
        assert res.returncode == 0, res.stderr
        assert res.stderr.count("upload: stored") == 2, res.stderr
        assert "done: 2 complete run(s)" in res.stderr
        files = sorted(out.glob("*.jsonl"))
        measured = sum(len(read_results(f).measurements) for f in files)
        page = httpx.get(url + "/api/v1/measurements", params={"limit": 1000}).json()
        assert len(files) == 2 and len(page["measurements"]) == measured
        assert not list((tmp_path / "xdg-data").rglob("*.jsonl*"))  # nothing left spooled
    finally:
        server.terminate()
        server.wait(10)
        listener.close()
