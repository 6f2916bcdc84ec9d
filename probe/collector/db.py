"""Database connections for the collector: SQLite (default) or PostgreSQL (psycopg 3).

Both are used through the same small interface, so :mod:`probe.collector.storage` has
one code path: SQL is written once with ``?`` placeholders (translated to ``%s`` for
psycopg), connections are in autocommit mode and transactions are explicit
(``BEGIN IMMEDIATE`` on SQLite so concurrent writers queue instead of deadlocking).
Only the table definitions differ (identity columns), see ``DDL``.

A database that cannot be reached or is locked for too long raises
:class:`StorageUnavailable`, which the API answers with 503.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

POOL_SIZE = 8
ACQUIRE_TIMEOUT_S = 15.0
SQLITE_BUSY_TIMEOUT_MS = 15_000
# The advisory lock the collectors sharing one PostgreSQL database take to create and
# update their tables (an arbitrary 64-bit number: "voipprob" in ASCII).
SCHEMA_LOCK_KEY = 0x766F697070726F62


class StorageUnavailable(Exception):
    """The database is down, unreachable or overloaded; the client should retry later."""


# The columns that place a run's verdict: which upload, day, network, service and function
# (run_functions and run_methods share them).
_RUN_KEY = """upload_id TEXT NOT NULL REFERENCES uploads(id),
    day TEXT NOT NULL,
    probe_asn TEXT NOT NULL,
    probe_cc TEXT NOT NULL,
    network_type TEXT NOT NULL,
    service TEXT NOT NULL,
    function TEXT NOT NULL,"""

_TABLES = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    report_id TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL,
    filename TEXT,
    size_bytes BIGINT NOT NULL,
    measurements INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    measurement_start_time TEXT NOT NULL,
    probe_asn TEXT NOT NULL,
    probe_cc TEXT NOT NULL,
    network_type TEXT NOT NULL,
    software_name TEXT,
    software_version TEXT
);
CREATE TABLE IF NOT EXISTS measurements (
    id {identity},
    upload_id TEXT NOT NULL REFERENCES uploads(id),
    line INTEGER NOT NULL,
    measurement_start_time TEXT NOT NULL,
    day TEXT NOT NULL,
    probe_asn TEXT NOT NULL,
    probe_cc TEXT NOT NULL,
    network_type TEXT NOT NULL,
    service TEXT NOT NULL,
    function TEXT NOT NULL,
    test_name TEXT NOT NULL,
    input TEXT,
    failure TEXT,
    record TEXT NOT NULL,
    UNIQUE (upload_id, line)
);
CREATE INDEX IF NOT EXISTS measurements_time ON measurements (measurement_start_time);
CREATE INDEX IF NOT EXISTS measurements_asn ON measurements (probe_asn, measurement_start_time);
CREATE INDEX IF NOT EXISTS measurements_service ON measurements (service, function);
CREATE TABLE IF NOT EXISTS run_functions (
    {run_key}
    status TEXT NOT NULL,
    reachable INTEGER NOT NULL,
    total INTEGER NOT NULL,
    PRIMARY KEY (upload_id, service, function)
);
CREATE INDEX IF NOT EXISTS run_functions_day ON run_functions (day, probe_asn);
CREATE TABLE IF NOT EXISTS blobs (
    id TEXT NOT NULL,
    part INTEGER NOT NULL,
    data {binary} NOT NULL,
    PRIMARY KEY (id, part)
);
CREATE TABLE IF NOT EXISTS limit_key (
    id INTEGER PRIMARY KEY,
    secret {binary} NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_buckets (
    client {binary} PRIMARY KEY,
    tokens {real} NOT NULL,
    updated {real} NOT NULL,
    allowed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS upload_quota (
    client {binary} NOT NULL,
    day TEXT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (client, day)
);
CREATE TABLE IF NOT EXISTS run_methods (
    {run_key}
    method TEXT NOT NULL,
    PRIMARY KEY (upload_id, service, function, method)
);
"""

