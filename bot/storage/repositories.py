"""Repositories: one session per call, dataclasses in and out, StorageError on failure."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, update

from bot.storage.cache import SettingsCache
from bot.storage.engine import SessionFactory
from bot.storage.functions import UtcDay
from bot.storage.guard import insert_if_missing, storage_call
from bot.storage.models import (
    ChannelSettingsRow,
    ConversationSummaryRow,
    ConversationTurnRow,
    GuildSettingsRow,
    ModerationEventRow,
    utcnow,
)
from bot.storage.records import (
    UNDECIDED,
    ChannelMemory,
    ChannelOverrides,
    ChannelSettings,
    ConversationSummary,
    GuildSettings,
    ModerationAction,
    ModerationCounts,
    ModerationEvent,
    ModerationEventFilter,
    NewModerationEvent,
    NewTurn,
    RememberedChannel,
    Role,
    Turn,
    effective_settings,
)


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _turn(row: ConversationTurnRow) -> Turn:
    return Turn(
        id=row.id,
        guild_id=row.guild_id,
        channel_id=row.channel_id,
        author_id=row.author_id,
        author_name=row.author_name,
        role=Role(row.role),
        content=row.content,
        token_count=row.token_count,
        created_at=_as_utc(row.created_at),
        message_id=row.message_id,
    )


def _summary(row: ConversationSummaryRow) -> ConversationSummary:
    return ConversationSummary(
        guild_id=row.guild_id,
        channel_id=row.channel_id,
        content=row.content,
        covered_through=row.covered_through,
        turns_folded=row.turns_folded,
        updated_at=_as_utc(row.updated_at),
    )


class ConversationStore:
    """Per-channel conversation history and its rolling summary.

    A summary never outlives a turn it was made from: every delete of turns also deletes the
    summaries that cover any of them (in the same transaction); the next refresh rebuilds
    the summary from the turns that remain.
    """

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @storage_call
    async def add_turn(self, turn: NewTurn) -> Turn:
        """Store one turn and return it with its id."""
        row = ConversationTurnRow(
            guild_id=turn.guild_id,
            channel_id=turn.channel_id,
            author_id=turn.author_id,
            author_name=turn.author_name,
            role=turn.role.value,
            content=turn.content,
            token_count=turn.token_count,
            message_id=turn.message_id,
            created_at=utcnow(),
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        return _turn(row)

    @storage_call
    async def recent_turns(self, guild_id: int, channel_id: int, limit: int) -> list[Turn]:
        """The channel's last ``limit`` turns, oldest first."""
        query = (
            select(ConversationTurnRow)
            .where(
                ConversationTurnRow.guild_id == guild_id,
                ConversationTurnRow.channel_id == channel_id,
            )
            .order_by(ConversationTurnRow.id.desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [_turn(row) for row in reversed(rows)]

    @storage_call
    async def memory(self, guild_id: int, channel_id: int, limit: int) -> ChannelMemory:
        """The channel's summary and up to ``limit`` of the newest turns after it."""
        turn = ConversationTurnRow
        async with self._sessions() as session:
            row = await session.get(ConversationSummaryRow, channel_id)
            summary = _summary(row) if row is not None and row.guild_id == guild_id else None
            after = summary.covered_through if summary else 0
            where = (turn.guild_id == guild_id, turn.channel_id == channel_id, turn.id > after)
            query = select(turn).where(*where).order_by(turn.id.desc()).limit(limit)
            rows = (await session.scalars(query)).all()
            count = len(rows)
            if count == limit:  # there may be more than were read
                count = int(await session.scalar(select(func.count()).where(*where)) or 0)
        return ChannelMemory(summary, [_turn(row) for row in reversed(rows)], count)

    @storage_call
    async def turns_between(
        self, guild_id: int, channel_id: int, after: int, through: int, limit: int
    ) -> tuple[list[Turn], int]:
        """The newest ``limit`` turns with ``after < id <= through`` (oldest first), and how
        many turns that range holds in all."""
        turn = ConversationTurnRow
        where = (
            turn.guild_id == guild_id,
            turn.channel_id == channel_id,
            turn.id > after,
            turn.id <= through,
        )
        async with self._sessions() as session:
            query = select(turn).where(*where).order_by(turn.id.desc()).limit(limit)
            rows = (await session.scalars(query)).all()
            count = int(await session.scalar(select(func.count()).where(*where)) or 0)
        return [_turn(row) for row in reversed(rows)], count

    @storage_call
    async def summary(self, guild_id: int, channel_id: int) -> ConversationSummary | None:
        """The channel's rolling summary, if it has one."""
        async with self._sessions() as session:
            row = await session.get(ConversationSummaryRow, channel_id)
        return _summary(row) if row is not None and row.guild_id == guild_id else None

    @storage_call
    async def save_summary(
        self, summary: ConversationSummary, *, replaces: int | None, folded_range_turns: int
    ) -> bool:
        """Store a refreshed summary unless what it was made from changed meanwhile.

        ``replaces`` is the ``covered_through`` of the summary it was built on (None: none),
        ``folded_range_turns`` how many turns the range after it held when they were read.
        False (nothing stored) when another refresh, a reset or a deletion came in between.
        """
        turn, table = ConversationTurnRow, ConversationSummaryRow
        async with self._sessions() as session, session.begin():
            # Write first, read second (see GuildSettingsStore.update): this no-op update takes
            # the write lock, so a reset or deletion cannot slip in between the checks below
            # and the write.
            await session.execute(
                update(table)
                .where(table.channel_id == summary.channel_id)
                .values(covered_through=table.covered_through)
            )
            row = await session.get(table, summary.channel_id, with_for_update=True)
            if (row.covered_through if row is not None else None) != replaces:
                return False
            still_there = await session.scalar(
                select(func.count()).where(
                    turn.guild_id == summary.guild_id,
                    turn.channel_id == summary.channel_id,
                    turn.id > (replaces or 0),
                    turn.id <= summary.covered_through,
                )
            )
            if still_there != folded_range_turns:
                return False
            if row is None:
                row = table(channel_id=summary.channel_id)
                session.add(row)
            row.guild_id = summary.guild_id
            row.content = summary.content
            row.covered_through = summary.covered_through
            row.turns_folded = summary.turns_folded
            row.updated_at = utcnow()
        return True

    @storage_call
    async def channels(self, guild_id: int, limit: int = 100) -> list[RememberedChannel]:
        """A guild's channels with remembered turns, most recently active first."""
        row = ConversationTurnRow
        query = (
            select(row.channel_id, func.count(), func.max(row.created_at))
            .where(row.guild_id == guild_id)
            .group_by(row.channel_id)
            .order_by(func.max(row.id).desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return [RememberedChannel(channel, count, _as_utc(last)) for channel, count, last in rows]

    @storage_call
    async def guild_ids(self) -> set[int]:
        """Every guild with remembered turns."""
        async with self._sessions() as session:
            query = select(ConversationTurnRow.guild_id).distinct()
            return set((await session.scalars(query)).all())

    @storage_call
    async def delete_channel_turn(self, guild_id: int, channel_id: int, turn_id: int) -> int:
        """Delete one turn of one channel; returns how many (0: not that channel's)."""
        return await self._delete(
            ConversationTurnRow.id == turn_id,
            ConversationTurnRow.guild_id == guild_id,
            ConversationTurnRow.channel_id == channel_id,
        )

    @storage_call
    async def clear_channel(self, guild_id: int, channel_id: int) -> int:
        """Delete a channel's history and summary; returns how many turns went."""
        return await self._delete(
            ConversationTurnRow.guild_id == guild_id,
            ConversationTurnRow.channel_id == channel_id,
            whole_channel=(guild_id, channel_id),
        )

    @storage_call
    async def forget_author(self, guild_id: int, author_id: int) -> int:
        """Delete every turn one member wrote in a guild; returns how many."""
        return await self._delete(
            ConversationTurnRow.guild_id == guild_id,
            ConversationTurnRow.author_id == author_id,
            ConversationTurnRow.role == Role.USER.value,
        )

    @storage_call
    async def delete_messages(self, guild_id: int, message_ids: Collection[int]) -> int:
        """Delete the turns that came from these Discord messages; returns how many."""
        if not message_ids:
            return 0
        return await self._delete(
            ConversationTurnRow.guild_id == guild_id,
            ConversationTurnRow.message_id.in_(list(message_ids)),
        )

    @storage_call
    async def delete_turn(self, turn_id: int) -> int:
        """Delete one turn by its id; returns how many (0 or 1)."""
        return await self._delete(ConversationTurnRow.id == turn_id)

    @storage_call
    async def prune_older_than(self, cutoff: datetime) -> int:
        """Delete turns created before ``cutoff``; returns how many."""
        return await self._delete(ConversationTurnRow.created_at < cutoff)

    async def _delete(self, *conditions: Any, whole_channel: tuple[int, int] | None = None) -> int:
        turn, summary = ConversationTurnRow, ConversationSummaryRow
        # The summaries made from any of the turns about to go (same transaction).
        covering: Any = exists().where(
            turn.guild_id == summary.guild_id,
            turn.channel_id == summary.channel_id,
            turn.id <= summary.covered_through,
            *conditions,
        )
        if whole_channel is not None:
            guild_id, channel_id = whole_channel
            covering = (summary.guild_id == guild_id) & (summary.channel_id == channel_id)
        async with self._sessions() as session, session.begin():
            await session.execute(delete(summary).where(covering))
            result = await session.execute(delete(turn).where(*conditions))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _guild_settings(row: GuildSettingsRow) -> GuildSettings:
    return GuildSettings(
        guild_id=row.guild_id,
        moderation_enabled=row.moderation_enabled,
        threshold=row.threshold,
        action=ModerationAction(row.action),
        timeout_minutes=row.timeout_minutes,
        log_channel_id=row.log_channel_id,
        dry_run=row.dry_run,
        use_emotions=row.use_emotions,
        exempt_role_ids=frozenset(row.exempt_role_ids or ()),
        exempt_channel_ids=frozenset(row.exempt_channel_ids or ()),
        signals=frozenset(row.signals) if row.signals is not None else frozenset({"sentiment"}),
        label_thresholds=dict(row.label_thresholds or {}),
        temperature_level=row.temperature_level,
        slowmode_minutes=row.slowmode_minutes,
    )


def _column_value(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, ModerationAction):
        return value.value
    if isinstance(value, Mapping):
        return dict(value)
    return value


class GuildSettingsStore:
    """Per-guild settings (moderation)."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions
        self._cache: SettingsCache[int, GuildSettings] = SettingsCache()

    @storage_call
    async def get(self, guild_id: int) -> GuildSettings:
        """The guild's settings, defaults when it never changed any."""
        return await self._cache.get(guild_id, lambda: self._load(guild_id))

    @storage_call
    async def guild_ids(self) -> set[int]:
        """Every guild that ever changed a setting."""
        async with self._sessions() as session:
            return set((await session.scalars(select(GuildSettingsRow.guild_id))).all())

    def forget_guild(self, guild_id: int) -> None:
        """Drop the guild's cached settings (the bot left it; the row stays)."""
        self._cache.forget(lambda key: key == guild_id)

    async def _load(self, guild_id: int) -> GuildSettings:
        async with self._sessions() as session:
            row = await session.get(GuildSettingsRow, guild_id)
        return _guild_settings(row) if row else GuildSettings(guild_id=guild_id)

    @storage_call
    async def update(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some fields (named as on GuildSettings) and return the result."""
        for name in changes:
            if name not in _GUILD_FIELDS or name == "guild_id":
                raise ValueError(f"unknown guild setting {name!r}")
        defaults = GuildSettings(guild_id=guild_id)
        values = {name: _column_value(getattr(defaults, name)) for name in _GUILD_FIELDS}
        async with self._sessions() as session, session.begin():
            # Write first, read second: the insert takes the write lock before anything is
            # read, so concurrent first-time updates queue up instead of colliding.
            await insert_if_missing(session, GuildSettingsRow, {**values, "updated_at": utcnow()})
            row = await session.get(GuildSettingsRow, guild_id, with_for_update=True)
            assert row is not None
            for name, value in changes.items():
                setattr(row, name, _column_value(value))
            row.updated_at = utcnow()
        return self._cache.put(guild_id, _guild_settings(row))


_GUILD_FIELDS = frozenset(GuildSettings.__dataclass_fields__)


def _channel_overrides(row: ChannelSettingsRow) -> ChannelOverrides:
    return ChannelOverrides(
        channel_id=row.channel_id,
        guild_id=row.guild_id,
        conversation_enabled=row.conversation_enabled,
        persona=row.persona,
    )


class ChannelSettingsStore:
    """Per-channel settings (conversation mode, persona); threads inherit their parent's."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions
        self._cache: SettingsCache[tuple[int, int], ChannelOverrides] = SettingsCache()

    @storage_call
    async def get(self, guild_id: int, channel_id: int) -> ChannelSettings:
        """The channel's settings on their own (no parent), defaults when never changed."""
        return effective_settings(await self.overrides(guild_id, channel_id), None)

    @storage_call
    async def resolve(
        self, guild_id: int, channel_id: int, parent_id: int | None = None
    ) -> ChannelSettings:
        """The settings in force in a channel, or in a thread or forum post of ``parent_id``:
        what the thread set itself, else what its parent channel set, else the defaults."""
        own = await self.overrides(guild_id, channel_id)
        if parent_id is None or parent_id == channel_id:
            return effective_settings(own, None)
        return effective_settings(own, await self.overrides(guild_id, parent_id))

    @storage_call
    async def overrides(self, guild_id: int, channel_id: int) -> ChannelOverrides:
        """What the channel set itself (None where it set nothing)."""
        return await self._cache.get(
            (guild_id, channel_id), lambda: self._load(guild_id, channel_id)
        )

    def forget_guild(self, guild_id: int) -> None:
        """Drop the cached settings of the guild's channels (the bot left it; rows stay)."""
        self._cache.forget(lambda key: key[0] == guild_id)

    async def _load(self, guild_id: int, channel_id: int) -> ChannelOverrides:
        async with self._sessions() as session:
            row = await session.get(ChannelSettingsRow, channel_id)
        if row is None or row.guild_id != guild_id:
            return ChannelOverrides(channel_id=channel_id, guild_id=guild_id)
        return _channel_overrides(row)

    @storage_call
    async def update(
        self,
        guild_id: int,
        channel_id: int,
        *,
        conversation_enabled: bool | None = None,
        persona: str | None = None,
        clear_persona: bool = False,
        clear_mode: bool = False,
    ) -> ChannelSettings:
        """Change conversation mode and/or persona (``clear_*``: unset them, so that a thread
        follows its parent again) and return the channel's own settings."""
        async with self._sessions() as session, session.begin():
            # Write first, read second (see GuildSettingsStore.update).
            await insert_if_missing(
                session,
                ChannelSettingsRow,
                {
                    "channel_id": channel_id,
                    "guild_id": guild_id,
                    "conversation_enabled": None,
                    "persona": None,
                    "updated_at": utcnow(),
                },
            )
            row = await session.get(ChannelSettingsRow, channel_id, with_for_update=True)
            assert row is not None
            if conversation_enabled is not None or clear_mode:
                row.conversation_enabled = conversation_enabled
            if persona is not None or clear_persona:
                row.persona = persona
            row.updated_at = utcnow()
        own = self._cache.put((guild_id, channel_id), _channel_overrides(row))
        return effective_settings(own, None)

    @storage_call
    async def conversation_channels(self) -> set[int]:
        """Ids of every channel with conversation mode on."""
        query = select(ChannelSettingsRow.channel_id).where(
            ChannelSettingsRow.conversation_enabled.is_(True)
        )
        async with self._sessions() as session:
            return set((await session.scalars(query)).all())


def _moderation_event(row: ModerationEventRow) -> ModerationEvent:
    return ModerationEvent(
        id=row.id,
        guild_id=row.guild_id,
        channel_id=row.channel_id,
        message_id=row.message_id,
        author_id=row.author_id,
        label=row.label,
        score=row.score,
        action=ModerationAction(row.action),
        dry_run=row.dry_run,
        action_succeeded=row.action_succeeded,
        decision=row.decision,
        decided_by=row.decided_by,
        created_at=_as_utc(row.created_at),
        scores=dict(row.scores or {}),
    )


class ModerationEventStore:
    """What the moderation checks flagged and what was done about it."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @storage_call
    async def record(self, event: NewModerationEvent) -> ModerationEvent:
        """Store a flagged message."""
        row = ModerationEventRow(
            guild_id=event.guild_id,
            channel_id=event.channel_id,
            message_id=event.message_id,
            author_id=event.author_id,
            label=event.label,
            score=event.score,
            action=event.action.value,
            dry_run=event.dry_run,
            action_succeeded=event.action_succeeded,
            scores=dict(event.scores),
            created_at=utcnow(),
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        return _moderation_event(row)

    @storage_call
    async def set_outcome(self, event_id: int, succeeded: bool) -> None:
        """Whether the configured action worked (stored after the event itself)."""
        async with self._sessions() as session, session.begin():
            row = await session.get(ModerationEventRow, event_id)
            if row is not None:
                row.action_succeeded = succeeded

    @storage_call
    async def get(self, event_id: int) -> ModerationEvent | None:
        async with self._sessions() as session:
            row = await session.get(ModerationEventRow, event_id)
        return _moderation_event(row) if row else None

    @storage_call
    async def decide(
        self, event_id: int, decision: str, moderator_id: int
    ) -> ModerationEvent | None:
        """Store a moderator's decision unless the event has one; the event as it is now."""
        await self.decide_once(event_id, decision, moderator_id)
        return await self.get(event_id)

    @storage_call
    async def decide_once(self, event_id: int, decision: str, moderator_id: int) -> bool:
        """Store a moderator's decision unless the event has one; False if it had (or is gone).

        One conditional UPDATE, so of two moderators deciding at once exactly one wins.
        """
        query = (
            update(ModerationEventRow)
            .where(ModerationEventRow.id == event_id, ModerationEventRow.decision.is_(None))
            .values(decision=decision, decided_by=moderator_id)
        )
        async with self._sessions() as session, session.begin():
            result = await session.execute(query)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    @storage_call
    async def since(self, guild_id: int, cutoff: datetime) -> list[ModerationEvent]:
        """A guild's events created at or after ``cutoff``, oldest first."""
        query = (
            select(ModerationEventRow)
            .where(ModerationEventRow.guild_id == guild_id, ModerationEventRow.created_at >= cutoff)
            .order_by(ModerationEventRow.id)
        )
        async with self._sessions() as session:
            return [_moderation_event(row) for row in (await session.scalars(query)).all()]

    @storage_call
    async def search(self, wanted: ModerationEventFilter) -> list[ModerationEvent]:
        """A guild's events that match the filter, newest first, at most ``wanted.limit``."""
        row = ModerationEventRow
        conditions = [row.guild_id == wanted.guild_id, row.created_at >= wanted.since]
        if wanted.label is not None:
            conditions.append(row.label == wanted.label)
        if wanted.decision == UNDECIDED:
            conditions.append(row.decision.is_(None))
        elif wanted.decision is not None:
            conditions.append(row.decision == wanted.decision)
        if wanted.channel_id is not None:
            conditions.append(row.channel_id == wanted.channel_id)
        query = select(row).where(*conditions).order_by(row.id.desc()).limit(wanted.limit)
        async with self._sessions() as session:
            return [_moderation_event(found) for found in (await session.scalars(query)).all()]

    @storage_call
    async def guild_ids(self) -> set[int]:
        """Every guild with recorded events."""
        async with self._sessions() as session:
            query = select(ModerationEventRow.guild_id).distinct()
            return set((await session.scalars(query)).all())

    @storage_call
    async def counts(self, guild_id: int, cutoff: datetime, top: int = 5) -> ModerationCounts:
        """A guild's events created at or after ``cutoff``, counted in SQL (never loaded).

        Ties are in order of first appearance, as the events were flagged.
        """
        row = ModerationEventRow
        number = func.count()
        where = (row.guild_id == guild_id, row.created_at >= cutoff)

        def grouped(*columns: Any) -> Any:
            # Most first; ties by their first event, so equal counts keep the order they came.
            return (
                select(*columns, number)
                .where(*where)
                .group_by(*columns)
                .order_by(number.desc(), func.min(row.id))
            )

        day = UtcDay(row.created_at)
        async with self._sessions() as session, session.begin():
            per_day = (await session.execute(select(day, number).where(*where).group_by(day))).all()
            actions = (await session.execute(grouped(row.action, row.dry_run))).all()
            labels = (await session.execute(grouped(row.label))).all()
            channels = (await session.execute(grouped(row.channel_id).limit(top))).all()
            decisions = (await session.execute(grouped(row.decision))).all()
        return ModerationCounts(
            per_day={day: count for day, count in per_day},
            by_action=[(ModerationAction(a), bool(dry), n) for a, dry, n in actions],
            by_label=[(label, n) for label, n in labels],
            top_channels=[(channel, n) for channel, n in channels],
            by_decision={decision: n for decision, n in decisions},
        )

    @storage_call
    async def prune_older_than(self, cutoff: datetime) -> int:
        """Delete events created before ``cutoff``; returns how many."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(ModerationEventRow).where(ModerationEventRow.created_at < cutoff)
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
