"""``voip-probe lab``: clear errors without root or with bad scenarios; up/down, run and
the Morocco 2016 replay end to end in a lab (lab tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from probe.lab.lab import STATE_ROOT
from probe.lab.netns import list_namespaces
from tests.helpers.replay_cache import morocco_replay

ROOT = Path(__file__).resolve().parents[2]


def voip_probe(*args: str, env: dict[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)


NOT_ROOT = ("import os, sys; os.geteuid = lambda: 1000; sys.argv = ['voip-probe', *sys.argv[1:]];"
            "from probe.cli import main; main()")


@pytest.mark.parametrize("args", [["up"], ["down", "vpx"], ["run", "clean"],
                                  ["replay", "morocco-2016"]])
def test_without_root_one_clear_line_and_exit_2(args: list[str]) -> None:
    res = subprocess.run([sys.executable, "-c", NOT_ROOT, "lab", *args], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "needs root" in lines[0], res.stderr


def test_unknown_scenario_and_bad_file_exit_2(tmp_path: Path) -> None:
    res = voip_probe("lab", "run", "no-such-scenario")
    assert res.returncode == 2
    assert "no scenario 'no-such-scenario'" in res.stderr and "stun-dpi" in res.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "bad"\ndescription = "x"\ncolour = "red"\n')
    res = voip_probe("lab", "run", str(bad))
    assert res.returncode == 2
    assert f"{bad}:4: unknown key 'colour'" in res.stderr.replace("\n", "")


@pytest.mark.lab
def test_up_then_down_from_another_process() -> None:
    res = voip_probe("lab", "up", "--json")
    assert res.returncode == 0, res.stderr
    facts = json.loads(res.stdout)
    prefix = facts["prefix"]
    try:
        assert facts["censor_hop"] == 2 and facts["resolver"] == "198.19.0.53"
        assert Path(facts["ca_bundle"]).exists()
        assert facts["client_namespace"] in list_namespaces()
        listed = voip_probe("lab", "list", "--json")
        assert {"prefix": prefix, "owner": None, "stale": False} in json.loads(listed.stdout)
    finally:
        down = voip_probe("lab", "down", prefix)
    assert down.returncode == 0, down.stderr
    assert not [ns for ns in list_namespaces() if ns.startswith(prefix)]
    assert not (STATE_ROOT / prefix).exists()
    assert not list(Path("/etc/netns").glob(f"{prefix}-*"))


@pytest.mark.lab
def test_lab_run_tcp_drop_passes_and_tears_down(tmp_path: Path) -> None:
    res = voip_probe("lab", "run", "tcp-drop", "--timeout", "3", "--json", "--output",
                     str(tmp_path))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["passed"] and Path(out["results_file"]).exists()
    row = next(r for r in out["rows"] if r["function"] == "messaging")
    assert (row["actual"], row["actual_methods"]) == ("blocked", ["tcp_timeout"])
    assert not [ns for ns in list_namespaces() if ns.startswith(out["lab"] + "-")]
    assert not (STATE_ROOT / out["lab"]).exists()


@pytest.mark.lab
@pytest.mark.slow
def test_replay_morocco_2016(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> None:
    # The replay of the whole test session, shared with the other tests that read it.
    res = morocco_replay(tmp_path_factory, worker_id)
    assert res.returncode in (0, 1), res.stderr
    out = res.report
    names = sorted(Path(f).name for f in out["results_files"])
    assert len(names) == 8
    assert names[0].startswith("20160104T100000Z_") and names[0].split("_")[2] == "mobile"
    assert names[-1].startswith("20161104T103000Z_") and names[-1].split("_")[2] == "fixed"
    assert sorted(p.name for p in res.output.glob("*.jsonl")) == names
    for phase in out["phases"]:
        assert phase["passed"], phase
    assert res.returncode == 0
    # The analysis drawn after the phases: a comparison at each change of scenario on a
    # network, then the timeline of the output folder.
    assert "compare mobile: morocco-2016-before -> morocco-2016-mobile-ban" in res.stderr
    assert "compare fixed: morocco-2016-before -> morocco-2016-fixed-line-ban" in res.stderr
    assert "\ntimeline\n" in res.stderr and "8 files, 8 runs, 2 networks" in res.stderr
    assert "error:" not in res.stderr
