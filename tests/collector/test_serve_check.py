"""``voip-probe serve --check``: the operator's consistency check of a collector's storage
(a real process on the data dir and database a collector used, SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from probe.collector.storage import Storage
from probe.collector.validate import parse_upload
from tests.collector.test_hardening import results


def serve_check(data_dir: Path, database_url: str | None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "probe", "serve", "--check", "--data-dir", str(data_dir)]
    if database_url:
        cmd += ["--database-url", database_url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def stored(data_dir: Path, database_url: str | None, *report_ids: str) -> list[str]:
    storage = Storage(data_dir, database_url)
    storage.open()
    try:
        return [storage.store(parse_upload(results(rid))).id for rid in report_ids]
    finally:
        storage.close()


def test_a_consistent_storage_passes(tmp_path: Path, backend_url: str | None) -> None:
    data_dir = tmp_path / "collector"
    stored(data_dir, backend_url, "r1", "r2")
    proc = serve_check(data_dir, backend_url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "2 uploads, consistent" in proc.stderr


def test_a_damaged_or_missing_file_is_named_and_exits_1(tmp_path: Path) -> None:
    data_dir = tmp_path / "collector"
    damaged, missing, intact = stored(data_dir, None, "r1", "r2", "r3")
    files = data_dir / "files"
    (files / damaged[:2] / f"{damaged}.jsonl").write_bytes(b"{}\n")
    (files / missing[:2] / f"{missing}.jsonl").unlink()
    proc = serve_check(data_dir, None)
    assert proc.returncode == 1, proc.stderr
    lines = sorted(proc.stdout.splitlines())
    assert lines == sorted([f"{damaged}: stored file does not match its hash",
                            f"{missing}: indexed but its file is missing"]), proc.stdout
    assert intact not in proc.stdout
    assert "3 uploads, 2 problems" in proc.stderr
