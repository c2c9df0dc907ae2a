from __future__ import annotations

import asyncio

from bot.app import _retention_loop


class SlowPrune:
    """Stands in for the retention service: a prune that takes a while."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.finished = 0

    async def prune(self) -> int:
        self.started.set()
        await asyncio.sleep(0.2)
        self.finished += 1
        return 0


async def test_retention_stops_between_prunes_never_in_one() -> None:
    conversations = SlowPrune()
    stopping = asyncio.Event()
    task = asyncio.create_task(_retention_loop(conversations, stopping))  # type: ignore[arg-type]
    await conversations.started.wait()

    stopping.set()  # what Bot.close() does
    await asyncio.wait_for(task, 5)

    assert conversations.finished == 1  # the prune under way ran to its end
    assert task.done() and not task.cancelled()
