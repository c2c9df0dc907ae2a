"""Label scores of checked messages and moderators' reviews: what thresholds learn from."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from bot.storage.engine import SessionFactory
from bot.storage.guard import storage_call
from bot.storage.models import CheckedScoresRow, ModerationEventRow, utcnow

log = logging.getLogger(__name__)

# At most this many rows are read for one review or replay (the newest).
READ_LIMIT = 200_000


@dataclass(frozen=True, slots=True)
class ReviewedFlag:
    """A flag a moderator decided on: its label and score, the decision's text, every score."""

    label: str
    score: float
    decision: str
    scores: Mapping[str, float] = field(default_factory=dict)


class ModerationHistory:
    """Scores of every checked message (kept for a short window) and reviewed flags."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def record_scores(
        self, guild_id: int, channel_id: int, message_id: int, scores: Mapping[str, float]
    ) -> bool:
        """Keep a checked message's label scores (its ids and numbers, not its text).

        Best effort: False (and a warning without values) when the database refused; the
        check goes on either way, so this is no error of the check's.
        """
        row = CheckedScoresRow(
            guild_id=guild_id,
            channel_id=channel_id,
            message_id=message_id,
            scores={label: round(float(score), 4) for label, score in scores.items()},
            created_at=utcnow(),
        )
        try:
            async with self._sessions() as session, session.begin():
                session.add(row)
        except SQLAlchemyError as error:
            log.warning("scores of a checked message not kept: %s", type(error).__name__)
            return False
        return True

    @storage_call
    async def scores_since(self, guild_id: int, cutoff: datetime) -> list[dict[str, float]]:
        """The label scores of the guild's messages checked at or after ``cutoff`` (a message
        checked again, after an edit or a retry, counts once, with its latest scores)."""
        query = (
            select(CheckedScoresRow.message_id, CheckedScoresRow.scores)
            .where(CheckedScoresRow.guild_id == guild_id, CheckedScoresRow.created_at >= cutoff)
            .order_by(CheckedScoresRow.id.desc())
            .limit(READ_LIMIT)
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        latest = {message_id: scores for message_id, scores in reversed(rows)}
        return [dict(scores) for scores in latest.values()]

    @storage_call
    async def reviewed_since(self, guild_id: int, cutoff: datetime) -> list[ReviewedFlag]:
        """The guild's flags decided by a moderator, created at or after ``cutoff``."""
        row = ModerationEventRow
        query = (
            select(row.label, row.score, row.decision, row.scores)
            .where(row.guild_id == guild_id, row.created_at >= cutoff, row.decision.is_not(None))
            .order_by(row.id.desc())
            .limit(READ_LIMIT)
        )
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return [
            ReviewedFlag(label, score, decision or "", dict(scores or {}))
            for label, score, decision, scores in rows
        ]

    @storage_call
    async def prune_older_than(self, cutoff: datetime) -> int:
        """Delete scores kept from before ``cutoff``; returns how many."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(CheckedScoresRow).where(CheckedScoresRow.created_at < cutoff)
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
