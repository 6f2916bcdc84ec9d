"""Immutable, content-addressed storage of raw results files: in a folder, or in the
database itself.

:class:`BlobStore` (files; the default with SQLite): a file is stored at
``<root>/files/<sha256[:2]>/<sha256>.jsonl``: written to a temporary file, fsynced,
renamed into place, and the folder fsynced, so after ``put`` returns the file survives a
crash (even SIGKILL or power loss). The root may be a folder several collectors share
(``serve --blob-dir``).

:class:`DatabaseBlobs` (the default with PostgreSQL): the ``blobs`` table, written in the
same transaction as the upload's index (:meth:`DatabaseBlobs.put_in`), so collectors on
several machines behind one load balancer share every raw file and keep none of their
own.

The name is the hash, never anything the uploader chose. A blob alone is not yet
"stored": the database index is what makes an upload visible (see
:mod:`probe.collector.storage`). An upload streams into a staged file on local disk
(:meth:`BlobStore.stage`, under ``files/incoming/``) while it is validated, so its bytes
are never all in memory; once valid, the staged file is hard-linked into place under its
hash (:meth:`BlobStore.adopt`), or read into the database's transaction.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from probe.collector.db import Connection, Database

_HEX64 = re.compile(r"[0-9a-f]{64}")
# A raw file kept in the database is split in rows of at most this many bytes.
PART_BYTES = 1 << 20


class Blobs(Protocol):
    """What storage needs of a blob store. A store writes either before the index
    transaction (``put``/``adopt``) or inside it (``put_in``); the other is a no-op."""

    def describe(self) -> str: ...

    def stage(self) -> StagedFile: ...

    def put(self, sha256: str, data: bytes) -> object: ...

    def adopt(self, sha256: str, staged: Path) -> object: ...

    def put_in(self, conn: Connection, sha256: str, data: bytes | None,
               staged: Path | None) -> None: ...

    def ids(self) -> Iterator[str]: ...

    def exists(self, sha256: str) -> bool: ...

    def get(self, sha256: str) -> bytes: ...

    def delete(self, sha256: str) -> None: ...

    def problem(self, sha256: str) -> str | None: ...

    def sweep_incoming(self) -> int: ...


class BlobStore:
    """Raw files in a folder (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "files"
        self.root.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return f"files in {self.root}"

    def put_in(self, conn: Connection, sha256: str, data: bytes | None,
               staged: Path | None) -> None:
        return None  # on disk since put/adopt, before the transaction

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def problem(self, sha256: str) -> str | None:
        """Why the blob ``sha256`` is not intact, or None."""
        path = self.path(sha256)
        if not path.is_file():
            return "indexed but its file is missing"
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
            return "stored file does not match its hash"
        return None

    def path(self, sha256: str) -> Path:
        if not _HEX64.fullmatch(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}.jsonl"

    def put(self, sha256: str, data: bytes) -> Path:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError("content does not match its hash")
        final = self.path(sha256)
        if final.exists() and final.stat().st_size == len(data):
            return final  # same content (the name is its hash), already durable
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".incoming-", suffix=".tmp")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.chmod(tmp, 0o444)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        _fsync_dir(self.root)
        return final

    def stage(self) -> StagedFile:
        """A new temporary file for an upload's bytes as they arrive."""
        incoming = self.root / "incoming"
        incoming.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=incoming, prefix=".incoming-", suffix=".tmp")
        return StagedFile(fd, Path(tmp))

    def adopt(self, sha256: str, staged: Path) -> Path:
        """Make a complete, fsynced staged file the blob ``sha256`` (a hard link: the
        staged file stays until the caller removes it, so it can be linked again)."""
        final = self.path(sha256)
        if final.exists():
            return final  # same content (the name is its hash), already durable
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(staged, final)
        except FileExistsError:  # a concurrent upload of the same bytes won the race
            return final
        _fsync_dir(final.parent)
        _fsync_dir(self.root)
        return final

    def ids(self) -> Iterator[str]:
        """The hashes of every blob on disk."""
        for path in self.root.glob("??/*.jsonl"):
            if _HEX64.fullmatch(path.stem):
                yield path.stem

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def delete(self, sha256: str) -> None:
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            pass

    def sweep_incoming(self) -> int:
        """Remove temporary files left by a crash mid-write; return how many."""
        removed = 0
        for tmp in self.root.glob("*/.incoming-*.tmp"):
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed


