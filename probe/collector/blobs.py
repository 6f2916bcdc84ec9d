"""Immutable, content-addressed storage of raw results files on disk.

A file is stored at ``<data-dir>/files/<sha256[:2]>/<sha256>.jsonl``: written to a
temporary file, fsynced, renamed into place, and the folder fsynced, so after
``put`` returns the file survives a crash (even SIGKILL or power loss). The name is
the hash, never anything the uploader chose. A blob on disk is not yet "stored": the
database index is what makes an upload visible (see :mod:`probe.collector.storage`).

An upload streams into a staged file (:meth:`BlobStore.stage`, under ``files/incoming/``)
while it is validated, so its bytes are never all in memory; once valid, the staged file
is hard-linked into place under its hash (:meth:`BlobStore.adopt`).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

_HEX64 = re.compile(r"[0-9a-f]{64}")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "files"
        self.root.mkdir(parents=True, exist_ok=True)

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
