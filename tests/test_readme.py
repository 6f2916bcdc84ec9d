"""The README's two set-up commands are the ones CI and volunteers actually run."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_readme_has_exactly_two_setup_commands() -> None:
    cmds = setup_commands()
    assert len(cmds) == 2
    assert cmds[0].endswith("voip-probe run")
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    last = [ln for ln in ci.splitlines() if ln.strip() and not ln.startswith("#")][-1]
    assert last == setup_commands()[1]
    assert "apt-get update" in ci


def test_readme_layout_matches_the_tree() -> None:
    """Every module and subpackage of probe/ is named in the README's layout block, and
    everything the block names exists."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## For developers", 1)[1].split("```\n", 2)[1]
    named = set(re.findall(r"([A-Za-z_][\w.-]*(?:\.py|/))", block))
    actual = {p.name + ("/" if p.is_dir() else "") for p in (ROOT / "probe").iterdir()
              if (p.suffix == ".py" and not p.name.startswith("__"))
              or (p.is_dir() and (p / "__init__.py").exists())}
    assert actual - named == set(), f"not in the README layout: {sorted(actual - named)}"
    tree = {name for top in ("probe", "tests", "configs", "benchmarks", "scripts")
            for _dir, dirs, files in os.walk(ROOT / top)
            for name in [*(d + "/" for d in dirs), *files]}
    tree |= {p.name + ("/" if p.is_dir() else "") for p in ROOT.iterdir()}
    assert named - tree == set(), f"the README layout names what does not exist: {named - tree}"


def test_readme_names_every_censor_rule_a_scenario_may_use() -> None:
    """The README's list of scenario rule names is the lab's: every rule of
    probe.lab.censor.RULES, and nothing that is not one."""
    from probe.lab.censor import RULES

    text = (ROOT / "README.md").read_text()
    listed = text.split("A scenario file lists `[[rules]]` (rule names:", 1)[1]
    listed = listed.split("the `[[expect]]`ed", 1)[0]
    named = {n for n in re.findall(r"`([a-z_]+)`", listed)}
    assert set(RULES) <= named, sorted(set(RULES) - named)
    options = {"apps", "residual_s", "passive", "seconds", "kbytes_per_s"}
    assert named - options <= set(RULES), sorted(named - options - set(RULES))
