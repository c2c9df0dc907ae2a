"""Work that failed for a passing reason, tried again later, with a bound and a count of losses."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# Pauses before each retry; after the last one fails, the item is given up.
RETRY_DELAYS_S = (2.0, 5.0, 15.0, 30.0, 60.0)
BACKLOG_LIMIT = 500
# How many due items are retried together (they share model batches).
RETRY_ROUND = 32


@dataclass(slots=True)
class _Entry(Generic[T]):
    guild_id: int
    item: T
    failures: int
    due: float


class RetryBacklog(Generic[T]):
    """At most ``limit`` items waiting for a retry, each after a longer pause than the last.

    What does not fit, or still fails after the last pause, is counted per guild as lost
    (in memory, since the process started) instead of vanishing silently.
    """

    def __init__(
        self,
        *,
        limit: int = BACKLOG_LIMIT,
        delays_s: Sequence[float] = RETRY_DELAYS_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.delays_s = tuple(delays_s)
        self._clock = clock
        self._entries: list[_Entry[T]] = []
        self._lost: Counter[int] = Counter()
        self._wake = asyncio.Event()
        self._stopped = False

    def add(self, guild_id: int, item: T) -> bool:
        """Keep an item whose first try failed; False (and counted lost) when it cannot wait."""
        return self._schedule(_Entry(guild_id, item, 0, 0.0))

    def waiting(self, guild_id: int) -> int:
        return sum(1 for entry in self._entries if entry.guild_id == guild_id)

    def lost(self, guild_id: int) -> int:
        """How many of a guild's items were given up or did not fit."""
        return self._lost[guild_id]

    def forget_guild(self, guild_id: int) -> None:
        self._entries = [entry for entry in self._entries if entry.guild_id != guild_id]
        self._lost.pop(guild_id, None)

    def take_due(self, most: int = RETRY_ROUND) -> list[_Entry[T]]:
        """Remove and return up to ``most`` items whose pause is over, oldest due first."""
        now = self._clock()
        due = sorted((e for e in self._entries if e.due <= now), key=lambda e: e.due)[:most]
        if due:
            taken = {id(entry) for entry in due}
            self._entries = [entry for entry in self._entries if id(entry) not in taken]
        return due

    def seconds_to_next(self) -> float | None:
        if not self._entries:
            return None
        return max(0.0, min(entry.due for entry in self._entries) - self._clock())

    def failed_again(self, entry: _Entry[T]) -> bool:
        """Schedule another try of a retried item; False (and counted lost) when given up."""
        return self._schedule(entry)

    def _schedule(self, entry: _Entry[T]) -> bool:
        if entry.failures >= len(self.delays_s) or len(self._entries) >= self.limit:
            self._lost[entry.guild_id] += 1
            return False
        entry.due = self._clock() + self.delays_s[entry.failures]
        entry.failures += 1
        self._entries.append(entry)
        self._wake.set()
        return True

    def stop(self) -> None:
        """Make ``run`` return after its current round."""
        self._stopped = True
        self._wake.set()

    async def run(
        self,
        process: Callable[[T], Awaitable[None]],
        retriable: Callable[[BaseException], bool],
        stopping: asyncio.Event,
    ) -> None:
        """Retry due items with ``process`` until ``stopping`` is set (between rounds)."""
        while not (stopping.is_set() or self._stopped):
            due = self.take_due()
            if not due:
                self._wake.clear()
                await self._sleep(stopping, self.seconds_to_next())
                continue
            outcomes = await asyncio.gather(
                *(process(entry.item) for entry in due), return_exceptions=True
            )
            for entry, outcome in zip(due, outcomes, strict=True):
                if not isinstance(outcome, BaseException):
                    continue
                if not retriable(outcome):
                    log.error("retried work failed for good", exc_info=outcome)
                elif not self.failed_again(entry):
                    log.warning(
                        "gave up after %d tries in guild %s: %s",
                        entry.failures,
                        entry.guild_id,
                        outcome,
                    )

    async def _sleep(self, stopping: asyncio.Event, seconds: float | None) -> None:
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stopping.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
