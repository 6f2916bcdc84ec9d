"""The status page in a real browser, from a real collector, after real uploads of files
made by ``voip-probe run`` in the censorship lab (issue 17).

Data: the Morocco 2016 replay (tests/replay_cache.py: one probe, eight runs, mobile and
fixed, shared with the other tests that read it) and a second probe, run here in a lab
of this module with its own pseudonym, on the mobile network just before and during the
mobile ban. Both are sent by ``voip-probe upload`` to ``voip-probe serve``. So on mobile
the calls ban is seen by two probes within a day (confirmed) and its end by one
(single-probe); on fixed lines both are single-probe; messaging never changes.

Debian's headless Chromium loads ``/`` and the mobile network's page, with JavaScript on
and off, and the DOM is checked (services, events, confirmed against single-probe);
screenshots are kept in ``results/artifacts/status-page/`` (ignored by git).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from probe.lab.lab import Lab
from probe.lab.play import apply_scenario, run_probe
from probe.lab.replay import redate_results
from probe.lab.scenarios import load_scenario, scenario_path
from tests.collector.conftest import CollectorProcess
from tests.helpers.browser import load
from tests.helpers.replay_cache import TIMEOUT_S, morocco_replay

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "results" / "artifacts" / "status-page"
# The Morocco scenarios' stun_dpi rule drops STUN whatever the app, so every service's
# calls are blocked during the bans (the scenarios expect it of three of them).
BANNED = ("duo", "skype", "viber", "whatsapp")
# The second probe: just before the ban and during it, hours after the replay's
# mobile-ban run (2016-01-08 10:00), within the 24 h confirmation window.
SECOND_PROBE = (("morocco-2016-before", datetime(2016, 1, 7, 18, 0, tzinfo=UTC)),
                ("morocco-2016-mobile-ban", datetime(2016, 1, 8, 12, 0, tzinfo=UTC)))


def second_probe_files(lab: Lab, folder: Path) -> list[Path]:
    env_before = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(folder / "probe-data")  # its own pseudonym
    try:
        files = []
        for name, date in SECOND_PROBE:
            apply_scenario(lab, load_scenario(scenario_path(name)))
            run = run_probe(lab, folder / "runs" / name, "mobile", float(TIMEOUT_S))
            assert run.summary is not None, run.stderr[-3000:]
            files.append(redate_results(Path(run.summary["results_file"]), date,
                                        folder / "files"))
        return files
    finally:
        lab.clear_rules()
        if env_before is None:
            os.environ.pop("XDG_DATA_HOME", None)
        else:
            os.environ["XDG_DATA_HOME"] = env_before


def upload(files: list[Path], url: str, home: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config")}
    proc = subprocess.run([sys.executable, "-m", "probe", "upload", *map(str, files),
                           "--collector", url], capture_output=True, text=True, timeout=300,
                          env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]


def rows(dom: str, cls: str) -> list[dict[str, str]]:
    """The data-* attributes of every <tr class="cls">."""
    out = []
    for tag in re.findall(rf'<tr class="{cls}"([^>]*)>', dom):
        out.append({k: v for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', tag)})
    return out


# The functions the Morocco scenarios set (calls cut, messaging kept). Registration and web
# are not part of them: a machine under load can time one out in a single run, and with
# one run per phase such a run is a single-probe event of its own.
WATCHED = ("calls", "messaging")


def events_of(dom: str) -> set[tuple[str, str, str, str, str]]:
    return {(e["network-type"], e["service"], e["function"], e["kind"], e["confidence"])
            for e in rows(dom, "event") if e["function"] in WATCHED}


def expected_events() -> set[tuple[str, str, str, str, str]]:
    out = set()
    for service in BANNED:
        out |= {("mobile", service, "calls", "onset", "confirmed"),
                ("mobile", service, "calls", "restoration", "single-probe"),
                ("fixed", service, "calls", "onset", "single-probe"),
                ("fixed", service, "calls", "restoration", "single-probe")}
    return out


def test_status_page_in_chromium_after_real_lab_uploads(
        lab: Lab, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, worker_id: str,
        collector_process: Callable[..., CollectorProcess]) -> None:
    second = second_probe_files(lab, tmp_path / "second")
    replay = morocco_replay(tmp_path_factory, worker_id)
    assert replay.returncode == 0, replay.stderr[-3000:]
    first = [Path(f) for f in replay.report["results_files"]]
    assert len(first) == 8
    server = collector_process(extra=("--page-cache", "0"))
    upload([*first, *second], server.url, tmp_path / "uploader")

    # The raw JSON first: the same events, with their confidence.
    api = httpx.get(f"{server.url}/api/v1/events", params={"limit": 1000}, timeout=30).json()
    got = {(e["network_type"], e["service"], e["function"], e["kind"], e["confidence"])
           for e in api["events"] if e["function"] in WATCHED}
    assert got == expected_events()
    onset = next(e for e in api["events"] if (e["network_type"], e["service"], e["kind"]) ==
                 ("mobile", "whatsapp", "onset"))
    assert (onset["at"], onset["probes"]) == ("2016-01-08 10:00:00", 2)
    assert onset["previous"] == "2016-01-07 18:00:00"  # the second probe narrowed it
    assert onset["methods"]  # how: e.g. stun_dpi / app_stun_dpi
    raw = httpx.get(server.url + onset["measurements"], timeout=30).json()["measurements"]
    assert raw and {(m["measurement"]["service"], m["measurement"]["function"])
                    for m in raw} == {("whatsapp", "calls")}

    for javascript in (True, False):
        page = load(server.url + "/", javascript=javascript, screenshot=javascript,
                    size=(1200, 1000))
        overview = page.html
        assert ('class="js"' in overview) is javascript  # the script ran, or did not
        services = {(r["network-type"], r["service"]) for r in rows(overview, "service-row")}
        assert services == {(t, s) for t in ("mobile", "fixed")
                            for s in ("duo", "skype", "viber", "whatsapp")}
        assert events_of(overview) == expected_events()
        cells = re.findall(r'<td class="s-(\w+)" data-function="(\w+)" data-status="\w+"',
                           overview)
        assert ("ok", "calls") in cells and ("ok", "messaging") in cells  # restored by now
        mobile = load(server.url + "/network/ZZ/AS0/mobile", javascript=javascript,
                      screenshot=javascript, size=(1200, 1000))
        network = mobile.html
        assert network.count("<svg") == 4  # a chart per service
        assert events_of(network) == {e for e in expected_events() if e[0] == "mobile"}
        # Confirmed events are solid lines, single-probe ones dashed.
        markers = re.findall(r'<g class="marker (\w+) (\w+)"><line[^>]*><title>\w+ of '
                             r'\w+ (\w+) ', network)
        assert sorted(m for m in markers if m[2] == "calls") == sorted(
            [("onset", "solid", "calls")] * len(BANNED)
            + [("restoration", "dashed", "calls")] * len(BANNED))
        for name, shot in (("overview.png", page.png), ("network-mobile.png", mobile.png)):
            if shot is not None:
                keep(tmp_path / name, shot)


def keep(path: Path, png: bytes) -> None:
    """Keep the screenshot as an artifact, once it is shown to hold a drawn page."""
    from PIL import Image

    path.write_bytes(png)
    image = Image.open(path).convert("RGB")
    colors = {rgb: n for n, rgb in image.getcolors(maxcolors=1 << 24)}
    # Drawn, not blank: the "blocked" red of table cells and chart bars, and the "ok" green.
    assert colors.get((0xC6, 0x28, 0x28), 0) > 50 and colors.get((0x2E, 0x7D, 0x32), 0) > 50
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, ARTIFACTS / path.name)
