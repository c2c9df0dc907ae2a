"""Plain dataclasses that leave the storage layer (never ORM objects)."""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    channel_id: int
    guild_id: int
    conversation_enabled: bool = False
    persona: str | None = None


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
