"""Daily token budgets: per member and per guild, with each guild's own limits."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from cachetools import TTLCache

from bot.errors import InvalidInputError, UserFacingError
from bot.storage.budgets import GuildBudgetStore, TokenUsageStore
from bot.storage.records import GuildBudget, TokenUsage

log = logging.getLogger(__name__)

# The most a guild may set for itself (a typo of a few zeros is refused, not stored).
MAX_DAILY_TOKENS = 100_000_000
# Characters per token for texts whose model's tokenizer is not at hand (summaries, files):
# the usual figure for English with BPE tokenizers.
CHARS_PER_TOKEN = 4
# Counters older than this many days are deleted (they only ever serve today's checks).
KEEP_USAGE_DAYS = 2

Counter = Callable[[Sequence[str]], Awaitable[list[int]]]


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """Daily token limits in force; 0 means no limit."""

    member_daily: int
    guild_daily: int


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    limits: BudgetLimits
    usage: TokenUsage
    resets_in: timedelta


class BudgetExceededError(UserFacingError):
    """A member's or guild's tokens for today are spent."""

    def __init__(self, message: str, *, repeated: bool = False) -> None:
        super().__init__(message)
        self.repeated = repeated


def estimate_tokens(text: str) -> int:
    """About how many tokens ``text`` is, without a tokenizer (at least 1 for any text)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def limits_in_force(defaults: BudgetLimits, own: GuildBudget) -> BudgetLimits:
    """The guild's own limits where it set them, else the bot's defaults."""
    return BudgetLimits(
        defaults.member_daily if own.member_daily_tokens is None else own.member_daily_tokens,
        defaults.guild_daily if own.guild_daily_tokens is None else own.guild_daily_tokens,
    )


def remaining(limit: int, used: int) -> int | None:
    """Tokens left under ``limit`` (None: no limit)."""
    return None if limit <= 0 else max(0, limit - used)


def refusal(usage: TokenUsage, limits: BudgetLimits, upcoming: int = 0) -> str | None:
    """Which budget a request of about ``upcoming`` tokens would break ("member", "guild"), or
    None. A spent budget refuses anything; one with tokens left takes a request up to them."""
    for name, limit, used in (
        ("member", limits.member_daily, usage.member_tokens),
        ("guild", limits.guild_daily, usage.guild_tokens),
    ):
        left = remaining(limit, used)
        if left is not None and (left == 0 or upcoming > left):
            return name
    return None


def until_reset(now: datetime) -> timedelta:
    """Time until the next UTC midnight, when every budget starts again."""
    now = now.astimezone(UTC)
    tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return tomorrow - now


def describe_duration(span: timedelta) -> str:
    """``3 h 12 min``, ``12 min``, ``under a minute``."""
    minutes = math.ceil(span.total_seconds() / 60)
    if minutes <= 0:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def refusal_message(which: str, usage: TokenUsage, limits: BudgetLimits, now: datetime) -> str:
    """The sentence a refused member reads."""
    wait = describe_duration(until_reset(now))
    if which == "member":
        return (
            f"You've used {usage.member_tokens:,} of your {limits.member_daily:,} tokens for "
            f"today in this server (or this request needs more than is left). "
            f"Your budget starts again in {wait}."
        )
    return (
        f"This server has used {usage.guild_tokens:,} of its {limits.guild_daily:,} tokens "
        f"for today (or this request needs more than is left). It starts again in {wait}."
    )


def check_limit(value: int | None) -> int | None:
    """A limit a guild may set: None (default), 0 (no limit) up to MAX_DAILY_TOKENS."""
    if value is not None and not 0 <= value <= MAX_DAILY_TOKENS:
        raise InvalidInputError(f"A daily limit must be between 0 and {MAX_DAILY_TOKENS:,} tokens.")
    return value


class BudgetService:
    """Checks requests against today's budgets before they run and counts them after."""

    def __init__(
        self,
        usage: TokenUsageStore,
        budgets: GuildBudgetStore,
        defaults: BudgetLimits,
        count: Counter | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._usage = usage
        self._count = count
        self._budgets = budgets
        self.defaults = defaults
        self._clock = clock
        self._pruned_day: date | None = None
        # Members told their budget is spent: in channels, told once a minute, not per message.
        self._told: TTLCache[tuple[int, int], None] = TTLCache(50_000, ttl=60.0)

    def _today(self) -> date:
        return self._clock().astimezone(UTC).date()

    async def status(self, guild_id: int, member_id: int) -> BudgetStatus:
        """Limits in force, today's usage, and when it starts again."""
        limits = limits_in_force(self.defaults, await self._budgets.get(guild_id))
        usage = await self._usage.usage(guild_id, member_id, self._today())
        return BudgetStatus(limits, usage, until_reset(self._clock()))

    async def check(self, guild_id: int, member_id: int, upcoming: int = 0) -> None:
        """Raise BudgetExceededError if a request of about ``upcoming`` tokens is over budget."""
        status = await self.status(guild_id, member_id)
        which = refusal(status.usage, status.limits, upcoming)
        if which is not None:
            key = (guild_id, member_id)
            repeated = key in self._told
            self._told[key] = None
            raise BudgetExceededError(
                refusal_message(which, status.usage, status.limits, self._clock()),
                repeated=repeated,
            )

    async def charge(self, guild_id: int, member_id: int, tokens: int) -> None:
        """Count ``tokens`` used by a member today."""
        if tokens <= 0:
            return
        today = self._today()
        await self._usage.add(guild_id, member_id, today, tokens)
        if self._pruned_day != today:  # once a day: yesterday's counters are never read again
            self._pruned_day = today
            removed = await self._usage.prune_before(today - timedelta(days=KEEP_USAGE_DAYS))
            if removed:
                log.info("budgets: removed %d old usage counters", removed)

    async def charge_texts(
        self, guild_id: int, member_id: int, texts: Sequence[str], *, exact: bool = True
    ) -> int:
        """Count what ``texts`` cost (the chat model's tokens when ``exact``, else an estimate);
        returns the tokens charged."""
        texts = [text for text in texts if text]
        if not texts:
            return 0
        if exact and self._count is not None:
            tokens = sum(await self._count(texts))
        else:
            tokens = sum(estimate_tokens(text) for text in texts)
        await self.charge(guild_id, member_id, tokens)
        return tokens

    async def set_limits(
        self,
        guild_id: int,
        *,
        member_daily: int | None = None,
        guild_daily: int | None = None,
        reset: bool = False,
    ) -> BudgetLimits:
        """Change the guild's own limits (None: left as they are; ``reset``: back to the bot's
        defaults first) and return those in force."""
        own = GuildBudget(guild_id) if reset else await self._budgets.get(guild_id)
        own = GuildBudget(
            guild_id,
            own.member_daily_tokens if member_daily is None else check_limit(member_daily),
            own.guild_daily_tokens if guild_daily is None else check_limit(guild_daily),
        )
        await self._budgets.set(own)
        return limits_in_force(self.defaults, own)
