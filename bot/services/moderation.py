"""Moderation checks: which messages are hostile, what was done, and when to alert moderators."""

from __future__ import annotations

import asyncio
import io
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

from cachetools import TTLCache

from bot.errors import (
    BusyError,
    InferenceError,
    InvalidInputError,
    ModelUnavailableError,
    StorageError,
)
from bot.inference.engine import InferenceEngine
from bot.inference.worker import URGENT
from bot.metrics import Metrics
from bot.services.sentiment import is_negative
from bot.storage.records import (
    UNDECIDED,
    GuildSettings,
    ModerationEvent,
    ModerationEventFilter,
    NewModerationEvent,
)
from bot.storage.repositories import GuildSettingsStore, ModerationEventStore

# Emotion labels that count as hostile on their own (go_emotions names them so).
HOSTILE_EMOTIONS = frozenset({"anger", "disgust"})
MAX_CHECKED_CHARS = 2000
ALERT_GROUP_WINDOW_S = 60.0
ALERTS_PER_MINUTE = 10
DECISIONS = {"dismiss": "dismissed", "delete": "deleted", "timeout": "timed out"}
# The most events one listing returns (the dashboard's table).
MAX_LISTED_EVENTS = 500
# How many (guild, author) pairs and guilds the alert gate remembers at most.
GATE_MEMORY = 100_000


def is_retriable(error: BaseException) -> bool:
    """Whether a failed check may work later (busy, slow or unloaded model, database hiccup).

    Repositories raise StorageError for every database failure (never SQLAlchemy's own).
    """
    return isinstance(error, BusyError | InferenceError | ModelUnavailableError | StorageError)


class AlreadyDecidedError(InvalidInputError):
    """Someone else decided on this alert first."""

    def __init__(self, event: ModerationEvent) -> None:
        super().__init__(f"That alert was already handled ({event.decision}).")
        self.event = event


@dataclass(frozen=True, slots=True)
class CheckedMessage:
    guild_id: int
    channel_id: int
    message_id: int
    author_id: int
    content: str
    author_role_ids: frozenset[int] = frozenset()
    parent_channel_id: int | None = None  # a thread's channel (text or forum)

    def in_any_of(self, channel_ids: frozenset[int]) -> bool:
        """Whether it was posted in one of these channels or in a thread of one."""
        return self.channel_id in channel_ids or self.parent_channel_id in channel_ids


@dataclass(frozen=True, slots=True)
class Verdict:
    """A message that passed a threshold: the label that did it and its score."""

    message: CheckedMessage
    label: str
    score: float


class Alert(Enum):
    POST = "post"  # a new alert in the log channel
    GROUP = "group"  # add to the author's recent alert
    CAP_NOTICE = "cap_notice"  # the guild hit its cap: post one line saying so
    SUPPRESS = "suppress"  # over the cap: recorded, not posted


@dataclass(slots=True)
class _GuildAlerts:
    posted: deque[float] = field(default_factory=deque)  # when alerts went out, last minute
    capped: bool = False  # the cap notice was posted


class AlertGate:
    """Groups alerts per author and caps them per guild, so raids do not flood moderators.

    It only remembers the last minute (and at most ``memory`` authors and guilds).
    """

    def __init__(
        self,
        group_window_s: float = ALERT_GROUP_WINDOW_S,
        per_minute: int = ALERTS_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
        memory: int = GATE_MEMORY,
    ) -> None:
        self._window = group_window_s
        self._per_minute = per_minute
        self._clock = clock
        self._last_alert: TTLCache[tuple[int, int], float] = TTLCache(
            memory, ttl=group_window_s, timer=clock
        )
        # A guild's state expires a minute after its last alert, when nothing in it counts.
        self._guilds: TTLCache[int, _GuildAlerts] = TTLCache(memory, ttl=60, timer=clock)

    def admit(self, guild_id: int, author_id: int) -> Alert:
        """What to do with a flag; a POST holds a place under the cap until ``posted`` (or
        ``withdraw`` when posting failed)."""
        now = self._clock()
        last = self._last_alert.get((guild_id, author_id))
        if last is not None and now - last < self._window:
            return Alert.GROUP
        state = self._guilds.get(guild_id) or _GuildAlerts()
        self._guilds[guild_id] = state  # (re)starts its minute
        posted = state.posted
        while posted and now - posted[0] >= 60:
            posted.popleft()
        if len(posted) >= self._per_minute:
            if state.capped:
                return Alert.SUPPRESS
            state.capped = True
            return Alert.CAP_NOTICE
        state.capped = False
        posted.append(now)
        return Alert.POST

    def posted(self, guild_id: int, author_id: int) -> None:
        """The author's alert went out: their next flags in the window join it."""
        self._last_alert[(guild_id, author_id)] = self._clock()

    def withdraw(self, guild_id: int) -> None:
        """An admitted alert could not be posted: it does not count under the cap."""
        state = self._guilds.get(guild_id)
        if state is not None and state.posted:
            state.posted.pop()

    def alert_gone(self, guild_id: int, author_id: int) -> None:
        """The author's alert is gone (deleted): their next flag is admitted anew."""
        self._last_alert.pop((guild_id, author_id), None)

    def tracked(self) -> int:
        """How many authors and guilds it remembers now."""
        self._last_alert.expire()
        self._guilds.expire()
        return len(self._last_alert) + len(self._guilds)

    def forget_guild(self, guild_id: int) -> None:
        self._guilds.pop(guild_id, None)
        for key in [key for key in self._last_alert if key[0] == guild_id]:
            self._last_alert.pop(key, None)


