"""Plain dataclasses that leave the storage layer (never ORM objects)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class ModerationAction(StrEnum):
    LOG = "log"
    REACT = "react"
    DELETE = "delete"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class NewTurn:
    guild_id: int
    channel_id: int
    author_id: int
    author_name: str
    role: Role
    content: str
    token_count: int = 0
    message_id: int | None = None  # the Discord message it came from, when there is one


@dataclass(frozen=True, slots=True)
class Turn:
    id: int
    guild_id: int
    channel_id: int
    author_id: int
    author_name: str
    role: Role
    content: str
    token_count: int
    created_at: datetime
    message_id: int | None = None


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """A channel's rolling summary of the turns up to ``covered_through`` (a turn id)."""

    guild_id: int
    channel_id: int
    content: str
    covered_through: int
    turns_folded: int
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChannelMemory:
    """What a channel's next prompt is made of: the summary, then the turns after it."""

    summary: ConversationSummary | None
    recent: list[Turn]  # the newest turns after the summary, oldest first
    unsummarized: int  # how many turns come after the summary (``recent`` may hold fewer)


@dataclass(frozen=True, slots=True)
class GuildSettings:
    guild_id: int
    moderation_enabled: bool = False
    threshold: float = 0.9
    action: ModerationAction = ModerationAction.LOG
    timeout_minutes: int = 10
    log_channel_id: int | None = None
    dry_run: bool = False
    use_emotions: bool = False
    exempt_role_ids: frozenset[int] = field(default_factory=frozenset)
    exempt_channel_ids: frozenset[int] = field(default_factory=frozenset)
    # Which signals flag a message (sentiment, emotions, toxicity); emotions also on while
    # use_emotions is (its older switch).
    signals: frozenset[str] = frozenset({"sentiment"})
    # Per-label thresholds; a label without one uses ``threshold``.
    label_thresholds: Mapping[str, float] = field(default_factory=dict)
    # The flagged share of a channel's recent messages that alerts moderators (0: off), and
    # how long the alert's slowmode button slows the channel down.
    temperature_level: float = 0.0
    slowmode_minutes: int = 10


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """The settings in force in a channel or thread (its own, else its parent's)."""

    channel_id: int
    guild_id: int
    conversation_enabled: bool = False
    persona: str | None = None
    # Which of them come from the thread's parent channel rather than the thread itself.
    mode_inherited: bool = False
    persona_inherited: bool = False


@dataclass(frozen=True, slots=True)
class ChannelOverrides:
    """What one channel or thread set itself; None: not set here (a thread follows its parent)."""

    channel_id: int
    guild_id: int
    conversation_enabled: bool | None = None
    persona: str | None = None


def effective_settings(own: ChannelOverrides, parent: ChannelOverrides | None) -> ChannelSettings:
    """A channel's settings in force: each one it set itself, else its parent's, else the
    default (threads and forum posts inherit from their channel; a channel has no parent)."""
    mode_inherited = own.conversation_enabled is None and parent is not None
    persona_inherited = own.persona is None and parent is not None
    mode = parent.conversation_enabled if mode_inherited and parent else own.conversation_enabled
    persona = parent.persona if persona_inherited and parent else own.persona
    return ChannelSettings(
        channel_id=own.channel_id,
        guild_id=own.guild_id,
        conversation_enabled=bool(mode),
        persona=persona,
        mode_inherited=mode_inherited and mode is not None,
        persona_inherited=persona_inherited and persona is not None,
    )


@dataclass(frozen=True, slots=True)
class NewModerationEvent:
    guild_id: int
    channel_id: int
    message_id: int
    author_id: int
    label: str
    score: float
    action: ModerationAction
    dry_run: bool = False
    action_succeeded: bool = True
    scores: Mapping[str, float] = field(default_factory=dict)  # every label checked


@dataclass(frozen=True, slots=True)
class ModerationEvent:
    id: int
    guild_id: int
    channel_id: int
    message_id: int
    author_id: int
    label: str
    score: float
    action: ModerationAction
    dry_run: bool
    action_succeeded: bool
    decision: str | None
    decided_by: int | None
    created_at: datetime
    scores: Mapping[str, float] = field(default_factory=dict)  # every label checked


@dataclass(frozen=True, slots=True)
class ModerationCounts:
    """A guild's moderation events since a moment, counted by the database (no rows)."""

    per_day: dict[date, int]  # UTC days that had events
    by_action: list[tuple[ModerationAction, bool, int]]  # (action, dry run, count), most first
    by_label: list[tuple[str, int]]  # most first
    top_channels: list[tuple[int, int]]  # (channel id, count), most first
    by_decision: dict[str | None, int]  # None: not decided

    @property
    def total(self) -> int:
        return sum(self.per_day.values())


UNDECIDED = "undecided"  # the decision filter for events no moderator has decided on yet


@dataclass(frozen=True, slots=True)
class ModerationEventFilter:
    """Which of a guild's moderation events to list (None: any)."""

    guild_id: int
    since: datetime
    label: str | None = None
    decision: str | None = None  # a stored decision, or UNDECIDED
    channel_id: int | None = None
    limit: int = 200


@dataclass(frozen=True, slots=True)
class RememberedChannel:
    """A channel with remembered conversation turns."""

    channel_id: int
    turns: int
    last_at: datetime


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens used on one day: by one member, and by everyone in the guild."""

    member_tokens: int = 0
    guild_tokens: int = 0


@dataclass(frozen=True, slots=True)
class GuildBudget:
    """A guild's own daily limits (None: the bot's default; 0: no limit)."""

    guild_id: int
    member_daily_tokens: int | None = None
    guild_daily_tokens: int | None = None
