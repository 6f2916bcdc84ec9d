"""Before/after comparison of two runs (DESIGN.md "Comparison and timeline").

For every service and function present in either run, the change from run A (before) to
run B (after) is one of:

- ``newly_blocked``: the function worked (``ok``) and is now ``blocked`` or ``impaired``;
- ``restored``: it was ``blocked`` or ``impaired`` and is now ``ok``;
- ``method_changed``: blocked or impaired in both, by a different set of methods;
- ``fraction_changed``: same status class and methods, but a different fraction of
  reachable endpoints (e.g. blocked -> impaired, or 0/3 -> 1/3 relays).

A function that is ``inconclusive`` (or absent) on either side cannot be compared and
yields no change. Runs from different networks (ASN or network type) are refused unless
forced: a difference between two networks is not a change over time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from probe.analysis.summaries import RunSummary, function_methods, function_status

Record = dict[str, Any]
BAD = frozenset({"blocked", "impaired"})
KINDS = ("newly_blocked", "restored", "method_changed", "fraction_changed")


class NetworkMismatch(Exception):
    """The two runs were made on different networks."""


@dataclass(frozen=True, slots=True)
class Change:
    service: str
    function: str
    before: str
    after: str
    kind: str
    methods_before: tuple[str, ...]
    methods_after: tuple[str, ...]
    reachable_before: tuple[int, int]
    reachable_after: tuple[int, int]

    def to_json(self) -> Record:
        return {"service": self.service, "function": self.function, "before": self.before,
                "after": self.after, "kind": self.kind,
                "methods_before": list(self.methods_before),
                "methods_after": list(self.methods_after)}


@dataclass(frozen=True, slots=True)
class Row:
    """One service function side by side (for the table), with its change if any."""

    service: str
    function: str
    before: Record | None
    after: Record | None
    change: Change | None


@dataclass(frozen=True, slots=True)
class Comparison:
    before: RunSummary
    after: RunSummary
    rows: tuple[Row, ...]

    @property
    def changes(self) -> list[Change]:
        return [r.change for r in self.rows if r.change is not None]

    def to_json(self) -> Record:
        return {"before": self.before.run_summary(), "after": self.after.run_summary(),
                "changes": [c.to_json() for c in self.changes]}


def network_difference(a: RunSummary, b: RunSummary) -> str | None:
    """Why two runs are not from the same network, or ``None`` when they are."""
    diffs = []
    if a.asn != b.asn:
        diffs.append(f"ASN {a.asn} vs {b.asn}")
    if a.network_type != b.network_type:
        diffs.append(f"network type {a.network_type} vs {b.network_type}")
    return ", ".join(diffs) or None


def _fraction(verdict: Record) -> tuple[int, int]:
    reachable, total = verdict.get("reachable"), verdict.get("total")
    ok = isinstance(reachable, int) and isinstance(total, int)
    return (reachable, total) if ok else (0, 0)  # type: ignore[return-value]


def _same_fraction(a: tuple[int, int], b: tuple[int, int]) -> bool:
    # Cross-multiplied: 1/3 equals 2/6 (the target list may have grown), no float error.
    return a[0] * b[1] == b[0] * a[1] and (a[1] == 0) == (b[1] == 0)


def classify_change(service: str, function: str, before: Record | None,
                    after: Record | None) -> Change | None:
    if before is None or after is None:
        return None
    sb, sa = function_status(before), function_status(after)
    if "inconclusive" in (sb, sa):
        return None
    mb, ma = function_methods(before), function_methods(after)
    fb, fa = _fraction(before), _fraction(after)
    if sb == "ok" and sa in BAD:
        kind = "newly_blocked"
    elif sb in BAD and sa == "ok":
        kind = "restored"
    elif sb in BAD and sa in BAD and mb != ma:
        kind = "method_changed"
    elif sb != sa or not _same_fraction(fb, fa):
        kind = "fraction_changed"
    else:
        return None
    return Change(service, function, sb, sa, kind, mb, ma, fb, fa)


def compare(before: RunSummary, after: RunSummary, *, force: bool = False) -> Comparison:
    """Compare two runs; raises :class:`NetworkMismatch` unless ``force``."""
    diff = network_difference(before, after)
    if diff is not None and not force:
        raise NetworkMismatch(
            f"{before.path} and {after.path} were measured on different networks ({diff}); "
            "a difference between networks is not a change over time. Use --force to "
            "compare them anyway.")
    a = {(s, f): v for s, f, v in before.functions()}
    b = {(s, f): v for s, f, v in after.functions()}
    order = list(dict.fromkeys([*a, *b]))
    rows = tuple(Row(s, f, a.get((s, f)), b.get((s, f)),
                     classify_change(s, f, a.get((s, f)), b.get((s, f)))) for s, f in order)
    return Comparison(before, after, rows)