@dataclass(frozen=True, slots=True)
class ModerationStats:
    days: int
    total: int
    by_action: dict[str, int]
    by_label: dict[str, int]
    top_channels: list[tuple[int, int]]
    per_day: list[tuple[date, int]]
    dismissed: int


class ModerationService:
    """Per-guild moderation settings, checks of messages, and the record of what was flagged."""

    def __init__(
        self,
        engine: InferenceEngine,
        guilds: GuildSettingsStore,
        events: ModerationEventStore,
        gate: AlertGate | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics or Metrics()
        self._guilds = guilds
        self._events = events
        self.gate = gate or AlertGate()
        # Held only while someone changes a guild's exemptions; unused ones go by themselves.
        self._exempt_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def forget_guild(self, guild_id: int) -> None:
        """Drop what is kept in memory for a guild the bot left."""
        self.gate.forget_guild(guild_id)

    async def settings(self, guild_id: int) -> GuildSettings:
        return await self._guilds.get(guild_id)

    async def configure(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change moderation settings; values are checked here, not only by Discord."""
        threshold = changes.get("threshold")
        if threshold is not None and not 0 < threshold <= 1:
            raise InvalidInputError("The threshold is a score between 0 and 1, e.g. 0.9.")
        minutes = changes.get("timeout_minutes")
        if minutes is not None and not 1 <= minutes <= 40320:
            raise InvalidInputError("A timeout lasts between 1 minute and 28 days (40320).")
        return await self._guilds.update(
            guild_id, **{name: value for name, value in changes.items() if value is not None}
        )

    async def exempt(
        self,
        guild_id: int,
        *,
        role_id: int | None = None,
        channel_id: int | None = None,
        remove: bool = False,
    ) -> GuildSettings:
        """Add (or remove) an exempt role or channel."""
        lock = self._exempt_locks.get(guild_id)
        if lock is None:
            lock = self._exempt_locks[guild_id] = asyncio.Lock()
        async with lock:  # read-modify-write: one change at a time
            settings = await self._guilds.get(guild_id)
            roles, channels = set(settings.exempt_role_ids), set(settings.exempt_channel_ids)
            for target, value in ((roles, role_id), (channels, channel_id)):
                if value is not None:
                    (target.discard if remove else target.add)(value)
            return await self._guilds.update(
                guild_id, exempt_role_ids=frozenset(roles), exempt_channel_ids=frozenset(channels)
            )

    async def check(self, message: CheckedMessage) -> tuple[GuildSettings, Verdict | None]:
        """The guild's settings and, when the message passes a threshold, the verdict."""
        settings = await self._guilds.get(message.guild_id)
        text = message.content.strip()[:MAX_CHECKED_CHARS]
        if (
            not settings.moderation_enabled
            or not text
            or message.in_any_of(settings.exempt_channel_ids)
            or message.author_role_ids & settings.exempt_role_ids
        ):
            return settings, None
        self._metrics.moderation_checks.inc()
        # Concurrent checks share model batches in the engine's worker, ahead of bulk work.
        [scores] = await self._engine.classify(
            [text], role="sentiment", top_k=None, priority=URGENT
        )
        negative = max((s.score for s in scores if is_negative(s.label)), default=0.0)
        candidates = [("negative", negative)]
        if settings.use_emotions:
            [emotions] = await self._engine.classify(
                [text], role="emotion", top_k=None, priority=URGENT
            )
            candidates += [(e.label, e.score) for e in emotions if e.label in HOSTILE_EMOTIONS]
        label, score = max(candidates, key=lambda candidate: candidate[1])
        if score < settings.threshold:
            return settings, None
        self._metrics.moderation_flags.labels(label).inc()
        return settings, Verdict(message, label, score)

    async def record(self, verdict: Verdict, settings: GuildSettings) -> ModerationEvent:
        """Store the flag before anything is done about it (so it is never lost)."""
        message = verdict.message
        return await self._events.record(
            NewModerationEvent(
                message.guild_id,
                message.channel_id,
                message.message_id,
                message.author_id,
                verdict.label,
                verdict.score,
                settings.action,
                dry_run=settings.dry_run,
                action_succeeded=False,
            )
        )

    async def action_done(self, event_id: int, succeeded: bool, action: str = "unknown") -> None:
        """Store whether the action on a flag worked (``action``: what it was, for metrics)."""
        self._metrics.moderation_actions.labels(action, "ok" if succeeded else "failed").inc()
        await self._events.set_outcome(event_id, succeeded)

    async def event(self, event_id: int) -> ModerationEvent | None:
        return await self._events.get(event_id)

    async def decide(self, event_id: int, decision: str, moderator_id: int) -> ModerationEvent:
        """Store a moderator's decision (dismiss, delete, timeout) on an undecided alert."""
        if decision not in DECISIONS:
            raise InvalidInputError(f"Unknown decision {decision!r}.")
        stored = await self._events.decide_once(event_id, DECISIONS[decision], moderator_id)
        event = await self._events.get(event_id)
        if event is None:
            raise InvalidInputError("That alert is no longer in the records.")
        if not stored:
            raise AlreadyDecidedError(event)
        self._metrics.moderation_decisions.labels(decision).inc()
        return event

    async def events(
        self,
        guild_id: int,
        days: int,
        *,
        label: str | None = None,
        decision: str | None = None,
        channel_id: int | None = None,
        limit: int = 200,
    ) -> list[ModerationEvent]:
        """The guild's events of the last ``days`` days that match, newest first.

        ``decision`` is a stored decision (dismissed, deleted, timed out) or ``undecided``.
        """
        _check_days(days)
        if decision is not None and decision not in (*DECISIONS.values(), UNDECIDED):
            choices = ", ".join((*DECISIONS.values(), UNDECIDED))
            raise InvalidInputError(f"Unknown decision {decision!r}: pick one of {choices}.")
        if not 1 <= limit <= MAX_LISTED_EVENTS:
            raise InvalidInputError(f"List between 1 and {MAX_LISTED_EVENTS} events.")
        since = datetime.combine(_first_day(days), datetime.min.time(), UTC)
        return await self._events.search(
            ModerationEventFilter(guild_id, since, label, decision, channel_id, limit)
        )

    async def guild_ids(self) -> list[int]:
        """Guilds with stored settings or events, in order."""
        return sorted(await self._guilds.guild_ids() | await self._events.guild_ids())

    async def stats(self, guild_id: int, days: int) -> ModerationStats:
        """Counts of the last ``days`` days, for /moderation stats."""
        _check_days(days)
        start = _first_day(days)
        counts = await self._events.counts(
            guild_id, datetime.combine(start, datetime.min.time(), UTC)
        )
        return ModerationStats(
            days=days,
            total=counts.total,
            by_action={
                f"{action.value} (dry run)" if dry_run else action.value: count
                for action, dry_run, count in counts.by_action
            },
            by_label=dict(counts.by_label),
            top_channels=counts.top_channels,
            per_day=[
                (start + timedelta(days=i), counts.per_day.get(start + timedelta(days=i), 0))
                for i in range(days)
            ],
            dismissed=counts.by_decision.get(DECISIONS["dismiss"], 0),
        )


def _check_days(days: int) -> None:
    if not 1 <= days <= 365:
        raise InvalidInputError("Pick between 1 and 365 days.")


def _first_day(days: int) -> date:
    """The first UTC day of a period of ``days`` days that ends today."""
    return datetime.now(UTC).date() - timedelta(days=days - 1)


def render_chart(stats: ModerationStats) -> bytes:
    """A PNG bar chart of flagged messages per day (slow: call it off the event loop)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 3), dpi=100)
    axes = figure.subplots()
    days = [day.strftime("%b %d") for day, _ in stats.per_day]
    axes.bar(days, [count for _, count in stats.per_day], color="#d9534f")
    axes.set_title(f"Flagged messages per day (last {stats.days} days)")
    axes.set_ylabel("messages")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if len(days) > 14:
        axes.set_xticks(days[:: len(days) // 14 + 1])
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
