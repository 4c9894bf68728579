"""The board's live state: follows the player's timeline and tells the page when it changes.

The player reports each segment before it is heard, with the heard instant in server time;
the board applies the report at that instant (loop.call_later), so an emergency banner goes
up with the horns, not on the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from edge_agent.eboard.state import BoardState, board_state
from edge_agent.live import Grant, PlaybackArbiter
from protocol import LivePriority
from schedules import PlaybackItem, ScheduleDocument

log = logging.getLogger(__name__)

TICK_S = 5.0  # time passing (an item ends, local midnight, the link drops) is checked this often


class Board:
    """The state one board page shows, recomputed on every timeline report."""

    def __init__(
        self,
        *,
        document: Callable[[], ScheduleDocument | None],
        server_time: Callable[[], float],
        link_up: Callable[[], bool],
    ) -> None:
        self._document = document
        self._server_time = server_time
        self._link_up = link_up
        self._on_air: PlaybackItem | None = None
        self._live_emergencies: set[str] = set()
        self._pending: set[asyncio.TimerHandle] = set()
        self._heard_later: dict[str, set[asyncio.TimerHandle]] = {}  # item_id -> pending on_air
        self._changed = asyncio.Event()
        self.revision = 0
        self.state = self._compute()

    # -- what the page reads ------------------------------------------------------------------

    def current(self) -> BoardState:
        """The state now (recomputed, so the clock-driven marks are fresh)."""
        self.refresh()
        return self.state

    async def wait_change(self, revision: int, timeout: float) -> int:
        """Wait until the revision moves past `revision` (or timeout); return the revision."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.revision == revision:
                    await self._changed.wait()
        return self.revision

    async def run(self) -> None:
        """Recompute on a slow tick for changes no report announces."""
        while True:
            await asyncio.sleep(TICK_S)
            self.refresh()

    # -- what the runtime reports ---------------------------------------------------------------

    def refresh(self) -> None:
        """Recompute; wake the page's listeners if what it shows changed."""
        state = self._compute()
        changed = state.content() != self.state.content()
        self.state = state
        if changed:
            self.revision += 1
            self._changed.set()
            self._changed = asyncio.Event()

    def on_air(self, item: PlaybackItem, *, at: float) -> None:
        """The player's segment of `item` is heard from server time `at`."""
        handle = self._at(at, lambda: self._set_on_air(item))
        if handle is not None:
            self._heard_later.setdefault(item.item_id, set()).add(handle)

    def off_air(self, item: PlaybackItem) -> None:
        """The item was suspended (preempted): it no longer plays."""
        self._clear(item.item_id)

    def finished(self, item: PlaybackItem, *, ended_at: float | None) -> None:
        """The item's outcome is final; it stops being shown at its last heard sample."""
        item_id = item.item_id

        def over() -> None:
            # A segment cut before it was heard must not come up later (no outcome follows).
            for handle in self._heard_later.pop(item_id, set()):
                handle.cancel()
                self._pending.discard(handle)
            self._clear(item_id)

        self._at(ended_at, over)

    def live(self, session_id: str, *, emergency: bool, on: bool) -> None:
        """A live session took (on) or gave back (off) the sound card."""
        if on and emergency:
            self._live_emergencies.add(session_id)
        else:
            self._live_emergencies.discard(session_id)
        self.refresh()

    def close(self) -> None:
        """Forget the reports still waiting for their instant."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        self._heard_later.clear()

    # -- internals --------------------------------------------------------------------------------

    def _at(
        self, server_time: float | None, action: Callable[[], None]
    ) -> asyncio.TimerHandle | None:
        """Run action at a server time (now if it is past); the handle when it waits."""
        delay = 0.0 if server_time is None else server_time - self._server_time()
        if delay <= 0:
            action()
            return None
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            assert handle is not None
            self._pending.discard(handle)
            for waiting in self._heard_later.values():
                waiting.discard(handle)
            action()

        handle = loop.call_at(loop.time() + delay, fire)
        self._pending.add(handle)
        return handle

    def _set_on_air(self, item: PlaybackItem) -> None:
        self._on_air = item
        self.refresh()

    def _clear(self, item_id: str) -> None:
        if self._on_air is not None and self._on_air.item_id == item_id:
            self._on_air = None
            self.refresh()

    def _compute(self) -> BoardState:
        return board_state(
            document=self._document(),
            server_time=self._server_time(),
            on_air=self._on_air,
            live_emergency=bool(self._live_emergencies),
            link_up=self._link_up(),
        )


class BoardArbiter:
    """The player's live arbiter, also telling the board when live audio holds the card."""

    def __init__(self, player: PlaybackArbiter, board: Board) -> None:
        self._player = player
        self._board = board

    async def request_live(self, *, session_id: str, priority: LivePriority) -> Grant:
        """Ask the player; a granted emergency session raises the board's live banner."""
        grant = await self._player.request_live(session_id=session_id, priority=priority)
        if grant.granted:
            self._board.live(session_id, emergency=priority == "emergency", on=True)
        return grant

    async def quiet(self) -> None:
        """As the player."""
        await self._player.quiet()

    async def release(self, *, session_id: str) -> None:
        """Give the card back to the player and lower the live banner."""
        self._board.live(session_id, emergency=False, on=False)
        await self._player.release(session_id=session_id)
