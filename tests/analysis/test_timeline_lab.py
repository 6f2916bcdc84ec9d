"""The Morocco 2016 replay in the censorship lab, fed to ``voip-probe timeline``.

``voip-probe lab replay morocco-2016`` runs the real probe once per phase (before, mobile
ban, fixed-line ban, after) against real servers behind real packet filtering, and
re-dates each results file to the phase's date. ``timeline`` must date the onset of the
calls ban at the mobile-ban phase on mobile and at the fixed-line-ban phase on fixed
lines, the restoration at the after phase on both, and report nothing for messaging.
One run per phase: every change counts (``--window 1 --confirm 1``). The replay is the
one of the whole test session (tests/helpers/replay_cache.py), shared with the other
tests that read it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probe.analysis.summaries import load_summary
from tests.helpers.replay_cache import morocco_replay

BANNED = ("whatsapp", "skype", "viber")  # the scenarios expect their calls blocked


def voip_probe(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.lab
@pytest.mark.slow
def test_morocco_2016_replay_dated_by_timeline(tmp_path_factory: pytest.TempPathFactory,
                                               worker_id: str) -> None:
    replay = morocco_replay(tmp_path_factory, worker_id)
    assert replay.returncode == 0, replay.stderr[-4000:]  # every phase reached its verdicts
    files = [Path(f) for f in json.loads(replay.stdout)["results_files"]]
    assert len(files) == 8

    # When each phase ran (after re-dating), per network type, in phase order.
    phases: dict[str, list[str]] = {}
    for path in files:
        summary = load_summary(path, lambda m: None)
        assert summary is not None and not summary.recomputed
        phases.setdefault(summary.network_type, []).append(summary.start)
    for starts in phases.values():
        starts.sort()
    mobile, fixed = phases["mobile"], phases["fixed"]
    assert [s[:10] for s in mobile] == ["2016-01-04", "2016-01-08", "2016-02-12", "2016-11-04"]
    assert [s[:10] for s in fixed] == ["2016-01-04", "2016-01-08", "2016-02-12", "2016-11-04"]

    res = voip_probe("timeline", str(replay.output), "--window", "1", "--confirm", "1", "--json",
                     timeout=120)
    assert res.returncode == 0, res.stderr
    networks = {n["type"]: n for n in json.loads(res.stdout)["networks"]}
    assert set(networks) == {"mobile", "fixed"}
    expected = {
        # mobile: banned from the mobile-ban phase (2016-01-08) until the after phase
        "mobile": [("onset", mobile[1], mobile[0]), ("restoration", mobile[3], mobile[2])],
        # fixed lines: banned only from the fixed-line-ban phase (2016-02-12)
        "fixed": [("onset", fixed[2], fixed[1]), ("restoration", fixed[3], fixed[2])],
    }
    for network_type, net in networks.items():
        assert net["runs"] == 4
        assert not [e for e in net["events"] if e["function"] == "messaging"], net["events"]
        for service in BANNED:
            got = [(e["kind"], e["at"], e["previous"]) for e in net["events"]
                   if (e["service"], e["function"]) == (service, "calls")]
            assert got == expected[network_type], (network_type, service, net["events"])
        onsets = [e for e in net["events"] if e["kind"] == "onset" and e["service"] in BANNED]
        assert all(e["methods"] for e in onsets)  # how: e.g. stun_dpi / app_stun_dpi
