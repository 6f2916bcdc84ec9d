"""The upload client (probe.upload) and ``voip-probe upload``.

Unit tests drive the retry logic through httpx's MockTransport; the end-to-end tests
run the real ``voip-probe upload`` command against a real ``voip-probe serve`` on
127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe import upload as up


def mock_uploader(handler: Callable[[httpx.Request], httpx.Response],
                  sleeps: list[float], attempts: int = 4) -> up.Uploader:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return up.Uploader("http://collector.test", attempts=attempts, backoff_s=1.0,
                       client=client, sleep=sleeps.append)


def answer(status: int, item: up.Prepared | None = None, **headers: str) -> httpx.Response:
    if item is not None:
        return httpx.Response(status, json={"id": item.sha256, "measurements": 3},
                              headers=headers)
    return httpx.Response(status, json={"error": "database unavailable"}, headers=headers)


def test_prepare_drops_a_torn_line_and_marks_partial(make_results: Any) -> None:
    path = Path(make_results(3, with_summary=False, torn=True))
    item = up.prepare(path)
    assert item.dropped_torn_line and item.partial
    assert item.data.endswith(b"\n") and item.data.count(b"\n") == 3
    assert path.read_bytes().startswith(item.data)
    complete = up.prepare(Path(make_results(3)))
    assert not complete.partial and not complete.dropped_torn_line


def test_prepare_reads_gzip_and_names_without_gz(make_results: Any, tmp_path: Path) -> None:
    path = Path(make_results(2))
    gz = tmp_path / (path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes()))
    item = up.prepare(gz)
    assert item.name == path.name
    assert item.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_prepare_refuses_an_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"torn')
    with pytest.raises(up.UploadError, match="no complete line"):
        up.prepare(p)


def test_retries_with_backoff_then_stores(make_results: Any) -> None:
    item = up.prepare(Path(make_results(3)))
    replies = [None, answer(503, **{"Retry-After": "7"}), answer(429), answer(201, item)]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = replies[len(seen) - 1]
        if reply is None:
            raise httpx.ConnectError("connection refused", request=request)
        return reply

    sleeps: list[float] = []
    outcome = mock_uploader(handler, sleeps).send(item)
    assert outcome.status == "stored" and outcome.id == item.sha256
    assert len(seen) == 4 and len(sleeps) == 3
    assert 0.5 <= sleeps[0] <= 1.0  # first backoff: 1 s with jitter
    assert sleeps[1] == 7.0  # Retry-After honoured
    assert 2.0 <= sleeps[2] <= 4.0  # doubled
    body = seen[-1]
    assert body.headers["content-encoding"] == "gzip"
    assert gzip.decompress(body.content) == item.data
    assert body.url.params["filename"] == item.name and "partial" not in body.url.params


def test_gives_up_after_attempts_and_keeps_the_file(make_results: Any) -> None:
    item = up.prepare(Path(make_results(3)))
    sleeps: list[float] = []
    outcome = mock_uploader(lambda r: answer(503), sleeps, attempts=3).send(item)
    assert outcome.status == "spooled" and "HTTP 503" in outcome.message
    assert len(sleeps) == 2


def test_4xx_is_final_and_names_the_reason(make_results: Any) -> None:
    item = up.prepare(Path(make_results(3)))
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(422, json={"error": "line 2: missing field(s) input"})

    outcome = mock_uploader(handler, []).send(item)
    assert outcome.status == "rejected" and outcome.http_status == 422
    assert outcome.message == "line 2: missing field(s) input" and calls == [1]


def test_an_unexpected_id_is_not_taken_as_success(make_results: Any) -> None:
    item = up.prepare(Path(make_results(3)))
    outcome = mock_uploader(
        lambda r: httpx.Response(201, json={"id": "0" * 64, "measurements": 3}), []).send(item)
    assert outcome.status == "spooled" and "expected" in outcome.message


def test_deliver_settles_the_spool(make_results: Any, tmp_path: Path) -> None:
    ok, bad, later = (up.prepare(Path(make_results(2))) for _ in range(3))

    def handler(request: httpx.Request) -> httpx.Response:
        data = gzip.decompress(request.content)
        if data == ok.data:
            return answer(201, ok)
        if data == bad.data:
            return httpx.Response(409, json={"error": "replayed"})
        return answer(503)

    spool = up.Spool(tmp_path / "spool")
    outcomes = up.deliver([ok, bad, later], mock_uploader(handler, [], attempts=1), spool)
    assert [o.status for o in outcomes] == ["stored", "rejected", "spooled"]
    assert [i.sha256 for i in spool.pending()] == [later.sha256]
    rejected = tmp_path / "spool" / "rejected"
    assert (rejected / f"{bad.sha256}.jsonl").read_bytes() == bad.data
    assert json.loads((rejected / f"{bad.sha256}.json").read_text())["reason"] == "replayed"


def test_collector_url_from_option_or_config(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(up.UploadError, match="no collector"):
        up.collector_url(None)
    cfg = tmp_path / "voip-probe" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text('collector = "https://collector.example.org/"\n')
    assert up.collector_url(None) == "https://collector.example.org"
    assert up.collector_url("http://127.0.0.1:9") == "http://127.0.0.1:9"
    with pytest.raises(up.UploadError, match="http"):
        up.collector_url("ftp://x")
    cfg.write_text("collector = [")
    with pytest.raises(up.UploadError, match=r"config\.toml"):
        up.collector_url(None)


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config")}
    env.pop("VOIP_PROBE_COLLECTOR", None)
    return subprocess.run([sys.executable, "-m", "probe", "upload", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_end_to_end_with_a_real_collector(make_results: Any, tmp_path: Path,
                                              collector_process: Any) -> None:
    server = collector_process()
    folder = tmp_path / "runs"
    make_results(3, folder=folder)
    make_results(4, folder=folder)
    crashed = Path(make_results(2, with_summary=False, torn=True, folder=folder))
    (tmp_path / "config" / "voip-probe").mkdir(parents=True)
    (tmp_path / "config" / "voip-probe" / "config.toml").write_text(
        f'collector = "{server.url}"\n')
    first = run_cli(str(folder), "--json", home=tmp_path)
    assert first.returncode == 0, first.stderr
    files = json.loads(first.stdout)["files"]
    assert sorted(f["status"] for f in files) == ["stored"] * 3
    assert sorted(f["measurements"] for f in files) == [2, 3, 4]
    assert "torn last line of a crashed run left out" in first.stderr
    by_name = {f["file"]: f for f in files}
    assert by_name[crashed.name]["id"] == up.prepare(crashed).sha256
    again = run_cli(str(folder), "--json", "--collector", server.url, home=tmp_path)
    assert again.returncode == 0
    assert {f["status"] for f in json.loads(again.stdout)["files"]} == {"already_stored"}
    assert list((tmp_path / "data" / "voip-probe" / "spool").glob("*.jsonl")) == []


def test_cli_offline_then_pending(make_results: Any, tmp_path: Path,
                                  collector_process: Any) -> None:
    from tests.collector.conftest import free_port

    path = Path(make_results(3))
    dead = f"http://127.0.0.1:{free_port()}"
    offline = run_cli(str(path), "--collector", dead, "--attempts", "1", "--json",
                      home=tmp_path)
    assert offline.returncode == 3, offline.stderr
    assert json.loads(offline.stdout)["files"][0]["status"] == "spooled"
    spooled = list((tmp_path / "data" / "voip-probe" / "spool").glob("*.jsonl"))
    assert [p.read_bytes() for p in spooled] == [path.read_bytes()]
    nothing = run_cli("--collector", dead, home=tmp_path)
    assert nothing.returncode == 2 and "--pending" in nothing.stderr
    server = collector_process()
    later = run_cli("--pending", "--collector", server.url, "--json", home=tmp_path)
    assert later.returncode == 0, later.stderr
    assert [f["status"] for f in json.loads(later.stdout)["files"]] == ["stored"]
    assert list((tmp_path / "data" / "voip-probe" / "spool").glob("*.jsonl")) == []


def test_cli_reports_a_rejected_file(tmp_path: Path, collector_process: Any) -> None:
    server = collector_process()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"hello": "world"}\n')
    r = run_cli(str(bad), "--collector", server.url, home=tmp_path)
    assert r.returncode == 2
    assert "rejected bad.jsonl" in r.stderr and "missing field" in r.stderr


def test_odd_local_file_names_are_not_sent_as_metadata(make_results: Any,
                                                       tmp_path: Path) -> None:
    src = Path(make_results(2))
    odd = tmp_path / "résultats du 4 nov (copie).jsonl"
    odd.write_bytes(src.read_bytes())
    item = up.prepare(odd)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(201, item)

    outcome = mock_uploader(handler, []).send(item)
    assert outcome.status == "stored" and outcome.file == odd.name
    assert "filename" not in seen[0].url.params
    plain = up.prepare(src)
    mock_uploader(handler, []).send(plain)
    assert seen[1].url.params["filename"] == src.name


def test_cli_unwritable_spool_is_a_clear_error(make_results: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    r = run_cli(str(make_results(2)), "--collector", "http://127.0.0.1:9",
                "--spool", str(blocker / "spool"), home=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "cannot write to the spool folder" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("url", ["http://collector.example.org", "http://198.18.0.10:8080",
                                 "http://localhost.evil.example", "http://[2001:db8::1]/"])
def test_plain_http_to_a_collector_elsewhere_is_refused(url: str) -> None:
    with pytest.raises(up.UploadError, match="plain http:// is refused"):
        up.collector_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://127.3.2.1",
                                 "http://localhost:9/", "http://[::1]:8080",
                                 "https://collector.example.org"])
def test_https_or_loopback_http_is_accepted(url: str) -> None:
    assert up.collector_url(url) == url.rstrip("/")


def test_cli_refuses_plain_http_in_one_line_before_sending(make_results: Any,
                                                           tmp_path: Path) -> None:
    path = make_results(2)
    r = run_cli(str(path), "--collector", "http://collector.example.org", home=tmp_path)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "https://" in r.stderr
    assert not (tmp_path / "data" / "voip-probe" / "spool").exists()  # nothing queued
    (tmp_path / "config" / "voip-probe").mkdir(parents=True)
    (tmp_path / "config" / "voip-probe" / "config.toml").write_text(
        'collector = "http://collector.example.org"\n')
    r = run_cli(str(path), home=tmp_path)
    assert r.returncode == 2 and "plain http:// is refused" in r.stderr


class _HostileCollector:
    """A loopback HTTP server answering every upload 400 with rich markup in its error."""

    ERROR = "bad [/] line [bold]x[/bold] [link=file:///etc/passwd]y"

    def __enter__(self) -> str:
        import http.server
        import threading

        error = json.dumps({"error": self.ERROR}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(400)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_collector_error_text_is_printed_as_text_not_markup(make_results: Any,
                                                            tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    make_results(2, folder=folder)
    make_results(3, folder=folder)
    with _HostileCollector() as url:
        r = run_cli(str(folder), "--collector", url, "--json", home=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "MarkupError" not in r.stderr
    files = json.loads(r.stdout)["files"]
    assert [f["status"] for f in files] == ["rejected", "rejected"]  # the batch went on
    assert [f["message"] for f in files] == [_HostileCollector.ERROR] * 2
    assert r.stderr.count(_HostileCollector.ERROR) == 2  # shown verbatim


@pytest.mark.parametrize("command,config", [
    (["watch", "--count", "1", "--collector", "http://collector.example.org"], None),
    (["watch", "--count", "1", "--upload"], 'collector = "http://collector.example.org"\n'),
    (["run"], 'collector = "http://collector.example.org"\n'),
])
def test_watch_and_run_refuse_a_plain_http_collector_before_measuring(
        tmp_path: Path, command: list[str], config: str | None) -> None:
    from tests.helpers.loopback_world import closed_port, write_targets

    # Loopback only, should the refusal ever fail: targets on 127.0.0.1, a dead resolver.
    targets = write_targets(tmp_path, closed_port(), closed_port())
    if config is not None:
        (tmp_path / "config" / "voip-probe").mkdir(parents=True)
        (tmp_path / "config" / "voip-probe" / "config.toml").write_text(config)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("VOIP_PROBE_COLLECTOR", None)
    r = subprocess.run([sys.executable, "-m", "probe", *command, "--targets", str(targets),
                        "--resolver", f"127.0.0.1:{closed_port()}", "--timeout", "1",
                        "--network-type", "fixed", "--output", str(tmp_path / "results")],
                       env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr
    assert "plain http:// is refused" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "results").glob("*.jsonl"))  # nothing was measured
