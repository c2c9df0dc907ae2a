"""The reads and deletes the web dashboard uses, in the storage and service layers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import InvalidInputError
from bot.inference.engine import EngineConfig, InferenceEngine
from bot.services.conversations import ConversationService
from bot.services.moderation import ModerationService
from bot.storage.engine import SessionFactory
from bot.storage.records import (
    UNDECIDED,
    ModerationAction,
    ModerationEventFilter,
    NewModerationEvent,
    NewTurn,
    Role,
)
from bot.storage.repositories import (
    ChannelSettingsStore,
    ConversationStore,
    GuildSettingsStore,
    ModerationEventStore,
)

pytestmark = pytest.mark.both_backends
GUILD, OTHER_GUILD = 10, 20


def _event(guild: int, channel: int, label: str) -> NewModerationEvent:
    return NewModerationEvent(guild, channel, 1, 2, label, 0.95, ModerationAction.LOG)


async def test_event_search_filters_and_orders_newest_first(sessions: SessionFactory) -> None:
    store = ModerationEventStore(sessions)
    first = await store.record(_event(GUILD, 1, "negative"))
    second = await store.record(_event(GUILD, 2, "anger"))
    third = await store.record(_event(GUILD, 2, "negative"))
    await store.record(_event(OTHER_GUILD, 1, "negative"))
    await store.decide_once(first.id, "dismissed", 9)
    since = datetime.now(UTC) - timedelta(days=1)

    async def ids(**wanted: object) -> list[int]:
        found = await store.search(ModerationEventFilter(GUILD, since, **wanted))  # type: ignore[arg-type]
        return [event.id for event in found]

    assert await ids() == [third.id, second.id, first.id]
    assert await ids(label="negative") == [third.id, first.id]
    assert await ids(decision=UNDECIDED) == [third.id, second.id]
    assert await ids(decision="dismissed") == [first.id]
    assert await ids(channel_id=2, label="anger") == [second.id]
    assert await ids(limit=1) == [third.id]
    later = ModerationEventFilter(GUILD, datetime.now(UTC) + timedelta(minutes=1))
    assert await store.search(later) == []
    assert await store.guild_ids() == {GUILD, OTHER_GUILD}


async def test_service_lists_events_and_refuses_bad_filters(sessions: SessionFactory) -> None:
    engine = InferenceEngine(EngineConfig(models={}))  # no model is used by these reads
    events = ModerationEventStore(sessions)
    service = ModerationService(engine, GuildSettingsStore(sessions), events)
    await events.record(_event(GUILD, 1, "negative"))
    await service.configure(OTHER_GUILD + 1, threshold=0.5)
    assert [e.label for e in await service.events(GUILD, 1)] == ["negative"]
    assert await service.guild_ids() == [GUILD, OTHER_GUILD + 1]
    with pytest.raises(InvalidInputError, match="Unknown decision"):
        await service.events(GUILD, 7, decision="deleted'; --")
    with pytest.raises(InvalidInputError, match="365 days"):
        await service.events(GUILD, 0)
    with pytest.raises(InvalidInputError, match="between 1 and 500"):
        await service.events(GUILD, 7, limit=10_000)


async def test_channel_memory_listing_and_scoped_turn_delete(sessions: SessionFactory) -> None:
    turns = ConversationStore(sessions)
    conversations = ConversationService(
        InferenceEngine(EngineConfig(models={})), turns, ChannelSettingsStore(sessions)
    )
    kept = await turns.add_turn(NewTurn(GUILD, 1, 5, "a", Role.USER, "one"))
    await turns.add_turn(NewTurn(GUILD, 2, 5, "a", Role.USER, "two"))
    await turns.add_turn(NewTurn(GUILD, 2, 5, "a", Role.USER, "three"))
    listed = await conversations.channels(GUILD)
    assert [(c.channel_id, c.turns) for c in listed] == [(2, 2), (1, 1)]
    assert await conversations.guild_ids() == {GUILD}
    # The turn belongs to channel 1: asking through channel 2 or another guild deletes nothing.
    assert not await conversations.delete_turn(GUILD, 2, kept.id)
    assert not await conversations.delete_turn(OTHER_GUILD, 1, kept.id)
    assert await conversations.delete_turn(GUILD, 1, kept.id)
    assert await conversations.history(GUILD, 1, 10) == []
