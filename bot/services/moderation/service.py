"""Moderation checks: which messages are hostile, what was done, and when to alert moderators."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.errors import (
    BusyError,
    InferenceError,
    InvalidInputError,
    ModelUnavailableError,
    StorageError,
)
from bot.inference.engine import InferenceEngine
from bot.metrics import Metrics
from bot.services.explain import WordEffect, strongest, word_effects
from bot.services.moderation import learning
from bot.services.moderation.decisions import Decision, action_verb
from bot.services.moderation.gate import Alert, AlertGate
from bot.services.moderation.learning import LabelReview, Proposal
from bot.services.moderation.signals import (
    EMOTIONS,
    LABEL_PATTERN,
    active_signals,
    flagging_label,
    score_texts,
    signal_of,
)
from bot.services.moderation.stats import ModerationStats, check_days, day_start, first_day
from bot.services.moderation.temperature import ChannelTemperature
from bot.storage.records import (
    UNDECIDED,
    GuildSettings,
    ModerationEvent,
    ModerationEventFilter,
    NewModerationEvent,
)
from bot.storage.repositories import GuildSettingsStore, ModerationEventStore
from bot.storage.scores import ModerationHistory

log = logging.getLogger(__name__)

MAX_CHECKED_CHARS = 2000
# The most events one listing returns (the dashboard's table).
MAX_LISTED_EVENTS = 500
# The longest a heated channel's slowmode lasts before it is lifted again.
MAX_SLOWMODE_MINUTES = 24 * 60


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
    scores: Mapping[str, float] = field(default_factory=dict)  # every label checked


class ActingFailedError(Exception):
    """Acting on or alerting about a stored flag failed: logged, never retried."""

    def __init__(self, event: ModerationEvent) -> None:
        super().__init__(f"acting on moderation event {event.id} failed")
        self.event = event


AlertKey = tuple[int, int]  # (guild id, author id)


class ModerationActions(Protocol):
    """The Discord side of one flagged message, implemented by the cog."""

    async def apply(self, settings: GuildSettings) -> tuple[str, bool]:
        """Carry out the configured action; what happened and whether it worked."""
        ...

    def can_alert(self, settings: GuildSettings) -> bool:
        """Whether there is a log channel to alert in."""
        ...

    def alert_lock(self, key: AlertKey) -> AbstractAsyncContextManager[Any]:
        """Held while an author's alert is posted or joined (edits of it wait on it too)."""
        ...

    async def post_alert(
        self,
        settings: GuildSettings,
        event: ModerationEvent,
        outcome: str,
        reasons: Sequence[WordEffect],
    ) -> None:
        """Post a new alert for ``event``, naming the words that drove its score."""
        ...

    async def join_alert(self, key: AlertKey, event: ModerationEvent, outcome: str) -> bool:
        """Count ``event`` on the author's recent alert; False when there is none any more."""
        ...

    async def post_heat_alert(
        self, settings: GuildSettings, channel_id: int, share: float, checked: int
    ) -> None:
        """Tell moderators the channel is heated: ``share`` of its last ``checked`` flagged."""
        ...

    async def post_cap_notice(self, settings: GuildSettings) -> None:
        """Say that further alerts this minute are recorded without being posted."""
        ...


