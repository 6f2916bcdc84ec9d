"""The status page's aggregation: SQL tables kept up to date on each upload.

The status page (and ``GET /api/v1/events``) must not read the measurements: a year of
runs from thousands of probes is millions of rows. So, inside each upload's
transaction (:meth:`StatusIndex.add`), the run's verdicts are folded into small tables
of their own (all named ``status_*``, for SQLite and PostgreSQL alike):

- ``status_obs``: one row per run, service and function (network, probe pseudonym,
  time, status, methods): the input of everything below, and what a rebuild reads.
- ``status_daily``: runs per day, network, service, function and status, for the
  charts; updated by one ``INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE``
  over the upload's ``status_obs`` rows.
- ``status_probes``: the crowd rule's state of each probe
  (:class:`probe.analysis.crowd.ProbeState`), advanced by the new run only (a run older
  than the probe's latest, e.g. a late upload from a spool, refolds that probe's history
  of that function).
- ``status_changes``: each probe's settled changes.
- ``status_events`` and ``status_keys``: per network, service and function, the events
  with their confidence and the current status, recomputed from the two tables above
  for the functions the upload touched (:mod:`probe.analysis.crowd`). ``status_keys``
  rows are locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite has one writer) so
  two uploads on one network are folded one after the other, and carry a ``version``
  that the page cache compares.

Runs of an offline network count as inconclusive (as in ``voip-probe timeline``).
Partial uploads (a crashed run, no summary line) carry no verdicts and are left out.
Rule parameters that change how probes are folded (window, impaired) are stored; a
collector started with other values rebuilds the tables from ``status_obs``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from probe.analysis import crowd
from probe.collector.db import Connection, Database
from probe.collector.filters import STATUS_COLUMNS, Filters
from probe.collector.validate import Upload, network_type
from probe.model import STATUSES

Key = tuple[str, str, str, str, str]  # cc, asn, network type, service, function
Network = tuple[str, str, str]

# Every table but status_meta starts with the key: network, service and function.
_KEY_DDL = ("cc TEXT NOT NULL, asn TEXT NOT NULL, network_type TEXT NOT NULL, "
            "service TEXT NOT NULL, function TEXT NOT NULL,")
_TABLES = f"""
CREATE TABLE IF NOT EXISTS status_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS status_obs (
    upload_id TEXT NOT NULL,
    {_KEY_DDL}
    probe TEXT NOT NULL,
    at TEXT NOT NULL,
    status TEXT NOT NULL,
    methods TEXT NOT NULL,
    PRIMARY KEY (upload_id, service, function)
);
CREATE INDEX IF NOT EXISTS status_obs_probe
    ON status_obs (cc, asn, network_type, probe, service, function, at);
