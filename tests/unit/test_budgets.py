"""Token budgets: the arithmetic (hypothesis), the place-in-line text, and the stored counters."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import InvalidInputError
from bot.services.budgets import (
    BudgetExceededError,
    BudgetLimits,
    BudgetService,
    describe_duration,
    estimate_tokens,
    limits_in_force,
    refusal,
    remaining,
    until_reset,
)
from bot.services.waiting import describe_wait
from bot.storage.budgets import GuildBudgetStore, TokenUsageStore
from bot.storage.engine import SessionFactory
from bot.storage.records import GuildBudget, TokenUsage

tokens = st.integers(0, 10**9)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(tokens, tokens)
def test_remaining_is_never_negative_and_zero_means_no_limit(limit: int, used: int) -> None:
    left = remaining(limit, used)
    if limit == 0:
        assert left is None
    else:
        assert left is not None and 0 <= left <= limit
        assert left == 0 or used + left == limit


@given(tokens, tokens, tokens, tokens, st.integers(0, 10**6))
def test_refusal_follows_what_is_left(
    member_limit: int, guild_limit: int, member_used: int, guild_used: int, upcoming: int
) -> None:
    limits = BudgetLimits(member_limit, guild_limit)
    which = refusal(TokenUsage(member_used, guild_used), limits, upcoming)
    member_left = remaining(member_limit, member_used)
    guild_left = remaining(guild_limit, guild_used)
    member_ok = member_left is None or (member_left > 0 and upcoming <= member_left)
    guild_ok = guild_left is None or (guild_left > 0 and upcoming <= guild_left)
    assert which == (None if member_ok and guild_ok else "member" if not member_ok else "guild")


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_more_usage_never_turns_a_refusal_into_an_allowance(used: int, more: int) -> None:
    limits = BudgetLimits(5000, 0)
    if refusal(TokenUsage(used, used), limits) is not None:
        assert refusal(TokenUsage(used + more, used + more), limits) is not None


@given(st.one_of(st.none(), tokens), st.one_of(st.none(), tokens), tokens, tokens)
def test_a_guilds_own_limits_win_where_set(
    own_member: int | None, own_guild: int | None, default_member: int, default_guild: int
) -> None:
    limits = limits_in_force(
        BudgetLimits(default_member, default_guild), GuildBudget(1, own_member, own_guild)
    )
    assert limits.member_daily == (default_member if own_member is None else own_member)
    assert limits.guild_daily == (default_guild if own_guild is None else own_guild)


@given(moments)
def test_budgets_reset_at_the_next_utc_midnight(now: datetime) -> None:
    wait = until_reset(now)
    assert timedelta(0) < wait <= timedelta(days=1)
    assert (now + wait).time() == datetime.min.time()
    assert "min" in describe_duration(wait) or " h" in describe_duration(wait)


@given(st.text(max_size=5000))
def test_token_estimate_is_positive_for_any_text(text: str) -> None:
    estimate = estimate_tokens(text)
    assert estimate == 0 if not text else estimate >= 1
    assert estimate <= len(text)


@given(st.integers(-10, 10**6), st.floats(allow_nan=True, allow_infinity=True))
def test_place_in_line_text(place: int, seconds: float) -> None:
    text = describe_wait(place, seconds)
    assert text.startswith(f"#{max(1, place)} in line, about ")
    assert text.endswith((" s", " min"))
    number = int(text.rsplit(" ", 2)[1])
    assert number >= 1


def test_place_in_line_reads_as_in_the_feature_request() -> None:
    assert describe_wait(3, 11.2) == "#3 in line, about 12 s"
    assert describe_wait(9, 185) == "#9 in line, about 4 min"


@pytest.mark.both_backends
async def test_usage_adds_up_per_member_guild_and_day(sessions: SessionFactory) -> None:
    usage = TokenUsageStore(sessions)
    today, yesterday = date(2026, 11, 23), date(2026, 11, 22)
    await asyncio.gather(*(usage.add(1, 10, today, 5) for _ in range(20)))  # concurrent
    await usage.add(1, 11, today, 7)
    await usage.add(1, 10, yesterday, 1000)
    await usage.add(2, 10, today, 1000)
    assert await usage.usage(1, 10, today) == TokenUsage(100, 107)
    assert await usage.usage(1, 12, today) == TokenUsage(0, 107)
    assert await usage.prune_before(today) == 1
    assert await usage.usage(1, 10, yesterday) == TokenUsage(0, 0)


@pytest.mark.both_backends
async def test_service_refuses_a_spent_member_until_the_guild_raises_it(
    sessions: SessionFactory,
) -> None:
    now = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)
    service = BudgetService(
        TokenUsageStore(sessions),
        GuildBudgetStore(sessions),
        BudgetLimits(100, 0),
        clock=lambda: now,
    )
    await service.check(1, 10)
    assert await service.charge_texts(1, 10, ["x" * 400]) == 100  # estimated: no counter
    with pytest.raises(BudgetExceededError, match="starts again in 1 h 30 min") as refused:
        await service.check(1, 10)
    assert not refused.value.repeated
    with pytest.raises(BudgetExceededError) as again:
        await service.check(1, 10)
    assert again.value.repeated  # told once a minute in channels
    await service.check(1, 11)  # another member is not affected
    with pytest.raises(BudgetExceededError):
        await service.check(1, 11, upcoming=101)  # more than is left
    assert await service.set_limits(1, member_daily=1000) == BudgetLimits(1000, 0)
    await service.check(1, 10)
    assert await service.set_limits(1, guild_daily=50) == BudgetLimits(1000, 50)
    with pytest.raises(BudgetExceededError, match="This server has used 100"):
        await service.check(1, 11)
    assert await service.set_limits(1, reset=True) == BudgetLimits(100, 0)
    with pytest.raises(InvalidInputError):
        await service.set_limits(1, member_daily=-1)
