"""Channel lines (answer order, reset, memory) and per-member rate limits."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import CooldownError
from bot.services.cooldowns import RateLimit
from bot.services.lines import AnswerDroppedError, ChannelLine


async def test_places_get_their_turn_in_the_order_they_joined() -> None:
    line = ChannelLine()
    places = [line.join(7) for _ in range(5)]
    order: list[int] = []

    async def answer(number: int, delay: float) -> None:
        with places[number] as place:
            await asyncio.sleep(delay)  # e.g. a slower read before this one waits its turn
            await place.wait_turn()
            order.append(number)

    assert [p.ahead for p in places] == [0, 1, 2, 3, 4]
    await asyncio.gather(*(answer(n, 0.02 * (5 - n)) for n in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert line.waiting(7) == 0


async def test_a_place_that_leaves_early_does_not_block_the_line() -> None:
    line = ChannelLine()
    first, second, third = line.join(1), line.join(1), line.join(1)
    second.leave()  # decided not to answer
    first.leave()
    await asyncio.wait_for(third.wait_turn(), 1)
    third.leave()
    assert line.waiting(1) == 0


async def test_drop_stops_the_waiting_and_the_running_places() -> None:
    line = ChannelLine()
    running, waiting = line.join(3), line.join(3)
    await running.wait_turn()
    other_channel = line.join(4)

    assert line.drop(3) == 2
    with pytest.raises(AnswerDroppedError, match="reset"):
        running.raise_if_dropped()
    with pytest.raises(AnswerDroppedError):
        await asyncio.wait_for(waiting.wait_turn(), 1)
    other_channel.raise_if_dropped()  # other channels carry on
    await asyncio.wait_for(other_channel.wait_turn(), 1)


def test_lines_forget_empty_channels() -> None:
    line = ChannelLine()
    for channel_id in range(1000):
        with line.join(channel_id):
            pass
    assert line._lines == {}


def test_rate_limit_sliding_window_and_one_notice_per_flood() -> None:
    now = [0.0]
    limit = RateLimit(3, 60, clock=lambda: now[0])
    for _ in range(3):
        limit.hit("alice")
        now[0] += 1
    with pytest.raises(CooldownError) as first:
        limit.hit("alice")
    assert not first.value.repeated
    assert "57 s" in first.value.message  # now t=3; the use at t=0 leaves at t=60
    with pytest.raises(CooldownError) as second:
        limit.hit("alice")
    assert second.value.repeated
    limit.hit("bob")  # others are not affected
    now[0] = 60.0
    limit.hit("alice")  # the first use has left the window


@given(
    uses=st.integers(1, 5),
    gaps=st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=60),
)
def test_rate_limit_never_admits_more_than_its_uses_in_any_window(
    uses: int, gaps: list[float]
) -> None:
    now = [0.0]
    limit = RateLimit(uses, 60, clock=lambda: now[0])
    admitted: list[float] = []
    waits: list[float] = []
    for gap in gaps:
        now[0] += gap
        try:
            limit.hit(1)
        except CooldownError as error:
            waits.append(error.retry_after_s)
        else:
            admitted.append(now[0])
    assert all(0 < wait <= 60 for wait in waits)
    for index, moment in enumerate(admitted):
        in_window = [t for t in admitted[: index + 1] if moment - t < 60]
        assert len(in_window) <= uses