class DatabaseBlobs:
    """Raw files in the database's ``blobs`` table (see the module docstring). Uploads
    are still staged on local disk while they stream in (``<data-dir>/files/incoming``,
    temporary: removed once stored or refused, and when the collector starts)."""

    def __init__(self, db: Database, staging: Path) -> None:
        self.db = db
        self._staging = BlobStore(staging)

    @property
    def root(self) -> Path:
        """The local folder uploads are staged in (nothing stays there)."""
        return self._staging.root

    def describe(self) -> str:
        return "files in the database"

    def stage(self) -> StagedFile:
        return self._staging.stage()

    def put(self, sha256: str, data: bytes) -> None:
        _valid_id(sha256)  # written by put_in, in the index's transaction

    def adopt(self, sha256: str, staged: Path) -> None:
        _valid_id(sha256)  # written by put_in, in the index's transaction

    def put_in(self, conn: Connection, sha256: str, data: bytes | None,
               staged: Path | None) -> None:
        """The file's bytes as rows of at most :data:`PART_BYTES` each, read from the
        staged file one part at a time (an upload is never all in memory)."""
        _valid_id(sha256)
        digest = hashlib.sha256()
        for part, piece in enumerate(_parts(data, staged)):
            digest.update(piece)
            conn.execute("INSERT INTO blobs (id, part, data) VALUES (?, ?, ?) "
                         "ON CONFLICT DO NOTHING", (sha256, part, piece))
        if digest.hexdigest() != sha256:
            raise ValueError("content does not match its hash")

    def ids(self) -> Iterator[str]:
        with self.db.connection() as conn:
            rows = conn.fetchall("SELECT id FROM blobs WHERE part = 0")
        return (str(r[0]) for r in rows)

    def exists(self, sha256: str) -> bool:
        with self.db.connection() as conn:
            return conn.fetchone("SELECT 1 FROM blobs WHERE id = ? AND part = 0",
                                 (_valid_id(sha256),)) is not None

    def get(self, sha256: str) -> bytes:
        with self.db.connection() as conn:
            rows = conn.fetchall("SELECT data FROM blobs WHERE id = ? ORDER BY part",
                                 (_valid_id(sha256),))
        if not rows:
            raise FileNotFoundError(f"no stored file {sha256}")
        return b"".join(bytes(r[0]) for r in rows)

    def delete(self, sha256: str) -> None:
        with self.db.connection() as conn:
            conn.execute("DELETE FROM blobs WHERE id = ?", (_valid_id(sha256),))

    def problem(self, sha256: str) -> str | None:
        try:
            data = self.get(sha256)
        except FileNotFoundError:
            return "indexed but its file is missing"
        if hashlib.sha256(data).hexdigest() != sha256:
            return "stored file does not match its hash"
        return None

    def sweep_incoming(self) -> int:
        return self._staging.sweep_incoming()


def _parts(data: bytes | None, staged: Path | None) -> Iterator[bytes]:
    if data is not None:
        for start in range(0, max(len(data), 1), PART_BYTES):
            yield data[start:start + PART_BYTES]
        return
    assert staged is not None, "an upload without its bytes"
    with open(staged, "rb") as fh:
        first = True
        while (piece := fh.read(PART_BYTES)) or first:
            first = False
            yield piece


def _valid_id(sha256: str) -> str:
    if not _HEX64.fullmatch(sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return sha256


class StagedFile:
    """An upload's bytes being written; :meth:`seal` makes them durable and read-only."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd: int | None = fd
        self.path = path

    def write(self, data: bytes) -> None:
        assert self.fd is not None, "write after seal"
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def seal(self) -> None:
        if self.fd is not None:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None
            os.chmod(self.path, 0o444)

    def discard(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
