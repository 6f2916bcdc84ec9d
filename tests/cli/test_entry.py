"""The console entry point (``voip-probe`` = :func:`probe.cli.main`)."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

import probe.cli as cli


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.parametrize("outcome", [0, 3])
def test_the_entry_point_freezes_the_heap_as_the_command_ends(monkeypatch, unfrozen, outcome):
    """After the command (a success or an exit code), the heap is frozen so the
    interpreter's teardown collections skip it (benchmarks/scan_speed.py: the exit)."""
    seen = []

    def command() -> None:
        seen.append(gc.get_freeze_count())
        raise SystemExit(outcome)

    monkeypatch.setattr(cli, "_load_commands", lambda: None)
    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == outcome
    assert seen == [0]  # not before the command: it runs with a collecting heap
    assert gc.get_freeze_count() > 0


def test_a_process_ending_through_the_entry_point_still_flushes_and_runs_atexit(tmp_path):
    """Freezing skips collections, nothing else: buffered output and atexit handlers
    still run as the process ends."""
    out = tmp_path / "out.txt"
    code = (
        "import atexit, sys\n"
        "import probe.cli as cli\n"
        f"f = open({str(out)!r}, 'w')\n"
        "f.write('written before the end')\n"  # left unclosed: closed by the teardown
        "atexit.register(lambda: print('atexit ran'))\n"
        "cli._load_commands = lambda: None\n"
        "cli.app = lambda: print('command ran')\n"
        "cli.main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["command ran", "atexit ran"]
    assert out.read_text() == "written before the end"
