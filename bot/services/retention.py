"""Deleting what is stored for longer than the configured retention periods."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.errors import StorageError
from bot.services.conversations import ConversationService
from bot.storage.repositories import ModerationEventStore
from bot.storage.scores import ModerationHistory

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pruned:
    turns: int
    moderation_events: int


def retention_cutoff(days: int, now: datetime | None = None) -> datetime | None:
    """The moment before which data is deleted; None when it is kept forever (``days`` 0)."""
    if days <= 0:
        return None
    return (now or datetime.now(UTC)) - timedelta(days=days)


class RetentionService:
    """Prunes conversation turns and moderation events, each by its own period."""

    def __init__(
        self,
        conversations: ConversationService,
        moderation_events: ModerationEventStore,
        *,
        conversation_days: int,
        moderation_days: int,
        scores: ModerationHistory | None = None,
        scores_days: int = 14,
    ) -> None:
        self._scores = scores
        self._scores_days = scores_days
        self._conversations = conversations
        self._moderation_events = moderation_events
        self._conversation_days = conversation_days
        self._moderation_days = moderation_days

    async def prune(self) -> Pruned:
        """Delete what is past its retention; one failing kind does not stop the other."""
        turns = events = 0
        try:
            turns = await self._conversations.prune(self._conversation_days)
        except StorageError:
            log.warning("retention: conversation turns not pruned this time")
        cutoff = retention_cutoff(self._moderation_days)
        if cutoff is not None:
            try:
                events = await self._moderation_events.prune_older_than(cutoff)
            except StorageError:
                log.warning("retention: moderation events not pruned this time")
        if events:
            log.info("retention: removed %d moderation events", events)
        await self._prune_scores()
        return Pruned(turns, events)

    async def _prune_scores(self) -> int:
        cutoff = retention_cutoff(self._scores_days)
        if self._scores is None or cutoff is None:
            return 0
        try:
            removed = await self._scores.prune_older_than(cutoff)
        except StorageError:
            log.warning("retention: checked messages' scores not pruned this time")
            return 0
        if removed:
            log.info("retention: removed the scores of %d checked messages", removed)
        return removed