class ModerationService:
    """Per-guild moderation settings, checks of messages, and the record of what was flagged."""

    def __init__(
        self,
        engine: InferenceEngine,
        guilds: GuildSettingsStore,
        events: ModerationEventStore,
        gate: AlertGate | None = None,
        metrics: Metrics | None = None,
        history: ModerationHistory | None = None,
    ) -> None:
        self._engine = engine
        self.history = history  # None: checked messages' scores are not kept
        self._metrics = metrics or Metrics()
        self._guilds = guilds
        self._events = events
        self.gate = gate or AlertGate()
        self.temperature = ChannelTemperature()
        # Held only while someone changes a guild's exemptions; unused ones go by themselves.
        self._exempt_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def forget_guild(self, guild_id: int) -> None:
        """Drop what is kept in memory for a guild the bot left."""
        self.gate.forget_guild(guild_id)
        self.temperature.forget_guild(guild_id)
        self._guilds.forget_guild(guild_id)

    async def settings(self, guild_id: int) -> GuildSettings:
        return await self._guilds.get(guild_id)

    async def configure(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change moderation settings; values are checked here, not only by Discord."""
        threshold = changes.get("threshold")
        if threshold is not None and not 0 < threshold <= 1:
            raise InvalidInputError("The threshold is a score between 0 and 1, e.g. 0.9.")
        signals = changes.get("signals")
        if signals is not None:
            changes["use_emotions"] = EMOTIONS in signals  # one switch, not two
        minutes = changes.get("timeout_minutes")
        if minutes is not None and not 1 <= minutes <= 40320:
            raise InvalidInputError("A timeout lasts between 1 minute and 28 days (40320).")
        level = changes.get("temperature_level")
        if level is not None and not 0 <= level <= 1:
            raise InvalidInputError("The temperature is a share of messages, 0-100 % (0: off).")
        slowmode = changes.get("slowmode_minutes")
        if slowmode is not None and not 1 <= slowmode <= MAX_SLOWMODE_MINUTES:
            raise InvalidInputError(
                f"The slowmode lasts between 1 and {MAX_SLOWMODE_MINUTES} minutes."
            )
        return await self._guilds.update(
            guild_id, **{name: value for name, value in changes.items() if value is not None}
        )

    async def set_label_threshold(
        self, guild_id: int, label: str, threshold: float
    ) -> GuildSettings:
        """Give one label its own threshold; 0 makes it use the guild's threshold again."""
        label = label.strip().lower()
        if not LABEL_PATTERN.fullmatch(label):
            raise InvalidInputError(
                "A label is a model's label name, e.g. toxic, insult, anger or negative."
            )
        if not 0 <= threshold <= 1:
            raise InvalidInputError("A threshold is a score between 0 and 1 (0: the default).")
        async with self._guild_lock(guild_id):  # read-modify-write: one change at a time
            settings = await self._guilds.get(guild_id)
            thresholds = dict(settings.label_thresholds)
            if threshold == 0:
                thresholds.pop(label, None)
            else:
                thresholds[label] = threshold
            return await self._guilds.update(guild_id, label_thresholds=thresholds)

    def _guild_lock(self, guild_id: int) -> asyncio.Lock:
        lock = self._exempt_locks.get(guild_id)
        if lock is None:
            lock = self._exempt_locks[guild_id] = asyncio.Lock()
        return lock

    async def exempt(
        self,
        guild_id: int,
        *,
        role_id: int | None = None,
        channel_id: int | None = None,
        remove: bool = False,
    ) -> GuildSettings:
        """Add (or remove) an exempt role or channel."""
        async with self._guild_lock(guild_id):  # read-modify-write: one change at a time
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
        settings, verdict, _ = await self._check(message)
        return settings, verdict

    async def _check(self, message: CheckedMessage) -> tuple[GuildSettings, Verdict | None, bool]:
        """``check``, and whether the message was scored at all (not exempt, not empty)."""
        settings = await self._guilds.get(message.guild_id)
        text = message.content.strip()[:MAX_CHECKED_CHARS]
        if (
            not settings.moderation_enabled
            or not text
            or message.in_any_of(settings.exempt_channel_ids)
            or message.author_role_ids & settings.exempt_role_ids
        ):
            return settings, None, False
        self._metrics.moderation_checks.inc()
        # Concurrent checks share model batches in each engine worker, ahead of bulk work.
        [scores] = await score_texts(self._engine, [text], active_signals(settings))
        await self._keep_scores(message, scores)
        label = flagging_label(settings, scores)
        if label is None:
            return settings, None, True
        self._metrics.moderation_flags.labels(label).inc()
        return settings, Verdict(message, label, scores[label], scores), True

    async def _keep_scores(self, message: CheckedMessage, scores: dict[str, float]) -> None:
        if self.history is None:
            return
        # For /moderation replay; best effort, a check goes on when it could not be kept.
        await self.history.record_scores(
            message.guild_id, message.channel_id, message.message_id, scores
        )

    async def review(self, guild_id: int, days: int) -> list[LabelReview]:
        """Per label, the flags moderators confirmed or dismissed in the last ``days``."""
        return learning.review(await self._history().reviewed_since(guild_id, _since(days)))

    async def propose_thresholds(
        self, guild_id: int, target_precision: float, days: int = 90
    ) -> list[Proposal]:
        """Per-label thresholds the guild's reviewed flags say would reach the precision."""
        if not 0 < target_precision <= 1:
            raise InvalidInputError("The target precision is between 0 and 1, e.g. 0.9.")
        flags = await self._history().reviewed_since(guild_id, _since(days))
        return learning.propose(flags, target_precision)

    async def apply_thresholds(self, guild_id: int, proposals: Sequence[Proposal]) -> GuildSettings:
        """Set the proposed thresholds (other labels keep theirs)."""
        async with self._guild_lock(guild_id):
            settings = await self._guilds.get(guild_id)
            thresholds = {**settings.label_thresholds}
            thresholds.update({p.label: p.threshold for p in proposals})
            return await self._guilds.update(guild_id, label_thresholds=thresholds)

    async def replay(
        self, guild_id: int, threshold: float, label: str | None, days: int
    ) -> tuple[int, int]:
        """(would be flagged, checked) over the kept scores of the last ``days``."""
        if not 0 < threshold <= 1:
            raise InvalidInputError("The threshold is a score between 0 and 1, e.g. 0.8.")
        checked = await self._history().scores_since(guild_id, _since(days))
        clean = label.strip().lower() if label else None
        return learning.replay_count(checked, threshold, clean), len(checked)

    def _history(self) -> ModerationHistory:
        if self.history is None:
            raise InvalidInputError("This bot keeps no moderation history.")
        return self.history

    async def process(
        self, message: CheckedMessage, actions: ModerationActions
    ) -> ModerationEvent | None:
        """Check a message, then record -> act -> alert; the event, or None if not flagged.

        Before the flag is stored, only errors worth a retry (``is_retriable``) are raised as
        they are; once it is stored, a failure raises ActingFailedError and is never retried.
        """
        settings, verdict, scored = await self._check(message)
        # Stored first, so that a flag is never lost: nothing was done yet, so a failure
        # here is tried again like a failed check.
        event = await self.record(verdict, settings) if verdict is not None else None
        if scored:  # after the flag is stored: a retried check is not counted twice
            await self._take_temperature(message, settings, event is not None, actions)
        if verdict is None or event is None:
            return None
        try:
            outcome = await self._act(settings, event, actions)
            if actions.can_alert(settings):
                reasons = await self._reasons(message, verdict.label)
                await self._alert(settings, event, outcome, reasons, actions)
        except Exception as error:
            raise ActingFailedError(event) from error
        return event

    async def _take_temperature(
        self,
        message: CheckedMessage,
        settings: GuildSettings,
        flagged: bool,
        actions: ModerationActions,
    ) -> None:
        """Count the message in its channel's temperature; alert once when it heats up."""
        guild_id, channel_id = message.guild_id, message.channel_id
        heated = self.temperature.observe(guild_id, channel_id, flagged, settings.temperature_level)
        if not heated or not actions.can_alert(settings):
            return
        share = self.temperature.share(guild_id, channel_id)
        checked = self.temperature.checked(guild_id, channel_id)
        try:
            await actions.post_heat_alert(settings, channel_id, share, checked)
        except Exception as error:  # the channel's flags still go on as usual
            log.warning("could not post a heat alert for channel %s: %s", channel_id, error)

    async def _act(
        self, settings: GuildSettings, event: ModerationEvent, actions: ModerationActions
    ) -> str:
        if settings.dry_run:
            outcome, succeeded = f"dry run: would {action_verb(settings)}", True
        else:
            outcome, succeeded = await actions.apply(settings)
        action = "dry_run" if settings.dry_run else settings.action.value
        await self.action_done(event.id, succeeded, action)
        return outcome

    async def explain(self, text: str, label: str) -> list[WordEffect]:
        """The words that drove ``label``'s score most (re-scored without each, one batch)."""
        signals = frozenset({signal_of(label)})

        async def score(texts: list[str]) -> list[float]:
            return [s.get(label, 0.0) for s in await score_texts(self._engine, texts, signals)]

        return strongest(await word_effects(text.strip()[:MAX_CHECKED_CHARS], score))

    async def _reasons(self, message: CheckedMessage, label: str) -> list[WordEffect]:
        try:
            return await self.explain(message.content, label)
        except Exception as error:  # an alert without reasons beats no alert
            log.warning("could not explain flag of message %s: %s", message.message_id, error)
            return []

    async def _alert(
        self,
        settings: GuildSettings,
        event: ModerationEvent,
        outcome: str,
        reasons: Sequence[WordEffect],
        actions: ModerationActions,
    ) -> None:
        key = (event.guild_id, event.author_id)
        async with actions.alert_lock(key):  # an author's flags join their alert one by one
            try:
                await self._post_alert(settings, key, event, outcome, reasons, actions)
            except Exception as error:
                log.warning("could not post a moderation alert for event %s: %s", event.id, error)

    async def _post_alert(
        self,
        settings: GuildSettings,
        key: AlertKey,
        event: ModerationEvent,
        outcome: str,
        reasons: Sequence[WordEffect],
        actions: ModerationActions,
    ) -> None:
        admitted = self.gate.admit(*key)
        if admitted is Alert.GROUP:
            if await actions.join_alert(key, event, outcome):
                return
            self.gate.alert_gone(*key)  # deleted by a moderator, or no longer remembered
            admitted = self.gate.admit(*key)
        if admitted is Alert.POST:
            try:
                await actions.post_alert(settings, event, outcome, reasons)
            except BaseException:
                self.gate.withdraw(key[0])  # nothing went out: later flags must not join it
                raise
            self.gate.posted(*key)
        elif admitted is Alert.CAP_NOTICE:
            await actions.post_cap_notice(settings)

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
                scores=verdict.scores,
            )
        )

    async def action_done(self, event_id: int, succeeded: bool, action: str = "unknown") -> None:
        """Store whether the action on a flag worked (``action``: what it was, for metrics)."""
        self._metrics.moderation_actions.labels(action, "ok" if succeeded else "failed").inc()
        await self._events.set_outcome(event_id, succeeded)

    async def event(self, event_id: int) -> ModerationEvent | None:
        return await self._events.get(event_id)

    async def decide(self, event_id: int, decision: Decision, moderator_id: int) -> ModerationEvent:
        """Store a moderator's decision (dismiss, delete, timeout) on an undecided alert."""
        stored = await self._events.decide_once(event_id, decision.past, moderator_id)
        event = await self._events.get(event_id)
        if event is None:
            raise InvalidInputError("That alert is no longer in the records.")
        if not stored:
            raise AlreadyDecidedError(event)
        self._metrics.moderation_decisions.labels(decision.value).inc()
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
        check_days(days)
        choices = (*(d.past for d in Decision), UNDECIDED)
        if decision is not None and decision not in choices:
            raise InvalidInputError(
                f"Unknown decision {decision!r}: pick one of {', '.join(choices)}."
            )
        if not 1 <= limit <= MAX_LISTED_EVENTS:
            raise InvalidInputError(f"List between 1 and {MAX_LISTED_EVENTS} events.")
        return await self._events.search(
            ModerationEventFilter(
                guild_id, day_start(first_day(days)), label, decision, channel_id, limit
            )
        )

    async def guild_ids(self) -> list[int]:
        """Guilds with stored settings or events, in order."""
        return sorted(await self._guilds.guild_ids() | await self._events.guild_ids())

    async def stats(self, guild_id: int, days: int) -> ModerationStats:
        """Counts of the last ``days`` days, for /moderation stats."""
        check_days(days)
        start = first_day(days)
        counts = await self._events.counts(guild_id, day_start(start))
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
            dismissed=counts.by_decision.get(Decision.DISMISS.past, 0),
        )


def _since(days: int) -> datetime:
    if not 1 <= days <= 365:
        raise InvalidInputError("Pick between 1 and 365 days.")
    return datetime.now(UTC) - timedelta(days=days)
