"""``voip-probe lab up|down|list|run|replay``: the censorship lab (needs root).

Parse options, call :mod:`probe.lab`, render. ``lab run`` exits 0 when every expected
verdict was reached, 1 when some was not; ``lab replay`` likewise over all phases.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from probe.cli.app import app
from probe.cli.common import (
    EXIT_FOUND,
    EXIT_OK,
    UsageError,
    command_boundary,
    fail,
    load_run,
    stderr_console,
    tracked_files,
    warner,
)

if TYPE_CHECKING:
    from rich.console import Console

lab_app = typer.Typer(
    name="lab",
    help="The censorship lab: network namespaces with real servers and a censor that "
         "reproduces each blocking method. Needs root.",
    no_args_is_help=True,
)
app.add_typer(lab_app, name="lab")

T = TypeVar("T")

TargetsOpt = Annotated[list[Path] | None, typer.Option(
    "--targets", help="Targets files to build the lab from (default: the shipped ones).")]
PrefixOpt = Annotated[str | None, typer.Option(
    "--prefix", help="Lab name prefix (default: random). With run/replay: reuse a lab "
                     "that `lab up` started.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine output on stdout.")]
OutputOpt = Annotated[Path | None, typer.Option(
    "--output", help="Results directory (default: ./results/lab/SCENARIO; for a replay, "
                     "./results/lab-replay/NAME, its files re-dated to the phases).")]
TimeoutOpt = Annotated[float | None, typer.Option(
    "--timeout", help="Per-check timeout passed to the probe, in seconds.")]


def _need_root() -> None:
    from probe.lab.lab import require_root

    reason = require_root()
    if reason is not None:
        fail(reason)


def _console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _lab_facts(lab: Any) -> dict[str, Any]:
    from probe.lab import addresses as A

    return {"prefix": lab.prefix, "namespaces": lab.ns, "client_namespace": lab.ns["client"],
            "ca_bundle": str(lab.ca_bundle), "targets": [str(p) for p in lab.target_files],
            "resolver": A.RESOLVER, "reflector": lab.reflector, "echo": A.ECHO,
            "censor_hop": lab.censor_hop, "censor_address": lab.censor_address,
            "client_address": lab.client_address, "hosts": lab.targets.plan.addresses}


@lab_app.command("up")
def up(targets: TargetsOpt = None, prefix: PrefixOpt = None, json_out: JsonOpt = False) -> None:
    """Build a lab and leave it running; prints its prefix (use it with `lab down`)."""
    with command_boundary():
        _need_root()
        from probe.lab.lab import Lab

        lab = Lab(targets=targets, prefix=prefix, persistent=True)
        try:
            lab.up()
        except BaseException:
            lab.down()
            raise
        facts = _lab_facts(lab)
        if json_out:
            print(json.dumps(facts, indent=1))
        console = _console()
        console.print(f"lab [bold]{lab.prefix}[/] is up: client namespace {lab.ns['client']}, "
                      f"resolver {facts['resolver']}, CA {facts['ca_bundle']}, censor at hop "
                      f"{lab.censor_hop} ({lab.censor_address}). "
                      f"Run commands with: ip netns exec {lab.ns['client']} ...; "
                      f"remove with: voip-probe lab down {lab.prefix}", highlight=False)


@lab_app.command("down")
def down(
    prefix: Annotated[str | None, typer.Argument(help="The prefix `lab up` printed.")] = None,
    stale: Annotated[bool, typer.Option(
        "--stale", help="Remove every lab whose owning process (a test run) is gone.")] = False,
) -> None:
    """Remove a lab: namespaces, processes, /etc/netns entries, state."""
    with command_boundary():
        _need_root()
        from probe.lab.lab import Lab, cleanup_stale
        from probe.lab.netns import LabError

        if stale:
            removed = cleanup_stale()
            _console().print(f"removed {len(removed)} stale lab(s): {', '.join(removed)}")
            if prefix is None:
                return
        if prefix is None:
            raise UsageError("give the prefix of the lab to remove (see `voip-probe lab list`)")
        try:
            lab = Lab.attach(prefix)
        except LabError:
            lab = Lab(targets=[], prefix=prefix)  # half-built or stateless: remove by name
        lab.down()
        _console().print(f"lab {prefix} removed")


@lab_app.command("list")
def list_labs(json_out: JsonOpt = False) -> None:
    """Labs that are up on this machine (from /run/voip-probe-lab)."""
    with command_boundary():
        from probe.lab.lab import STATE_ROOT, owner_alive

        labs = []
        for state_file in sorted(STATE_ROOT.glob("*/state.json")):
            try:
                owner = json.loads(state_file.read_text()).get("owner")
            except (OSError, ValueError):
                owner = None
            labs.append({"prefix": state_file.parent.name, "owner": owner,
                         "stale": not owner_alive(owner)})
        if json_out:
            print(json.dumps(labs))
        lines = [f"{lab['prefix']}  " + ("persistent (lab up)" if lab["owner"] is None else
                 f"owner pid {lab['owner']}" + (" gone: stale" if lab["stale"] else ""))
                 for lab in labs]
        _console().print("\n".join(lines) if lines else "no lab is up", highlight=False)


def _open_lab(prefix: str | None, targets: list[Path] | None) -> tuple[Any, bool]:
    from probe.lab.lab import Lab

    if prefix is not None:
        return Lab.attach(prefix), False
    lab = Lab(targets=targets)
    try:
        lab.up()
    except BaseException:
        lab.down()
        raise
    return lab, True


def _load(loader: Callable[[Path], T], name: str) -> T:
    """A scenario or replay by name (configs/scenarios) or file; its errors are usage errors."""
    from probe.lab.scenarios import ScenarioError, scenario_path

    try:
        return loader(scenario_path(name))
    except ScenarioError as exc:
        raise UsageError(str(exc)) from exc


@contextmanager
def _lab_for(prefix: str | None, targets: list[Path] | None, keep: bool = False) -> Iterator[Any]:
    """Root is checked, then the lab `lab up` left (--prefix) or a new one; a new one is taken
    down afterwards unless ``keep``. A lab that cannot be opened is a usage error."""
    from probe.lab.netns import LabError

    _need_root()
    try:
        lab, owned = _open_lab(prefix, targets)
    except LabError as exc:
        raise UsageError(str(exc)) from exc
    try:
        yield lab
    finally:
        if owned and not keep:
            lab.down()


def _render_rows(title: str, outcome: Any) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in ("service", "function", "expected", "got", "methods expected", "methods got",
                   ""):
        table.add_column(column)
    for row in outcome.rows:
        mark = "[green]pass[/]" if row.passed else "[red]FAIL[/]"
        if row.passed and row.extra_methods:
            mark += f" [yellow](also {', '.join(row.extra_methods)})[/]"
        table.add_row(row.service, row.function, row.expected, row.actual,
                      ", ".join(row.expected_methods), ", ".join(row.actual_methods), mark)
    console = _console()
    console.print(table)
    if outcome.run.summary is None:
        console.print(f"[red]the probe gave no run summary (exit {outcome.run.exit_code}):[/]",
                      highlight=False)
        console.print(outcome.run.stderr[-2000:], highlight=False, markup=False)


def _outcome_json(outcome: Any) -> dict[str, Any]:
    return {"scenario": outcome.scenario.name, "passed": outcome.passed,
            "probe_exit_code": outcome.run.exit_code,
            "results_file": str(outcome.results_file) if outcome.results_file else None,
            "rows": [{"service": r.service, "function": r.function, "expected": r.expected,
                      "actual": r.actual, "expected_methods": list(r.expected_methods),
                      "actual_methods": list(r.actual_methods),
                      "extra_methods": list(r.extra_methods), "passed": r.passed}
                     for r in outcome.rows]}


@lab_app.command("run")
def run(
    scenario: Annotated[str, typer.Argument(help="Scenario name (configs/scenarios) or file.")],
    targets: TargetsOpt = None,
    prefix: PrefixOpt = None,
    output: OutputOpt = None,
    timeout: TimeoutOpt = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the lab up afterwards.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Bring a lab up, apply SCENARIO, run the probe in it, compare with the expected verdicts."""
    with command_boundary():
        from probe.lab.replay import play
        from probe.lab.scenarios import load_scenario

        loaded = _load(load_scenario, scenario)
        out = (output or Path("results") / "lab" / loaded.name).resolve()
        with _lab_for(prefix, targets, keep=keep) as lab:
            _console().print(f"lab {lab.prefix}: scenario [bold]{loaded.name}[/], probe running")
            outcome = play(lab, loaded, out, timeout_s=timeout)
        if json_out:
            print(json.dumps({"lab": lab.prefix, **_outcome_json(outcome)}, indent=1))
        _render_rows(f"{loaded.name}: {loaded.description}", outcome)
        raise typer.Exit(EXIT_OK if outcome.passed else EXIT_FOUND)


