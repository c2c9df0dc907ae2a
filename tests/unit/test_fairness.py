"""Fair waiting between guilds: round-robin order, places, expected waits, the slot gate."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.inference.fairness import (
    FairGate,
    FairQueue,
    PriorityFairQueue,
    WaitWatch,
    expected_wait_s,
    on_behalf_of,
    round_robin_position,
)

arrivals = st.lists(st.integers(min_value=0, max_value=5), max_size=40)


@given(arrivals)
def test_positions_predict_the_order_items_are_served_in(tenants: list[int]) -> None:
    queue: FairQueue[int] = FairQueue()
    tickets = [queue.push(number, tenant) for number, tenant in enumerate(tenants)]
    predicted = {ticket.item: queue.position(ticket) for ticket in tickets}
    served = queue.drain()
    assert [predicted[item] for item in served] == list(range(1, len(tenants) + 1))


@given(arrivals)
def test_no_guild_waits_for_more_than_one_item_of_another(tenants: list[int]) -> None:
    queue: FairQueue[int] = FairQueue()
    for tenant in tenants:
        queue.push(tenant, tenant)
    served = queue.drain()
    # Between two items of one guild, every other guild still waiting gets at most one.
    for tenant in set(tenants):
        indexes = [i for i, t in enumerate(served) if t == tenant]
        for start, end in itertools.pairwise(indexes):
            between = served[start + 1 : end]
            assert len(between) == len(set(between))
    # A guild's own items keep their order of arrival (pushed items are the tenant ids here).
    assert sorted(served) == sorted(tenants)


@given(st.lists(st.integers(0, 30), min_size=1, max_size=8), st.data())
def test_round_robin_position_is_within_the_queue(lengths: list[int], data: st.DataObject) -> None:
    lanes = [i for i, length in enumerate(lengths) if length]
    if not lanes:
        return
    lane = data.draw(st.sampled_from(lanes))
    index = data.draw(st.integers(0, lengths[lane] - 1))
    place = round_robin_position(lengths, lane, index)
    assert 1 <= place <= sum(lengths)
    assert place >= index + 1  # never ahead of its own guild's earlier items


@given(st.integers(-5, 10_000), st.integers(-3, 64), st.floats(0, 600, allow_nan=False))
def test_expected_wait_grows_with_the_place_and_is_never_negative(
    place: int, servers: int, seconds: float
) -> None:
    wait = expected_wait_s(place, servers, seconds)
    assert wait >= 0
    assert expected_wait_s(place + 1, servers, seconds) >= wait
    if place >= 1:
        assert wait >= seconds  # its own turn comes after at least one round


def test_a_removed_ticket_has_no_place_and_is_not_served() -> None:
    queue: FairQueue[str] = FairQueue()
    first = queue.push("a1", "a")
    queue.push("b1", "b")
    assert queue.remove(first)
    assert not queue.remove(first)
    assert queue.position(first) == 0
    assert queue.drain() == ["b1"]


async def test_priority_queue_serves_urgent_first_then_guilds_in_turn() -> None:
    queue: PriorityFairQueue[str] = PriorityFairQueue()
    for number in range(3):
        queue.put_nowait(f"busy{number}", 0, "busy")
    quiet = queue.put_nowait("quiet", 0, "quiet")
    queue.put_nowait("urgent", -1, None)
    assert queue.position(quiet, 0) == 3  # urgent, busy0, then quiet
    served = [await queue.get() for _ in range(5)]
    assert served == ["urgent", "busy0", "quiet", "busy1", "busy2"]
    assert queue.empty()


async def test_gate_lets_a_quiet_guild_in_before_a_busy_guilds_backlog() -> None:
    gate = FairGate(slots=1)
    release = asyncio.Event()
    order: list[str] = []
    watches: dict[str, WaitWatch] = {}

    async def request(name: str, guild: str) -> None:
        watch = watches.setdefault(name, WaitWatch())
        with on_behalf_of(guild, watch):
            async with gate.slot(guild):
                order.append(name)
                await release.wait()

    tasks = [asyncio.create_task(request(f"busy{i}", "busy")) for i in range(4)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(request("quiet", "quiet")))
    await asyncio.sleep(0)
    assert order == ["busy0"]
    assert watches["quiet"].waiting() == (2, pytest.approx(2 * gate.seconds_per_hold))
    assert watches["busy3"].waiting() is not None
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["busy0", "busy1", "quiet", "busy2", "busy3"]
    assert gate.held == 0
    assert all(watch.waiting() is None for watch in watches.values())


async def test_a_waiter_that_gives_up_frees_its_place() -> None:
    gate = FairGate(slots=1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with gate.slot("a"):
            await hold.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    quitter = asyncio.create_task(holder())
    await asyncio.sleep(0)
    assert gate.waiting == 1
    quitter.cancel()
    await asyncio.gather(quitter, return_exceptions=True)
    assert gate.waiting == 0
    hold.set()
    await first
    assert gate.held == 0


async def test_closing_the_gate_fails_its_waiters() -> None:
    gate = FairGate(slots=1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with gate.slot(None):
            await hold.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(holder())
    await asyncio.sleep(0)
    gate.close(RuntimeError("stopping"))
    with pytest.raises(RuntimeError, match="stopping"):
        await waiter
    hold.set()
    await first
    assert gate.held == 0
