"""Debian's headless Chromium for the tests of web pages: the DOM after load, and
screenshots, with JavaScript on or off.

Chromium is driven over its DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages ending in NUL, commands on the browser's fd 3, answers on its fd 4), not
by ``--dump-dom``: that switch serialises the page with JavaScript, so it prints nothing
when scripts are off, and a page must be shown to work for a reader who turned them
off. JavaScript is switched off with ``Emulation.setScriptExecutionDisabled`` before
the page is loaded; the DOM comes from ``DOM.getOuterHTML``, which needs no script.

Every call starts a fresh browser with its own profile folder and everything that could
reach outside switched off (no background networking, no component updates, no sync,
no QUIC). Missing Chromium skips a test, but fails it under ``CI=true`` (``.ci/run``
installs it).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Loaded:
    html: str  # the DOM after the load event, serialised
    png: bytes | None  # a screenshot of the whole page, if asked for


class _Devtools:
    """A browser on a DevTools pipe: :meth:`call` sends a command and returns its result;
    events that arrive meanwhile are kept for :meth:`wait_for`."""

    def __init__(self, profile: Path, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        self.log = open(profile.parent / "chromium.log", "wb")
        # bash puts the pipe ends on fds 3 and 4, where Chromium expects them (dash cannot
        # redirect from fds above 9).
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}', "bash",
             CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}",
             "about:blank"],
            pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=self.log)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.out = to_browser_w
        self.inp = from_browser_r
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.inp], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.inp, 1 << 20)
            if not chunk:
                raise ConnectionError("chromium closed its DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method,
                                   "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self.out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            if "method" in answer:
                self.events.append(answer)

    def wait_for(self, event: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            for i, seen in enumerate(self.events):
                if seen.get("method") == event and seen.get("sessionId") == session:
                    return self.events.pop(i)
            answer = self._read_message(deadline)
            if "method" in answer:
                self.events.append(answer)

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (OSError, TimeoutError, ConnectionError, RuntimeError):
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)
        os.close(self.out)
        os.close(self.inp)
        self.log.close()


def load(url: str, *, javascript: bool = True, screenshot: bool = False,
         size: tuple[int, int] = (1200, 900), timeout_s: float = 90) -> Loaded:
    """Open ``url`` in a fresh headless Chromium; the DOM once loaded (and, if asked, a
    PNG of the whole page ``size[0]`` CSS pixels wide)."""
    require_chromium()
    folder = Path(tempfile.mkdtemp(prefix="voip-probe-chromium-"))
    browser = _Devtools(folder / "profile", timeout_s)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget",
                               {"targetId": target, "flatten": True})["sessionId"]
        browser.call("Page.enable", session=session)
        browser.call("Emulation.setScriptExecutionDisabled", {"value": not javascript},
                     session=session)
        browser.call("Emulation.setDeviceMetricsOverride",
                     {"width": size[0], "height": size[1], "deviceScaleFactor": 1,
                      "mobile": False}, session=session)
        navigated = browser.call("Page.navigate", {"url": url}, session=session)
        if navigated.get("errorText"):
            raise AssertionError(f"chromium could not load {url}: {navigated['errorText']}")
        browser.wait_for("Page.loadEventFired", session)
        root = browser.call("DOM.getDocument", {"depth": -1}, session=session)["root"]
        html = browser.call("DOM.getOuterHTML", {"nodeId": root["nodeId"]},
                            session=session)["outerHTML"]
        png = None
        if screenshot:
            shot = browser.call("Page.captureScreenshot",
                                {"format": "png", "captureBeyondViewport": True},
                                session=session)
            png = base64.b64decode(shot["data"])
        return Loaded(str(html), png)
    except (TimeoutError, ConnectionError) as exc:
        log = (folder / "chromium.log").read_text(errors="replace")[-2000:]
        raise AssertionError(f"chromium: {exc}; its log ends: {log}") from exc
    finally:
        browser.close()
        shutil.rmtree(folder, ignore_errors=True)


def dump_dom(url: str, *, javascript: bool = True, timeout_s: float = 90) -> str:
    """The page's DOM, serialised once it has loaded (and its scripts ran, if on)."""
    return load(url, javascript=javascript, timeout_s=timeout_s).html


def screenshot(url: str, path: Path, *, javascript: bool = True,
               size: tuple[int, int] = (1200, 900), timeout_s: float = 90) -> Path:
    """A PNG of the whole page, ``size[0]`` CSS pixels wide."""
    loaded = load(url, javascript=javascript, screenshot=True, size=size,
                  timeout_s=timeout_s)
    assert loaded.png
    path.write_bytes(loaded.png)
    return path