@lab_app.command("replay")
def replay_cmd(
    name: Annotated[str, typer.Argument(help="Replay name, e.g. morocco-2016.")],
    targets: TargetsOpt = None,
    prefix: PrefixOpt = None,
    output: OutputOpt = None,
    timeout: TimeoutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Replay a censorship event phase by phase; writes one results file per phase."""
    with command_boundary():
        from probe.lab.replay import replay
        from probe.lab.scenarios import load_replay

        plan = _load(load_replay, name)
        out = (output or Path("results") / "lab-replay" / plan.name).resolve()
        console = _console()
        total = len(plan.phases)
        with _lab_for(prefix, targets) as lab:
            outcomes = replay(lab, plan, out, timeout,
                              progress=lambda i, text: console.print(f"[{i}/{total}] {text}"))
        for phase, outcome in zip(plan.phases, outcomes, strict=True):
            _render_rows(f"{phase.date:%Y-%m-%d} {phase.network_type}: {phase.scenario}",
                         outcome)
        files = [o.results_file for o in outcomes if o.results_file]
        _show_analysis(out, plan, outcomes)
        if json_out:
            print(json.dumps({"replay": plan.name, "output": str(out),
                              "results_files": [str(f) for f in files],
                              "phases": [_outcome_json(o) for o in outcomes]}, indent=1))
        passed = all(o.passed for o in outcomes)
        console.print(f"{sum(o.passed for o in outcomes)}/{total} phases reached their "
                      f"expected verdicts; results in {out}")
        raise typer.Exit(EXIT_OK if passed else EXIT_FOUND)


def _show_analysis(out: Path, plan: Any, outcomes: list[Any]) -> None:
    """On stderr, what ``voip-probe compare`` shows at each change of scenario on a network,
    then what ``voip-probe timeline OUT`` shows (its default rule). A file that cannot be
    read or compared is one error line, as those commands print it; the replay's outcome
    stands."""
    from probe.analysis.compare import compare
    from probe.analysis.timeline import Rule, build_timeline
    from probe.cli.render import render_comparison, render_timeline

    console = stderr_console()
    warn = warner(console)
    last: dict[str, tuple[str, Path]] = {}
    for phase, outcome in zip(plan.phases, outcomes, strict=True):
        if outcome.results_file is None:
            continue
        before = last.get(phase.network_type)
        if before is not None and before[0] != phase.scenario:
            console.print(f"[bold]compare {phase.network_type}: {before[0]} -> "
                          f"{phase.scenario}[/]")
            with _error_line(console):
                runs = [load_run(path, warn) for path in (before[1], outcome.results_file)]
                render_comparison(console, compare(runs[0], runs[1]))
        last[phase.network_type] = (phase.scenario, outcome.results_file)
    console.print("[bold]timeline[/]")
    with _error_line(console):
        files, stream = tracked_files([out], console)
        render_timeline(console, build_timeline(stream, Rule(), warn), len(files))


@contextmanager
def _error_line(console: Console) -> Iterator[None]:
    """A file that cannot be read, or runs from two networks: one ``error:`` line."""
    from rich.markup import escape

    from probe.analysis.compare import NetworkMismatch
    from probe.results import ResultsError

    try:
        yield
    except (UsageError, ResultsError, NetworkMismatch, OSError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