CREATE TABLE IF NOT EXISTS status_daily (
    {_KEY_DDL}
    day TEXT NOT NULL,
    ok INTEGER NOT NULL,
    impaired INTEGER NOT NULL,
    blocked INTEGER NOT NULL,
    inconclusive INTEGER NOT NULL,
    PRIMARY KEY (cc, asn, network_type, service, function, day)
);
CREATE TABLE IF NOT EXISTS status_probes (
    {_KEY_DDL}
    probe TEXT NOT NULL,
    total INTEGER NOT NULL,
    conclusive INTEGER NOT NULL,
    flaps INTEGER NOT NULL,
    settled INTEGER,
    settled_since TEXT,
    state_methods TEXT NOT NULL,
    last_at TEXT,
    last_status TEXT NOT NULL,
    last_conclusive_at TEXT,
    last_conclusive_status TEXT,
    last_flap_at TEXT,
    cand_since TEXT,
    cand_previous TEXT,
    cand_methods TEXT NOT NULL,
    weight DOUBLE PRECISION NOT NULL,
    last_s DOUBLE PRECISION NOT NULL,
    last_conclusive_s DOUBLE PRECISION,
    PRIMARY KEY (cc, asn, network_type, service, function, probe)
);
CREATE TABLE IF NOT EXISTS status_changes (
    {_KEY_DDL}
    probe TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    previous TEXT NOT NULL,
    methods TEXT NOT NULL,
    PRIMARY KEY (cc, asn, network_type, service, function, probe, at)
);
CREATE TABLE IF NOT EXISTS status_keys (
    {_KEY_DDL}
    status TEXT NOT NULL,
    probes INTEGER NOT NULL,
    as_of TEXT,
    since TEXT,
    first_at TEXT,
    runs INTEGER NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (cc, asn, network_type, service, function)
);
CREATE TABLE IF NOT EXISTS status_events (
    {_KEY_DDL}
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    previous TEXT NOT NULL,
    last_at TEXT NOT NULL,
    methods TEXT NOT NULL,
    probes INTEGER NOT NULL,
    weight DOUBLE PRECISION NOT NULL,
    confidence TEXT NOT NULL,
    pending INTEGER NOT NULL,
    PRIMARY KEY (cc, asn, network_type, service, function, kind, at)
);
CREATE INDEX IF NOT EXISTS status_events_at ON status_events (at);
"""

_PROBE_COLUMNS = (
    "total, conclusive, flaps, settled, settled_since, state_methods, last_at, "
    "last_status, last_conclusive_at, last_conclusive_status, last_flap_at, cand_since, "
    "cand_previous, cand_methods")
# Derived from the state, kept for the SQL aggregates of _grade (weights, time windows).
_DERIVED_COLUMNS = "weight, last_s, last_conclusive_s"
_KEY_COLUMNS = "cc, asn, network_type, service, function"
_EVENT_COLUMNS = ("cc, asn, network_type, service, function, kind, at, previous, last_at, "
                  "methods, probes, weight, confidence, pending")


def _methods_text(methods: Iterable[str]) -> str:
    return ",".join(sorted(set(methods)))


def _methods(text: str | None) -> tuple[str, ...]:
    return tuple(m for m in (text or "").split(",") if m)


def _state_row(st: crowd.ProbeState) -> tuple[Any, ...]:
    assert st.last_at is not None  # a stored probe has had a run
    return (st.total, st.conclusive, st.flaps,
            None if st.settled is None else int(st.settled), st.settled_since,
            _methods_text(st.state_methods), st.last_at, st.last_status,
            st.last_conclusive_at, st.last_conclusive_status, st.last_flap_at,
            st.cand_since, st.cand_previous, _methods_text(st.cand_methods),
            st.weight, crowd.seconds(st.last_at),
            crowd.seconds(st.last_conclusive_at) if st.last_conclusive_at else None)


def _state(row: Sequence[Any]) -> crowd.ProbeState:
    return crowd.ProbeState(
        total=int(row[0]), conclusive=int(row[1]), flaps=int(row[2]),
        settled=None if row[3] is None else bool(row[3]), settled_since=row[4],
        state_methods=_methods(row[5]), last_at=row[6], last_status=row[7],
        last_conclusive_at=row[8], last_conclusive_status=row[9], last_flap_at=row[10],
        cand_since=row[11], cand_previous=row[12], cand_methods=_methods(row[13]))


def pseudonym_of(upload: Upload) -> str:
    """The probe's pseudonym from the first measurement that carries a well-formed one;
    :data:`probe.analysis.crowd.ANONYMOUS` otherwise (older files, or an opted-out probe)."""
    return upload.pseudonym or crowd.ANONYMOUS


@dataclass(frozen=True, slots=True)
class Observation:
    key: Key
    probe: str
    obs: crowd.Observation


def observations(upload: Upload) -> list[Observation]:
    """The run's verdicts, one per service function (none for a partial upload)."""
    summary = upload.summary
    if summary is None:
        return []
    network = (str(summary["probe_cc"]), str(summary["probe_asn"]), network_type(upload))
    offline = summary["network"].get("status") == "offline"
    probe = pseudonym_of(upload)
    at = str(summary["measurement_start_time"])
    out = []
    for service, svc in summary["services"].items():
        for function, fn in (svc.get("functions") or {}).items():
            status = fn["status"] if fn["status"] in STATUSES and not offline \
                else "inconclusive"
            methods = tuple(sorted({str(m)[:64] for m in fn.get("methods") or []}))
            out.append(Observation((*network, service, function), probe,
                                   crowd.Observation(at, status, methods)))
    return out


