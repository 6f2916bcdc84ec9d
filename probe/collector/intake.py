"""Receiving an upload's body: streamed, inflated and validated as it arrives.

Each chunk of the request body goes, in a worker thread (never on the event loop), through
the :class:`~probe.collector.validate.Inflater` (bounded pieces) and the
:class:`~probe.collector.validate.LineValidator` (limits on size, lines and line length,
each line checked as it completes) into a staged file
(:meth:`~probe.collector.blobs.BlobStore.stage`). Nothing of the body is held beyond the
chunk and the line in progress, so a gzip bomb costs a few pieces of memory before its
4xx. At most ``CollectorConfig.max_inflating`` bodies are worked on at once (the others
wait for a slot, their bytes left unread in the socket). Every piece counts against the
client's daily quota (:class:`~probe.collector.ratelimit.Quota`) as it inflates, and is
given back when the file is refused or was stored before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from probe.collector.blobs import Blobs, StagedFile
from probe.collector.config import CollectorConfig
from probe.collector.ratelimit import Quota, client_address
from probe.collector.validate import Inflater, LineValidator, Rejected, Upload


class Intake:
    """One body being received (its chunks fed from worker threads, one at a time)."""

    def __init__(self, blobs: Blobs, config: CollectorConfig, quota: Quota,
                 client: str, encoding: str | None, partial: bool) -> None:
        self.inflater = Inflater(encoding)
        self.quota = quota
        self.client = client
        self.reserved = 0
        self.staged: StagedFile | None = None
        self.staged = blobs.stage()
        self.validator = LineValidator(partial=partial, max_bytes=config.max_bytes,
                                       max_lines=config.max_lines, sink=self.staged.write,
                                       gzip=self.inflater.gzip)

    def feed(self, chunk: bytes) -> None:
        for piece in self.inflater.feed(chunk):
            if not self.quota.reserve(self.client, len(piece)):
                raise quota_exceeded(self.quota.limit_bytes)
            self.reserved += len(piece)
            self.validator.feed(piece)

    def finish(self) -> Upload:
        self.inflater.finish()
        upload = self.validator.finish()
        assert self.staged is not None
        self.staged.seal()
        upload.staged = self.staged.path
        return upload

    def keep_quota(self) -> None:
        """The file was stored: what it took stays counted."""
        self.reserved = 0

    def close(self) -> None:
        """Remove the staged file (a stored blob is a hard link of its own) and give
        back the quota of a file that was not stored."""
        if self.staged is not None:
            self.staged.discard()
            self.staged = None
        if self.reserved:
            self.quota.refund(self.client, self.reserved)
            self.reserved = 0


def quota_exceeded(limit_bytes: int) -> Rejected:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    wait_s = max(1, int((midnight - now).total_seconds()) + 1)
    return Rejected(
        429, f"daily upload quota of {limit_bytes} bytes for this client is used up "
             f"(serve --daily-quota-mb); retry after 00:00 UTC", {"Retry-After": str(wait_s)})


def _slots(request: Request, config: CollectorConfig) -> asyncio.Semaphore:
    slots: asyncio.Semaphore | None = getattr(request.app.state, "intake_slots", None)
    if slots is None:
        slots = request.app.state.intake_slots = asyncio.Semaphore(config.max_inflating)
    return slots


@asynccontextmanager
async def receive(request: Request, blobs: Blobs, config: CollectorConfig,
                  partial: bool) -> AsyncIterator[tuple[Intake, Upload]]:
    """Receive and validate the body of ``request``; yields the intake (to keep its
    quota) and the validated upload, whose staged file lives until the block ends."""
    quota: Quota = request.app.state.quota
    async with _slots(request, config):
        intake = await run_in_threadpool(
            Intake, blobs, config, quota, client_address(request),
            request.headers.get("content-encoding"), partial)
        try:
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > config.max_bytes:
                    raise Rejected(413, f"body larger than the limit of {config.max_bytes} "
                                        "bytes")
                if chunk:
                    await run_in_threadpool(intake.feed, chunk)
            upload = await run_in_threadpool(intake.finish)
        except BaseException:
            await run_in_threadpool(intake.close)
            raise
    try:
        yield intake, upload
    finally:
        await run_in_threadpool(intake.close)
