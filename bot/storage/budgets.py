"""Token usage per member and day, and each guild's own budget limits."""

from __future__ import annotations

from datetime import date

from sqlalchemy import delete, func, select, update

from bot.storage.engine import SessionFactory
from bot.storage.guard import insert_if_missing, storage_call
from bot.storage.models import GuildBudgetRow, TokenUsageRow, utcnow
from bot.storage.records import GuildBudget, TokenUsage


class TokenUsageStore:
    """Daily token counters; adding is one atomic UPDATE, so concurrent answers never lose."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @storage_call
    async def add(self, guild_id: int, user_id: int, day: date, tokens: int) -> None:
        """Count ``tokens`` more for a member on ``day``."""
        key = {"guild_id": guild_id, "day": day, "user_id": user_id}
        async with self._sessions() as session, session.begin():
            await insert_if_missing(session, TokenUsageRow, {**key, "tokens": 0})
            await session.execute(
                update(TokenUsageRow)
                .where(
                    TokenUsageRow.guild_id == guild_id,
                    TokenUsageRow.day == day,
                    TokenUsageRow.user_id == user_id,
                )
                .values(tokens=TokenUsageRow.tokens + tokens)
            )

    @storage_call
    async def usage(self, guild_id: int, user_id: int, day: date) -> TokenUsage:
        """What the member and the whole guild used on ``day``."""
        in_guild = (TokenUsageRow.guild_id == guild_id, TokenUsageRow.day == day)
        async with self._sessions() as session:
            guild_total = await session.scalar(
                select(func.coalesce(func.sum(TokenUsageRow.tokens), 0)).where(*in_guild)
            )
            member = await session.scalar(
                select(TokenUsageRow.tokens).where(*in_guild, TokenUsageRow.user_id == user_id)
            )
        return TokenUsage(int(member or 0), int(guild_total or 0))

    @storage_call
    async def prune_before(self, day: date) -> int:
        """Delete counters of days before ``day``; returns how many rows."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(delete(TokenUsageRow).where(TokenUsageRow.day < day))
        return int(getattr(result, "rowcount", 0) or 0)


class GuildBudgetStore:
    """Limits a guild's managers set for themselves."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @storage_call
    async def get(self, guild_id: int) -> GuildBudget:
        """The guild's limits (both None when it never set any)."""
        async with self._sessions() as session:
            row = await session.get(GuildBudgetRow, guild_id)
        if row is None:
            return GuildBudget(guild_id)
        return GuildBudget(guild_id, row.member_daily_tokens, row.guild_daily_tokens)

    @storage_call
    async def set(self, budget: GuildBudget) -> GuildBudget:
        """Store the guild's limits as given (None: back to the bot's default)."""
        async with self._sessions() as session, session.begin():
            await insert_if_missing(session, GuildBudgetRow, {"guild_id": budget.guild_id})
            await session.execute(
                update(GuildBudgetRow)
                .where(GuildBudgetRow.guild_id == budget.guild_id)
                .values(
                    member_daily_tokens=budget.member_daily_tokens,
                    guild_daily_tokens=budget.guild_daily_tokens,
                    updated_at=utcnow(),
                )
            )
        return budget
