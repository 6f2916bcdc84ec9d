"""Debian's headless Chromium for the tests of web pages: the DOM after load, and
screenshots.

Every call starts a fresh browser with its own profile folder and everything that
could reach outside switched off (no background networking, no component updates, no
sync, no QUIC). ``javascript=False`` loads the page with scripts disabled, as a reader
who turned them off would. Missing Chromium skips a test, but fails it under ``CI=true``
(``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() == "true"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio")


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("chromium is missing under CI=true (see .ci/run)")
        pytest.skip("chromium is not installed")


def _run(args: list[str], url: str, javascript: bool, timeout_s: float
         ) -> subprocess.CompletedProcess[str]:
    require_chromium()
    profile = Path(tempfile.mkdtemp(prefix="voip-probe-chromium-"))
    try:
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
        if not javascript:
            cmd.append("--blink-settings=scriptEnabled=false")
        cmd.append(url)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              check=False, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def dump_dom(url: str, *, javascript: bool = True, timeout_s: float = 90) -> str:
    """The page's DOM, serialised once it has loaded (and its scripts ran)."""
    proc = _run(["--dump-dom", "--virtual-time-budget=3000"], url, javascript, timeout_s)
    assert proc.stdout.strip(), f"chromium printed no DOM ({proc.returncode}): " \
                                f"{proc.stderr[-2000:]}"
    return proc.stdout


def screenshot(url: str, path: Path, *, javascript: bool = True, size: str = "1200,1600",
               timeout_s: float = 90) -> Path:
    """A PNG of the page at ``size`` (width,height in CSS pixels)."""
    proc = _run([f"--screenshot={path}", f"--window-size={size}",
                 "--virtual-time-budget=3000"], url, javascript, timeout_s)
    assert path.exists(), f"no screenshot ({proc.returncode}): {proc.stderr[-2000:]}"
    return path
