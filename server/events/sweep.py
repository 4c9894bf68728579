"""The outbox sweep: dispatches events committed by a process that died before it could."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.exc import SQLAlchemyError

from server.events.dispatch import Dispatcher

log = logging.getLogger(__name__)


class OutboxSweep:
    """Runs Dispatcher.sweep at start and every interval, in a worker thread."""

    def __init__(self, dispatcher: Dispatcher, *, interval_s: float) -> None:
        self.dispatcher = dispatcher
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Sweep once now (what a crash left behind), then keep sweeping in the background."""
        await self._once()
        self._task = asyncio.create_task(self._loop(), name="outbox-sweep")

    async def stop(self) -> None:
        """Stop the background sweeps."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self._once()

    async def _once(self) -> None:
        try:
            count = await asyncio.to_thread(self.dispatcher.sweep)
        except SQLAlchemyError as exc:
            log.warning("outbox sweep failed (database unreachable?): %s; retrying", exc)
            return
        if count:
            log.info("dispatched %d event(s) left behind by an earlier process", count)
