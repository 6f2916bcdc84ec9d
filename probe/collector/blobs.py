"""Immutable, content-addressed storage of raw results files on disk.

A file is stored at ``<data-dir>/files/<sha256[:2]>/<sha256>.jsonl``: written to a
temporary file, fsynced, renamed into place, and the folder fsynced, so after
``put`` returns the file survives a crash (even SIGKILL or power loss). The name is
the hash, never anything the uploader chose. A blob on disk is not yet "stored": the
database index is what makes an upload visible (see :mod:`probe.collector.storage`).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "files"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not _HEX64.match(sha256):
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
