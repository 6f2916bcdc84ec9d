"""Storing and querying uploaded results files (one code path for SQLite and PostgreSQL).

Storing an upload is two steps, in this order:

1. with raw files in a folder, the file is written there by its SHA-256 (temp file,
   fsync, rename);
2. one database transaction indexes it: the ``uploads`` row, one ``measurements`` row per
   line and the run summary's per-function statuses (``run_functions``/``run_methods``),
   and, with raw files in the database, the file itself (``blobs``).

Only after the commit is the upload acknowledged. An upload is *visible* only through its
``uploads`` row, so a crash between the steps leaves at most an unreferenced blob (never a
half-indexed upload: the transaction is all or nothing), and an acknowledged upload has
both its blob and its index on disk. A failed transaction removes the blob it wrote; a
crash's leftover is removed when the storage is opened again, and :meth:`Storage.verify`
reports any that remain. Identity is the content hash: the same file again is
"already stored"; a different file with a ``report_id`` already stored is refused
(a replay or an altered copy).

With PostgreSQL the raw files live in the database by default (``blobs="database"``):
several collectors behind one load balancer then share one database and keep nothing of
their own. With SQLite (one machine) they live in ``<data-dir>/files``. Collectors
starting together on one database create and update its tables in turn
(:meth:`probe.collector.db.Database.schema_lock`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from probe.analysis.crowd import Rule
from probe.collector.aggregate import StatusIndex
from probe.collector.blobs import Blobs, BlobStore, DatabaseBlobs
from probe.collector.db import Connection, Database, StorageUnavailable
from probe.collector.filters import Filters
from probe.collector.validate import Rejected, Upload, network_type, parse_upload

__all__ = ["Filters", "Storage", "StorageUnavailable", "StoreResult"]


@dataclass(frozen=True, slots=True)
class StoreResult:
    id: str
    measurements: int
    created: bool
    conflict: str | None = None  # set when another file already holds this report_id


_INSERT_BATCH = 500

_UPLOAD_COLUMNS = (
    "id, report_id, received_at, filename, size_bytes, measurements, complete, "
    "measurement_start_time, probe_asn, probe_cc, network_type, software_name, "
    "software_version"
)


class Storage:
    def __init__(self, data_dir: Path, database_url: str | None = None,
                 rule: Rule | None = None, blobs: str | None = None) -> None:
        """``blobs``: where raw files are kept, "files" (in ``data_dir``) or "database";
        default: the database with PostgreSQL, files with SQLite."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(database_url, self.data_dir)
        kind = blobs or ("database" if self.db.kind == "postgresql" else "files")
        if kind not in ("files", "database"):
            raise ValueError(f"unknown place for raw files {kind!r}: use files or database")
        self.blobs: Blobs = DatabaseBlobs(self.db, self.data_dir) if kind == "database" \
            else BlobStore(self.data_dir)
        # The status page's aggregation (its own tables), updated in each upload's
        # transaction.
        self.status = StatusIndex(self.db, rule)

    def open(self) -> None:
        """Create the tables if needed and clear what a crashed write left (temporary
        files, files without their index row); bring the status aggregation up to date
        (rule changed, uploads stored without it). Like the sweep of temporary files,
        this assumes no other collector process is storing into the same data dir
        (collectors sharing a database have a data dir each). Collectors opening one
        database at once do this in turn (:meth:`Database.schema_lock`)."""
        self.blobs.sweep_incoming()
        with self.db.schema_lock():
            self.db.create_schema()
            self.sweep_unindexed()
            self.status.create_schema()
            self.status.ensure_current()
            self.catch_up_status()

    def catch_up_status(self) -> int:
        """Fold in the uploads that the status aggregation lacks; returns how many."""
        done = 0
        after = ""
        while batch := self.status.uploads_without_runs(after):
            for upload_id in batch:
                try:
                    upload = parse_upload(self.blobs.get(upload_id), partial=True)
                except (OSError, Rejected):  # missing (verify says so) or stored under
                    continue  # older rules: its index rows still serve the API
                with self.db.connection() as conn:
                    with conn.transaction():
                        done += bool(self.status.add(conn, upload))
            after = batch[-1]
        return done

    def sweep_unindexed(self) -> int:
        """Remove stored files that have no index row (a crash between the two steps of
        :meth:`store`: never acknowledged); returns how many."""
        removed = 0
        for blob in self.unindexed_blobs():
            if self.stored_count(blob) is None:
                self.blobs.delete(blob)
                removed += 1
        return removed

    def unindexed_blobs(self) -> list[str]:
        with self.db.connection() as conn:
            indexed = {str(r[0]) for r in conn.fetchall("SELECT id FROM uploads")}
        return sorted(set(self.blobs.ids()) - indexed)

    def close(self) -> None:
        self.db.close()

    # -- writing --------------------------------------------------------------------

    def store(self, upload: Upload, filename: str | None = None,
              max_stored_bytes: int | None = None) -> StoreResult:
        """Store a validated upload: its blob, then its index in one transaction.

        ``max_stored_bytes`` bounds what it may take on disk: the file plus the indexed
        copy of its measurements (ASCII JSON, which escapes non-ASCII text and may write
        numbers longer); beyond it the upload is refused (413) and nothing is kept."""
        with self.db.connection() as conn:
            found = self._existing(conn, upload)
            if found is not None:
                return found
        self._put_blob(upload)
        try:
            with self.db.connection() as conn:
                with conn.transaction():
                    inserted = self._insert_upload(conn, upload, filename)
                    if inserted:
                        self.blobs.put_in(conn, upload.sha256, upload.data, upload.staged)
                        copy_bytes = self._insert_index(conn, upload)
                        if max_stored_bytes is not None \
                                and upload.size_bytes + copy_bytes > max_stored_bytes:
                            raise Rejected(
                                413, f"the file takes {upload.size_bytes + copy_bytes} "
                                     f"bytes to store with its indexed copy, more than the "
                                     f"limit of {max_stored_bytes} bytes")
                        self.status.add(conn, upload)
                if not inserted:
                    # Lost a race with a concurrent upload of the same file or report.
                    found = self._existing(conn, upload)
        except BaseException:
            self._drop_unindexed_blob(upload.sha256)
            raise
        if inserted:
            # A concurrent upload of the same bytes that failed may have removed the blob
            # between our link and our commit (it saw no index row yet): put it back.
            if not self.blobs.exists(upload.sha256):
                self._put_blob(upload)
            return StoreResult(upload.sha256, upload.count, True)
        if found is None:  # pragma: no cover - the conflicting row vanished (deleted)
            raise StorageUnavailable("concurrent change, retry")
        return found

    def _put_blob(self, upload: Upload) -> None:
        try:
            if upload.staged is not None:
                self.blobs.adopt(upload.sha256, upload.staged)
            else:
                assert upload.data is not None, "an upload without its bytes"
                self.blobs.put(upload.sha256, upload.data)
        except OSError as exc:  # disk full, read-only, ...: the server's fault, not the file's
            raise StorageUnavailable(f"cannot write the file: {exc.strerror or exc}") from exc

    def _drop_unindexed_blob(self, sha256: str) -> None:
        """After a failed index transaction: remove the blob unless an upload row refers to
        it (a concurrent upload of the same bytes). When the database cannot say, the
        blob stays, and :meth:`verify` reports it."""
        try:
            if self.stored_count(sha256) is None:
                self.blobs.delete(sha256)
        except (StorageUnavailable, OSError):
            pass

    def stored_count(self, sha256: str) -> int | None:
        """Measurements of an already stored file with this hash, None if not stored."""
        with self.db.connection() as conn:
            row = conn.fetchone("SELECT measurements FROM uploads WHERE id = ?", (sha256,))
        return int(row[0]) if row is not None else None

    def _existing(self, conn: Connection, upload: Upload) -> StoreResult | None:
        row = conn.fetchone("SELECT measurements FROM uploads WHERE id = ?", (upload.sha256,))
        if row is not None:
            return StoreResult(upload.sha256, int(row[0]), False)
        row = conn.fetchone("SELECT id FROM uploads WHERE report_id = ?", (upload.report_id,))
        if row is not None:
            return StoreResult(upload.sha256, 0, False, conflict=str(row[0]))
        return None

    def _insert_upload(self, conn: Connection, upload: Upload, filename: str | None) -> bool:
        head = upload.summary or upload.first
        assert head is not None, "an upload without a summary has measurements"
        first = upload.first or head
        cur = conn.execute(
            f"INSERT INTO uploads ({_UPLOAD_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                upload.sha256, upload.report_id,
                datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"), filename,
                upload.size_bytes, upload.count, int(upload.complete),
                head["measurement_start_time"], head["probe_asn"], head["probe_cc"],
                network_type(upload), first.get("software_name"),
                first.get("software_version"),
            ),
        )
        return bool(cur.rowcount == 1)

    def _insert_index(self, conn: Connection, upload: Upload) -> int:
        """Index the measurements and the summary; returns the bytes of the records'
        indexed copies."""
        net = network_type(upload)
        rows: list[tuple[Any, ...]] = []
        copy_bytes = 0
        for m in upload.iter_measurements():  # one line in memory at a time, in batches
            r = m.record
            # ASCII: any JSON string (even NUL or a lone surrogate) is storable
            text = json.dumps(r, ensure_ascii=True, separators=(",", ":"))
            copy_bytes += len(text)
            rows.append((
                upload.sha256, m.line, r["measurement_start_time"],
                r["measurement_start_time"][:10], r["probe_asn"], r["probe_cc"], net,
                r["service"], r["function"], r["test_name"], r["input"],
                r["test_keys"]["failure"], text,
            ))
            if len(rows) >= _INSERT_BATCH:
                self._insert_measurements(conn, rows)
                rows = []
        self._insert_measurements(conn, rows)
        summary = upload.summary
        if summary is None:
            return copy_bytes
        base = (upload.sha256, summary["measurement_start_time"][:10],
                summary["probe_asn"], summary["probe_cc"], net)
        functions: list[tuple[Any, ...]] = []
        methods: list[tuple[Any, ...]] = []
        for service, svc in summary["services"].items():
            for function, fn in (svc.get("functions") or {}).items():
                functions.append((*base, service, function, str(fn["status"])[:32],
                                  fn.get("reachable", 0), fn.get("total", 0)))
                for method in sorted(set(fn.get("methods") or [])):
                    methods.append((*base, service, function, method[:64]))
        conn.executemany(
            "INSERT INTO run_functions (upload_id, day, probe_asn, probe_cc, network_type, "
            "service, function, status, reachable, total) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            functions,
        )
        conn.executemany(
            "INSERT INTO run_methods (upload_id, day, probe_asn, probe_cc, network_type, "
            "service, function, method) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            methods,
        )
        return copy_bytes

    @staticmethod
    def _insert_measurements(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        conn.executemany(
            "INSERT INTO measurements (upload_id, line, measurement_start_time, day, "
            "probe_asn, probe_cc, network_type, service, function, test_name, input, "
            "failure, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def delete(self, upload_id: str) -> bool:
        with self.db.connection() as conn:
            with conn.transaction():
                self.status.remove(conn, upload_id)
                for table, column in (("run_methods", "upload_id"),
                                      ("run_functions", "upload_id"),
                                      ("measurements", "upload_id"), ("uploads", "id")):
                    cur = conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (upload_id,))
                deleted = bool(cur.rowcount)
        if deleted:  # after the commit: a crash in between leaves an invisible blob only
            self.blobs.delete(upload_id)
        return deleted

    # -- reading --------------------------------------------------------------------

    def upload_info(self, upload_id: str) -> dict[str, Any] | None:
        with self.db.connection() as conn:
            row = conn.fetchone(f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE id = ?",
                                (upload_id,))
        return _upload_dict(row) if row is not None else None

    def list_uploads(self, limit: int, after: str | None) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            rows = conn.fetchall(
                f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE id > ? ORDER BY id LIMIT ?",
                (after or "", limit),
            )
        return [_upload_dict(r) for r in rows]

    def raw_file(self, upload_id: str) -> bytes | None:
        if self.upload_info(upload_id) is None:
            return None
        return self.blobs.get(upload_id)

    def measurements(self, filters: Filters, limit: int, after: int = 0,
                     max_bytes: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """A page of at most ``limit`` measurements after cursor ``after``, and the cursor
        of the next page (None at the end). With ``max_bytes`` the page also stops before
        its records pass that many bytes (it holds at least one), so a page's size is
        bounded whatever the records weigh: their sizes are read first, then only the
        records that fit."""
        where, params = filters.where()
        with self.db.connection() as conn:
            sizes = conn.fetchall(
                f"SELECT id, LENGTH(record) FROM measurements WHERE {where} "
                "AND id > ? ORDER BY id LIMIT ?",
                (*params, after, limit + 1),
            )
            take = total = 0
            for _, size in sizes[:limit]:
                if take and max_bytes is not None and total + int(size) > max_bytes:
                    break
                total += int(size)
                take += 1
            if not take:
                return [], None
            last = int(sizes[take - 1][0])
            rows = conn.fetchall(
                f"SELECT id, upload_id, line, record FROM measurements WHERE {where} "
                "AND id > ? AND id <= ? ORDER BY id",
                (*params, after, last),
            )
        # The stored record is ASCII JSON text; it is passed on as is (no re-encoding).
        items = [
            {"cursor": int(r[0]), "upload_id": r[1], "line": int(r[2]), "measurement_json": r[3]}
            for r in rows
        ]
        return items, (last if len(sizes) > take else None)

    def summary(self, filters: Filters) -> list[dict[str, Any]]:
        where, params = filters.where(time_column="day")
        keys = "day, probe_asn, probe_cc, network_type, service, function"
        statuses = ("ok", "impaired", "blocked", "inconclusive")
        counts = ", ".join(f"SUM(CASE WHEN status = '{s}' THEN 1 ELSE 0 END)" for s in statuses)
        with self.db.connection() as conn:
            rows = conn.fetchall(
                f"SELECT {keys}, COUNT(*), {counts}, SUM(reachable), SUM(total) "
                f"FROM run_functions WHERE {where} GROUP BY {keys} ORDER BY {keys}",
                params,
            )
            method_rows = conn.fetchall(
                f"SELECT {keys}, method, COUNT(*) FROM run_methods WHERE {where} "
                f"GROUP BY {keys}, method ORDER BY {keys}, method",
                params,
            )
        methods: dict[tuple[Any, ...], dict[str, int]] = {}
        for r in method_rows:
            methods.setdefault(tuple(r[:6]), {})[r[6]] = int(r[7])
        out = []
        for r in rows:
            key = tuple(r[:6])
            out.append({
                "day": r[0], "asn": r[1], "cc": r[2], "network_type": r[3],
                "service": r[4], "function": r[5], "runs": int(r[6]),
                "statuses": {s: int(v) for s, v in zip(statuses, r[7:11], strict=True)},
                "reachable": int(r[11]), "total": int(r[12]),
                "methods": methods.get(key, {}),
            })
        return out

    def verify(self) -> list[str]:
        """Consistency check: every indexed upload has its blob, intact and fully indexed,
        and every blob on disk has its index row."""
        return self.check()[1]

    def check(self) -> tuple[int, list[str]]:
        """:meth:`verify`, with how many uploads it checked."""
        problems: list[str] = []
        with self.db.connection() as conn:
            uploads = conn.fetchall("SELECT id, measurements FROM uploads")
            counts = dict(conn.fetchall(
                "SELECT upload_id, COUNT(*) FROM measurements GROUP BY upload_id"))
            orphans = conn.fetchall(
                "SELECT DISTINCT upload_id FROM measurements WHERE upload_id NOT IN "
                "(SELECT id FROM uploads)")
        for upload_id, expected in uploads:
            problem = self.blobs.problem(upload_id)
            if problem is not None:
                problems.append(f"{upload_id}: {problem}")
            if int(counts.get(upload_id, 0)) != int(expected):
                problems.append(
                    f"{upload_id}: {counts.get(upload_id, 0)} measurements indexed, "
                    f"{expected} expected")
        problems.extend(f"{r[0]}: measurements without an upload" for r in orphans)
        indexed = {str(u[0]) for u in uploads}
        problems.extend(
            f"{blob}: stored file without an index row (an upload that failed after its "
            "file was written, or one being stored right now)"
            for blob in sorted(set(self.blobs.ids()) - indexed))
        return len(uploads), problems


def _upload_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    names = [c.strip() for c in _UPLOAD_COLUMNS.split(",")]
    out = dict(zip(names, row, strict=True))
    out["complete"] = bool(out["complete"])
    out["size_bytes"] = int(out["size_bytes"])
    out["measurements"] = int(out["measurements"])
    return out
