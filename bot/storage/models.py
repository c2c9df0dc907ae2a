"""ORM tables. Only the storage package sees these; everything else gets dataclasses."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names make migrations reproducible on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class GuildSettingsRow(Base):
    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    moderation_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    threshold: Mapped[float] = mapped_column(Float, default=0.9)
    action: Mapped[str] = mapped_column(String(16), default="log")
    timeout_minutes: Mapped[int] = mapped_column(Integer, default=10)
    log_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    use_emotions: Mapped[bool] = mapped_column(Boolean, default=False)
    exempt_role_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    exempt_channel_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    signals: Mapped[list[str] | None] = mapped_column(JSON)  # NULL: sentiment only
    label_thresholds: Mapped[dict[str, float] | None] = mapped_column(JSON)
    temperature_level: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    slowmode_minutes: Mapped[int] = mapped_column(Integer, default=10, server_default="10")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ChannelSettingsRow(Base):
    __tablename__ = "channel_settings"

    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    # NULL: not set on this channel (a thread then follows its parent channel; a channel is off).
    conversation_enabled: Mapped[bool | None] = mapped_column(Boolean)
    persona: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConversationTurnRow(Base):
    __tablename__ = "conversation_turns"
    __table_args__ = (
        # "last N turns of a channel" walks this index backwards.
        Index("ix_conversation_turns_window", "guild_id", "channel_id", "id"),
        # /forget deletes one member's turns in a guild.
        Index("ix_conversation_turns_author", "guild_id", "author_id"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    author_id: Mapped[int] = mapped_column(BigInteger)
    author_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    # The Discord message the turn came from (a member's message or the bot's answer),
    # so that deleting that message deletes the turn; NULL for /chat questions.
    message_id: Mapped[int | None] = mapped_column(BigInteger, index=True)


class ConversationSummaryRow(Base):
    """A channel's rolling summary of the turns that no longer fit the chat model's window."""

    __tablename__ = "conversation_summaries"

    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    content: Mapped[str] = mapped_column(Text)
    # The newest turn folded in: the prompt holds the summary, then the turns after this id.
    covered_through: Mapped[int] = mapped_column(BigInteger)
    turns_folded: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModerationEventRow(Base):
    __tablename__ = "moderation_events"
    __table_args__ = (Index("ix_moderation_events_guild_time", "guild_id", "created_at"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
    author_id: Mapped[int] = mapped_column(BigInteger)
    label: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    action: Mapped[str] = mapped_column(String(16))
    action_succeeded: Mapped[bool] = mapped_column(Boolean, default=True)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    decision: Mapped[str | None] = mapped_column(String(32))
    decided_by: Mapped[int | None] = mapped_column(BigInteger)
    # Every label score of the check that flagged it (no message content).
    scores: Mapped[dict[str, float] | None] = mapped_column(JSON)
    # Indexed on its own for the hourly retention prune across every guild.
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


class CheckedScoresRow(Base):
    """The label scores of one checked message: ids and numbers only, never its text."""

    __tablename__ = "checked_scores"
    __table_args__ = (Index("ix_checked_scores_guild_time", "guild_id", "created_at"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
    scores: Mapped[dict[str, float]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


class TokenUsageRow(Base):
    """Tokens a member used in a guild on one UTC day (budgets)."""

    __tablename__ = "token_usage"

    # guild, day first: a guild's total for a day reads one range of the primary key.
    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class GuildBudgetRow(Base):
    """A guild's own daily token limits; NULL: the bot's default."""

    __tablename__ = "guild_budgets"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    member_daily_tokens: Mapped[int | None] = mapped_column(BigInteger)
    guild_daily_tokens: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
