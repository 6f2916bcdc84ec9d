"""Replaying a censorship event in the lab: one probe run per phase, each with a fake date.

The probe always stamps its results with the real clock; :func:`redate_results` moves a
finished results file to the phase's date: every ``"YYYY-MM-DD HH:MM:SS"`` value of a
``*_time`` key is shifted by the same offset (so durations inside the run are kept), and
the file is renamed to the new UTC start (DESIGN.md "Results file" naming).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from probe.lab.lab import Lab
from probe.lab.play import ProbeRun, Row, apply_scenario, compare, run_probe
from probe.lab.scenarios import Replay, Scenario, load_scenario
from probe.results import summary_path

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_NAME_RE = re.compile(r"^\d{8}T\d{6}Z")


def _shift(value: Any, delta: timedelta) -> Any:
    if isinstance(value, dict):
        return {k: (_shift_time(v, delta) if k.endswith("_time") else _shift(v, delta))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, delta) for v in value]
    return value


def _shift_time(value: Any, delta: timedelta) -> Any:
    if isinstance(value, str) and _TIME_RE.match(value):
        moved = datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC) + delta
        return moved.strftime(TIME_FORMAT)
    return _shift(value, delta)


def redate_results(path: Path, date: datetime, out_dir: Path) -> Path:
    """Write ``path`` into ``out_dir`` as if its run had started at ``date``."""
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    starts = [r["measurement_start_time"] for r in records
              if isinstance(r.get("measurement_start_time"), str)
              and _TIME_RE.match(r["measurement_start_time"])]
    if not starts:
        raise ValueError(f"{path}: no measurement_start_time to re-date")
    first = datetime.strptime(min(starts), TIME_FORMAT).replace(tzinfo=UTC)
    delta = date.astimezone(UTC) - first
    name = _NAME_RE.sub(date.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ"), path.name)
    target = out_dir / name
    shifted = [_shift(r, delta) for r in records]
    for record in shifted:
        if record.get("record") == "summary" and "results_file" in record:
            record["results_file"] = summary_path(target)
    out_dir.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in shifted))
    return target


@dataclass
class ScenarioOutcome:
    scenario: Scenario
    run: ProbeRun
    rows: list[Row] = field(default_factory=list)
    results_file: Path | None = None

    @property
    def passed(self) -> bool:
        return self.run.summary is not None and bool(self.rows) and all(
            r.passed for r in self.rows)


def play(lab: Lab, scenario: Scenario, output: Path, network_type: str | None = None,
         timeout_s: float | None = None) -> ScenarioOutcome:
    """Apply ``scenario`` in ``lab``, run the probe, compare verdicts with expectations."""
    apply_scenario(lab, scenario)
    run = run_probe(lab, output, network_type or scenario.network_type, timeout_s)
    rows = compare(run.summary, scenario) if run.summary else []
    results = None
    if run.summary and run.summary.get("results_file"):
        results = Path(run.summary["results_file"])
    return ScenarioOutcome(scenario, run, rows, results)


def replay(lab: Lab, plan: Replay, output: Path, timeout_s: float | None = None,
           progress: Callable[[int, str], None] | None = None) -> list[ScenarioOutcome]:
    """Run every phase of ``plan`` in order; re-dated results files go to ``output``."""
    outcomes = []
    work = output / ".runs"
    for index, phase in enumerate(plan.phases, 1):
        if progress:
            progress(index, f"{phase.date:%Y-%m-%d} {phase.network_type}: {phase.scenario}")
        scenario = load_scenario(plan.path.parent / f"{phase.scenario}.toml")
        outcome = play(lab, scenario, work / str(index), phase.network_type, timeout_s)
        if outcome.results_file is not None and outcome.results_file.exists():
            outcome.results_file = redate_results(outcome.results_file, phase.date, output)
        outcomes.append(outcome)
    lab.clear_rules()
    return outcomes
