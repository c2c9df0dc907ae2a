"""The retry backlog of moderation checks: bounded, with growing pauses, and losses counted."""

from __future__ import annotations

import asyncio

from bot.errors import BusyError, InferenceTimeoutError, InvalidInputError, ModelUnavailableError
from bot.services.backlog import RetryBacklog
from bot.services.moderation import is_retriable

GUILD, OTHER = 1, 2


def test_items_wait_longer_after_each_failure_then_are_given_up() -> None:
    now = [0.0]
    backlog: RetryBacklog[str] = RetryBacklog(limit=10, delays_s=(1, 5), clock=lambda: now[0])

    assert backlog.add(GUILD, "a")
    assert backlog.take_due() == [] and backlog.seconds_to_next() == 1
    now[0] = 1.0
    [entry] = backlog.take_due()
    assert entry.item == "a" and backlog.waiting(GUILD) == 0
    assert backlog.failed_again(entry)  # second pause: 5 s
    now[0] = 5.9
    assert backlog.take_due() == []
    now[0] = 6.0
    [entry] = backlog.take_due()
    assert not backlog.failed_again(entry)  # no pause left: given up, and counted
    assert (backlog.lost(GUILD), backlog.waiting(GUILD), backlog.lost(OTHER)) == (1, 0, 0)


def test_what_does_not_fit_is_counted_and_a_left_guild_is_forgotten() -> None:
    backlog: RetryBacklog[int] = RetryBacklog(limit=2, delays_s=(1,), clock=lambda: 0.0)

    assert [backlog.add(GUILD, n) for n in range(4)] == [True, True, False, False]
    assert backlog.add(OTHER, 9) is False  # the bound is shared by every guild
    assert (backlog.waiting(GUILD), backlog.lost(GUILD), backlog.lost(OTHER)) == (2, 2, 1)
    backlog.forget_guild(GUILD)
    assert (backlog.waiting(GUILD), backlog.lost(GUILD), backlog.lost(OTHER)) == (0, 0, 1)
    assert backlog.add(OTHER, 10)


async def test_run_retries_until_it_works_and_stops_when_asked() -> None:
    backlog: RetryBacklog[str] = RetryBacklog(delays_s=(0.01, 0.01, 0.01))
    attempts: list[str] = []

    async def process(item: str) -> None:
        attempts.append(item)
        if item == "never" or attempts.count(item) < 2:
            raise BusyError("sentiment", 1)

    stopping = asyncio.Event()
    running = asyncio.create_task(backlog.run(process, is_retriable, stopping))
    backlog.add(GUILD, "soon")
    backlog.add(GUILD, "never")
    for _ in range(500):
        if backlog.lost(GUILD) and not backlog.waiting(GUILD):
            break
        await asyncio.sleep(0.01)
    stopping.set()
    await asyncio.wait_for(running, 5)

    assert attempts.count("soon") == 2  # worked on its second retry, then left alone
    assert attempts.count("never") == 3 and backlog.lost(GUILD) == 1


def test_only_passing_failures_are_retried() -> None:
    assert is_retriable(BusyError("sentiment", 1))
    assert is_retriable(InferenceTimeoutError("sentiment", 60))
    assert is_retriable(ModelUnavailableError("sentiment", "m", "not found"))
    assert not is_retriable(InvalidInputError("bad"))
    assert not is_retriable(ValueError())