DDL = {
    "sqlite": _TABLES.format(identity="INTEGER PRIMARY KEY AUTOINCREMENT", run_key=_RUN_KEY,
                             binary="BLOB", real="REAL"),
    "postgresql": _TABLES.format(identity="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                                 run_key=_RUN_KEY, binary="BYTEA", real="DOUBLE PRECISION"),
}


class Connection:
    """One DB-API connection with ``?`` placeholders on both back ends."""

    def __init__(self, raw: Any, kind: str) -> None:
        self.raw = raw
        self.kind = kind

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self.kind == "postgresql":
            with self.raw.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
        else:
            self.raw.executemany(sql, rows)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.execute(sql, params).fetchall())

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self.execute(sql, params).fetchone()
        return tuple(row) if row is not None else None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        self.raw.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "BEGIN")
        try:
            yield self
        except BaseException:
            try:
                self.raw.execute("ROLLBACK")
            except Exception:  # the connection is gone; the server rolls back itself
                pass
            raise
        self.raw.execute("COMMIT")


class Database:
    """A small connection pool for one SQLite file or one PostgreSQL URL."""

    def __init__(self, url: str | None, data_dir: Path, pool_size: int = POOL_SIZE) -> None:
        if not url:
            self.kind = "sqlite"
            self.sqlite_path = Path(data_dir) / "collector.sqlite3"
        elif url.startswith("sqlite:///"):  # SQLAlchemy style: sqlite:////abs/path
            self.kind = "sqlite"
            self.sqlite_path = Path(url[len("sqlite:///"):])
        elif url.startswith(("postgresql://", "postgres://")):
            self.kind = "postgresql"
            self.sqlite_path = None  # type: ignore[assignment]
        else:
            raise ValueError(
                f"unsupported --database-url {url!r}: use postgresql://... or sqlite:///PATH"
            )
        self.url = url
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._errors = self._error_types()

    def describe(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite {self.sqlite_path}"
        return "PostgreSQL (--database-url)"  # the URL may hold a password: not shown

    def _error_types(self) -> tuple[type[BaseException], ...]:
        if self.kind == "sqlite":
            return (sqlite3.OperationalError,)
        import psycopg

        return (psycopg.OperationalError, psycopg.InterfaceError)

    def _connect(self) -> Connection:
        if self.kind == "sqlite":
            lite = sqlite3.connect(
                self.sqlite_path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None, check_same_thread=False,
            )
            lite.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            lite.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk before the upload is acknowledged.
            lite.execute("PRAGMA synchronous = FULL")
            return Connection(lite, "sqlite")
        import psycopg

        pg = psycopg.connect(str(self.url), autocommit=True, connect_timeout=5)
        return Connection(pg, "postgresql")

    def _broken(self, conn: Connection) -> bool:
        if self.kind == "postgresql":
            return bool(conn.raw.closed or conn.raw.broken)
        return False

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """Borrow a connection; database faults become :class:`StorageUnavailable`."""
        if not self._slots.acquire(timeout=ACQUIRE_TIMEOUT_S):
            raise StorageUnavailable("database busy: no connection free")
        conn: Connection | None = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            yield conn
        except self._errors as exc:
            if conn is not None:
                self._discard(conn)
                conn = None
            self.close()  # idle connections to a restarted server are stale too
            raise StorageUnavailable(f"database unavailable: {_first_line(exc)}") from exc
        finally:
            if conn is not None:
                if self._broken(conn):
                    self._discard(conn)
                else:
                    self._idle.put(conn)
            self._slots.release()

    def _discard(self, conn: Connection) -> None:
        try:
            conn.raw.close()
        except Exception:
            pass

    @contextmanager
    def schema_lock(self) -> Iterator[None]:
        """Held while a collector creates or brings up to date its tables: on PostgreSQL a
        session-level advisory lock, so that of several collectors starting at once on
        one database one does the work and the others then find it done (concurrent
        ``CREATE TABLE IF NOT EXISTS`` can fail in PostgreSQL). SQLite serialises writers
        by itself."""
        if self.kind != "postgresql":
            yield
            return
        with self.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(?)", (SCHEMA_LOCK_KEY,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(?)", (SCHEMA_LOCK_KEY,))

    def create_schema(self) -> None:
        with self.connection() as conn:
            if self.kind == "sqlite":
                conn.raw.executescript(DDL["sqlite"])
            else:
                with conn.transaction():
                    # One statement at a time: psycopg runs them server-side.
                    for stmt in DDL["postgresql"].split(";"):
                        if stmt.strip():
                            conn.execute(stmt)

    def close(self) -> None:
        while True:
            try:
                self._discard(self._idle.get_nowait())
            except queue.Empty:
                return


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