class StatusIndex:
    """Maintains the ``status_*`` tables of one database (module docstring)."""

    def __init__(self, db: Database, rule: crowd.Rule | None = None) -> None:
        self.db = db
        self.rule = rule or crowd.Rule()

    # -- schema and rebuilds ---------------------------------------------------------

    def create_schema(self) -> None:
        with self.db.connection() as conn:
            if conn.kind == "sqlite":
                conn.raw.executescript(_TABLES)
            else:
                with conn.transaction():
                    for stmt in _TABLES.split(";"):
                        if stmt.strip():
                            conn.execute(stmt)

    def _rule_signature(self) -> str:
        return f"window_s={self.rule.window_s:g};impaired_is_down={self.rule.impaired_is_down}"

    def _events_signature(self) -> str:
        return f"probes={self.rule.probes:g};min_weight={self.rule.min_weight:g}"

    def ensure_current(self) -> str | None:
        """Rebuild what depends on rule parameters that differ from the stored ones.
        Returns what was done (for the log), ``None`` when nothing was needed."""
        with self.db.connection() as conn:
            rows = dict(conn.fetchall("SELECT name, value FROM status_meta"))
        fold, grade = self._rule_signature(), self._events_signature()
        done = None
        if rows.get("fold") != fold:
            self.rebuild()
            done = "refolded every probe"
        elif rows.get("grade") != grade:
            self.regrade()
            done = "regraded every event"
        with self.db.connection() as conn:
            with conn.transaction():
                for name, value in (("fold", fold), ("grade", grade)):
                    conn.execute("DELETE FROM status_meta WHERE name = ?", (name,))
                    conn.execute("INSERT INTO status_meta (name, value) VALUES (?, ?)",
                                 (name, value))
        return done

    def rebuild(self) -> None:
        """Refold every probe from ``status_obs`` (rule changed)."""
        with self.db.connection() as conn:
            networks = conn.fetchall("SELECT DISTINCT cc, asn, network_type FROM status_obs")
        for network in networks:
            with self.db.connection() as conn:
                with conn.transaction():
                    keys = [tuple(r) for r in conn.fetchall(
                        f"SELECT DISTINCT {_KEY_COLUMNS} FROM status_obs "
                        "WHERE cc = ? AND asn = ? AND network_type = ?", network)]
                    self._lock(conn, keys)
                    probes = conn.fetchall(
                        "SELECT DISTINCT probe, service, function FROM status_obs "
                        "WHERE cc = ? AND asn = ? AND network_type = ?", network)
                    for probe, service, function in probes:
                        self._refold(conn, (*network, service, function), probe)
                    self._grade(conn, keys)

    def regrade(self) -> None:
        """Recompute events and current status of every key (K or min_weight changed)."""
        with self.db.connection() as conn:
            keys = [tuple(r) for r in conn.fetchall(f"SELECT {_KEY_COLUMNS} FROM status_keys")]
        for i in range(0, len(keys), 200):
            with self.db.connection() as conn:
                with conn.transaction():
                    batch: list[Key] = keys[i:i + 200]
                    self._lock(conn, batch)
                    self._grade(conn, batch)

    def uploads_without_runs(self, after: str = "", limit: int = 500) -> list[str]:
        """Complete uploads (ids after ``after``, in id order) with no row in
        ``status_obs``: stored before this index existed. :meth:`add` them to catch up."""
        with self.db.connection() as conn:
            rows = conn.fetchall(
                "SELECT id FROM uploads WHERE complete = 1 AND id > ? AND NOT EXISTS "
                "(SELECT 1 FROM status_obs o WHERE o.upload_id = uploads.id) "
                "ORDER BY id LIMIT ?", (after, limit))
        return [str(r[0]) for r in rows]

    # -- one upload ------------------------------------------------------------------

    def add(self, conn: Connection, upload: Upload) -> int:
        """Fold one upload's runs in, inside the caller's transaction. Returns how many
        service functions it touched."""
        rows = observations(upload)
        if not rows:
            return 0
        conn.executemany(
            "INSERT INTO status_obs (upload_id, cc, asn, network_type, service, function, "
            "probe, at, status, methods) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(upload.sha256, *r.key, r.probe, r.obs.at, r.obs.status,
              _methods_text(r.obs.methods)) for r in rows])
        self._add_daily(conn, upload.sha256, +1)
        keys = sorted({r.key for r in rows})
        self._lock(conn, keys)
        network: Network = keys[0][:3]
        probe = rows[0].probe
        states = {
            (str(r[0]), str(r[1])): _state(r[2:])
            for r in conn.fetchall(
                f"SELECT service, function, {_PROBE_COLUMNS} FROM status_probes "
                "WHERE cc = ? AND asn = ? AND network_type = ? AND probe = ?",
                (*network, probe))
        }
        new_states: list[tuple[Any, ...]] = []
        new_changes: list[tuple[Any, ...]] = []
        for r in rows:
            service_function = r.key[3:]
            old = states.get(service_function)
            if old is not None and old.last_at is not None and r.obs.at < old.last_at:
                self._refold(conn, r.key, probe)  # a late run: fold its history again
                continue
            state, settled = crowd.advance(old or crowd.ProbeState(), r.obs, self.rule, probe)
            new_states.append((*r.key, probe, *_state_row(state)))
            new_changes.extend(self._change_row(r.key, c) for c in settled)
        self._write_states(conn, new_states)
        self._write_changes(conn, new_changes)
        self._grade(conn, keys)
        return len(rows)

    def remove(self, conn: Connection, upload_id: str) -> None:
        """Take one upload out (it is being deleted), inside the caller's transaction."""
        rows = conn.fetchall(
            f"SELECT DISTINCT {_KEY_COLUMNS}, probe FROM status_obs WHERE upload_id = ?",
            (upload_id,))
        if not rows:
            return
        keys = sorted({tuple(r[:5]) for r in rows})
        self._lock(conn, keys)
        self._add_daily(conn, upload_id, -1)
        conn.execute("DELETE FROM status_obs WHERE upload_id = ?", (upload_id,))
        for r in rows:
            self._refold(conn, tuple(r[:5]), str(r[5]))
        self._grade(conn, keys)

    def _add_daily(self, conn: Connection, upload_id: str, sign: int) -> None:
        counts = ", ".join(
            f"{sign} * SUM(CASE WHEN status = '{s}' THEN 1 ELSE 0 END)" for s in STATUSES)
        updates = ", ".join(f"{s} = status_daily.{s} + excluded.{s}" for s in STATUSES)
        conn.execute(
            f"INSERT INTO status_daily ({_KEY_COLUMNS}, day, {', '.join(STATUSES)}) "
            f"SELECT {_KEY_COLUMNS}, SUBSTR(at, 1, 10), {counts} FROM status_obs "
            f"WHERE upload_id = ? GROUP BY {_KEY_COLUMNS}, SUBSTR(at, 1, 10) "
            f"ON CONFLICT ({_KEY_COLUMNS}, day) DO UPDATE SET {updates}",
            (upload_id,))
        if sign < 0:
            conn.execute("DELETE FROM status_daily WHERE ok + impaired + blocked + "
                         "inconclusive <= 0")

    def _lock(self, conn: Connection, keys: Sequence[Key]) -> None:
        """Create the keys' rows and lock them (PostgreSQL; SQLite has one writer at a
        time), always in key order, so two transactions never wait on each other."""
        conn.executemany(
            f"INSERT INTO status_keys ({_KEY_COLUMNS}, status, probes, runs, version) "
            "VALUES (?, ?, ?, ?, ?, 'inconclusive', 0, 0, 0) ON CONFLICT DO NOTHING",
            sorted(keys))
        if conn.kind != "postgresql":
            return
        for network in sorted({k[:3] for k in keys}):
            pairs = sorted(k[3:] for k in keys if k[:3] == network)
            conn.execute(
                "SELECT 1 FROM status_keys WHERE cc = ? AND asn = ? AND network_type = ? "
                f"AND (service, function) IN ({', '.join(['(?, ?)'] * len(pairs))}) "
                "ORDER BY service, function FOR UPDATE",
                (*network, *(x for pair in pairs for x in pair)))

    def _refold(self, conn: Connection, key: Key, probe: str) -> None:
        where = ("cc = ? AND asn = ? AND network_type = ? AND service = ? AND function = ? "
                 "AND probe = ?")
        history = [crowd.Observation(str(r[0]), str(r[1]), _methods(r[2]))
                   for r in conn.fetchall(
                       f"SELECT at, status, methods FROM status_obs WHERE {where} "
                       "ORDER BY at, upload_id", (*key, probe))]
        conn.execute(f"DELETE FROM status_changes WHERE {where}", (*key, probe))
        conn.execute(f"DELETE FROM status_probes WHERE {where}", (*key, probe))
        if not history:
            return
        state, changes = crowd.fold(history, self.rule, probe)
        self._write_states(conn, [(*key, probe, *_state_row(state))])
        self._write_changes(conn, [self._change_row(key, c) for c in changes])

    @staticmethod
    def _change_row(key: Key, c: crowd.ProbeChange) -> tuple[Any, ...]:
        return (*key, c.probe, c.kind, c.at, c.previous, _methods_text(c.methods))

    def _write_states(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        names = [n.strip() for n in f"{_PROBE_COLUMNS}, {_DERIVED_COLUMNS}".split(",")]
        conn.executemany(
            f"INSERT INTO status_probes ({_KEY_COLUMNS}, probe, {_PROBE_COLUMNS}, "
            f"{_DERIVED_COLUMNS}) VALUES "
            f"({', '.join('?' * (6 + len(names)))}) "
            f"ON CONFLICT ({_KEY_COLUMNS}, probe) DO UPDATE SET "
            + ", ".join(f"{n} = excluded.{n}" for n in names), rows)

    def _write_changes(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        conn.executemany(
            f"INSERT INTO status_changes ({_KEY_COLUMNS}, probe, kind, at, previous, methods) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)

    def _grade(self, conn: Connection, keys: Sequence[Key]) -> None:
        """Events and current status of ``keys``. The work grows with the changes and
        open candidates of those keys, not with their probes: the current status is an
        SQL aggregate over the probes' latest states (weights summed per status among
        the probes seen within the window before the latest run)."""
        for network in sorted({k[:3] for k in keys}):
            wanted = {k[3:] for k in keys if k[:3] == network}
            on = " AND ".join(f"c.{c} = p.{c}" for c in (*_KEY_COLUMNS.split(", "), "probe"))
            changes: dict[tuple[str, str], list[crowd.ProbeChange]] = {}
            weights: dict[tuple[str, str], dict[str, float]] = {}
            for r in conn.fetchall(
                    "SELECT c.service, c.function, c.probe, c.kind, c.at, c.previous, "
                    f"c.methods, p.weight FROM status_changes c JOIN status_probes p ON {on} "
                    "WHERE c.cc = ? AND c.asn = ? AND c.network_type = ?", network):
                changes.setdefault((r[0], r[1]), []).append(crowd.ProbeChange(
                    str(r[2]), str(r[3]), str(r[4]), str(r[5]), _methods(r[6])))
                weights.setdefault((r[0], r[1]), {})[str(r[2])] = float(r[7])
            for r in conn.fetchall(
                    f"SELECT service, function, probe, {_PROBE_COLUMNS} FROM status_probes "
                    "WHERE cc = ? AND asn = ? AND network_type = ? AND cand_since IS NOT NULL",
                    network):
                state = _state(r[3:])
                pending = crowd.pending_change(state, self.rule, str(r[2]))
                if pending is not None:
                    changes.setdefault((r[0], r[1]), []).append(pending)
                    weights.setdefault((r[0], r[1]), {})[str(r[2])] = state.weight
            summary = {
                (r[0], r[1]): r[2:] for r in conn.fetchall(
                    "SELECT service, function, MAX(last_at), MAX(last_s), MIN(settled_since), "
                    "SUM(total) FROM status_probes WHERE cc = ? AND asn = ? AND "
                    "network_type = ? GROUP BY service, function", network)}
            votes: dict[tuple[str, str], dict[str, tuple[float, int]]] = {}
            recent: dict[tuple[str, str], int] = {}
            for r in conn.fetchall(
                    "SELECT service, function, last_conclusive_status, fresh, COUNT(*), "
                    "SUM(weight) FROM (SELECT service, function, last_conclusive_status, "
                    "weight, last_s, MAX(last_s) OVER w AS newest, "
                    "CASE WHEN last_conclusive_s >= MAX(last_s) OVER w - ? THEN 1 ELSE 0 END "
                    "AS fresh FROM status_probes WHERE cc = ? AND asn = ? AND "
                    "network_type = ? WINDOW w AS (PARTITION BY service, function)) probes "
                    "WHERE last_s >= newest - ? "
                    "GROUP BY service, function, last_conclusive_status, fresh",
                    (self.rule.window_s, *network, self.rule.window_s)):
                sf = (r[0], r[1])
                recent[sf] = recent.get(sf, 0) + int(r[4])
                if r[2] is not None and r[3]:
                    votes.setdefault(sf, {})[str(r[2])] = (float(r[5]), int(r[4]))
            event_rows: list[tuple[Any, ...]] = []
            key_rows: list[tuple[Any, ...]] = []
            for sf in sorted(wanted):
                key = (*network, *sf)
                found = crowd.events(changes.get(sf, []), weights.get(sf, {}), self.rule)
                event_rows.extend(
                    (*key, e.kind, e.at, e.previous, e.last_at, _methods_text(e.methods),
                     e.probes, e.weight, e.confidence, int(e.pending)) for e in found)
                as_of, _last_s, first_at, runs = summary.get(sf, (None, None, None, 0))
                cur = crowd.decide(votes.get(sf, {}), recent.get(sf, 0), as_of, self.rule)
                key_rows.append((cur.status, cur.probes, cur.as_of,
                                 _since(found, cur.status, first_at, self.rule), first_at,
                                 int(runs or 0), *key))
            pairs = sorted(wanted)
            conn.execute(
                "DELETE FROM status_events WHERE cc = ? AND asn = ? AND network_type = ? "
                f"AND (service, function) IN ({', '.join(['(?, ?)'] * len(pairs))})",
                (*network, *(x for pair in pairs for x in pair)))
            conn.executemany(
                f"INSERT INTO status_events ({_EVENT_COLUMNS}) VALUES "
                f"({', '.join('?' * 14)})", event_rows)
            conn.executemany(
                "UPDATE status_keys SET status = ?, probes = ?, as_of = ?, since = ?, "
                "first_at = ?, runs = ?, version = version + 1 WHERE cc = ? AND asn = ? "
                "AND network_type = ? AND service = ? AND function = ?", key_rows)


def _since(events: list[crowd.Event], status: str, first_at: str | None,
           rule: crowd.Rule) -> str | None:
    """When the current state began: the latest event into it, else the first run."""
    down = rule.state_of(status)
    if down is not None:
        kind = "onset" if down else "restoration"
        matching = [e.at for e in events if e.kind == kind]
        if matching:
            return max(matching)
    return first_at


# -- reading (the status page and GET /api/v1/events) --------------------------------

def _event_dict(r: Sequence[Any]) -> dict[str, Any]:
    return {"cc": r[0], "asn": r[1], "network_type": r[2], "service": r[3],
            "function": r[4], "kind": r[5], "at": r[6], "previous": r[7], "last_at": r[8],
            "methods": list(_methods(r[9])), "probes": int(r[10]),
            "weight": float(r[11]), "confidence": r[12], "pending": bool(r[13])}


class StatusReader:
    """Queries over the ``status_*`` tables; each is one indexed read."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def generation(self, filters: Filters | None = None) -> tuple[int, int]:
        """Changes whenever the data behind a page with these filters may have changed:
        (sum of the keys' versions, number of keys)."""
        where, params = (filters or Filters()).where(None, STATUS_COLUMNS)
        with self.db.connection() as conn:
            row = conn.fetchone(
                f"SELECT COALESCE(SUM(version), 0), COUNT(*) FROM status_keys WHERE {where}",
                params)
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def events(self, filters: Filters, confidence: str | None = None,
               limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        """Events, newest first (``since``/``until`` bound their ``at``)."""
        where, params = filters.where("at", STATUS_COLUMNS)
        if confidence is not None:
            where += " AND confidence = ?"
            params.append(confidence)
        with self.db.connection() as conn:
            rows = conn.fetchall(
                f"SELECT {_EVENT_COLUMNS} FROM status_events WHERE {where} "
                f"ORDER BY at DESC, {_KEY_COLUMNS}, kind LIMIT ? OFFSET ?",
                (*params, limit, offset))
        return [_event_dict(r) for r in rows]

    def current(self, filters: Filters) -> list[dict[str, Any]]:
        """Per network, service and function: the current status (``since``/``until``
        keep the functions seen in that period)."""
        where, params = filters.where(None, STATUS_COLUMNS)
        if filters.since is not None:
            where += " AND as_of >= ?"
            params.append(filters.since)
        if filters.until is not None:
            where += " AND first_at <= ?"
            params.append(filters.until)
        with self.db.connection() as conn:
            rows = conn.fetchall(
                f"SELECT {_KEY_COLUMNS}, status, probes, as_of, since, first_at, runs "
                f"FROM status_keys WHERE {where} AND runs > 0 ORDER BY {_KEY_COLUMNS}",
                params)
        return [{"cc": r[0], "asn": r[1], "network_type": r[2], "service": r[3],
                 "function": r[4], "status": r[5], "probes": int(r[6]), "as_of": r[7],
                 "since": r[8], "first_at": r[9], "runs": int(r[10])} for r in rows]

    def daily(self, filters: Filters) -> list[dict[str, Any]]:
        """Runs per day and status, for the charts."""
        where, params = filters.where("day", STATUS_COLUMNS)
        with self.db.connection() as conn:
            rows = conn.fetchall(
                f"SELECT {_KEY_COLUMNS}, day, {', '.join(STATUSES)} FROM status_daily "
                f"WHERE {where} ORDER BY {_KEY_COLUMNS}, day", params)
        return [{"cc": r[0], "asn": r[1], "network_type": r[2], "service": r[3],
                 "function": r[4], "day": r[5],
                 "counts": {s: int(v) for s, v in zip(STATUSES, r[6:], strict=True)}}
                for r in rows]
