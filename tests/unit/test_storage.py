from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.storage.engine import SessionFactory
from bot.storage.records import ModerationAction, NewModerationEvent, NewTurn, Role
from bot.storage.repositories import (
    ChannelSettingsStore,
    ConversationStore,
    GuildSettingsStore,
    ModerationEventStore,
    _SettingsCache,
)

pytestmark = pytest.mark.both_backends

GUILD, OTHER_GUILD = 1001, 2002
CHANNEL, OTHER_CHANNEL = 11, 12
ALICE, BOB = 501, 502


def turn(
    content: str,
    *,
    guild: int = GUILD,
    channel: int = CHANNEL,
    author: int = ALICE,
    role: Role = Role.USER,
) -> NewTurn:
    return NewTurn(guild, channel, author, f"user{author}", role, content, len(content.split()))


async def test_turns_come_back_oldest_first_within_the_window(sessions: SessionFactory) -> None:
    store = ConversationStore(sessions)
    for index in range(10):
        await store.add_turn(turn(f"message {index}"))

    window = await store.recent_turns(GUILD, CHANNEL, limit=4)

    assert [t.content for t in window] == ["message 6", "message 7", "message 8", "message 9"]
    assert all(t.created_at.tzinfo is not None for t in window)
    assert window[0].role is Role.USER and window[0].author_name == "user501"


async def test_history_never_crosses_channels_or_guilds(sessions: SessionFactory) -> None:
    store = ConversationStore(sessions)
    await store.add_turn(turn("here"))
    await store.add_turn(turn("other channel", channel=OTHER_CHANNEL))
    # Same channel id under another guild must still be invisible.
    await store.add_turn(turn("other guild", guild=OTHER_GUILD))

    assert [t.content for t in await store.recent_turns(GUILD, CHANNEL, 50)] == ["here"]
    assert [t.content for t in await store.recent_turns(OTHER_GUILD, CHANNEL, 50)] == [
        "other guild"
    ]
    assert [t.content for t in await store.recent_turns(GUILD, OTHER_CHANNEL, 50)] == [
        "other channel"
    ]


async def test_clear_channel_removes_only_that_channel(sessions: SessionFactory) -> None:
    store = ConversationStore(sessions)
    await store.add_turn(turn("a"))
    await store.add_turn(turn("b", role=Role.ASSISTANT))
    await store.add_turn(turn("keep", channel=OTHER_CHANNEL))

    assert await store.clear_channel(GUILD, CHANNEL) == 2
    assert await store.recent_turns(GUILD, CHANNEL, 10) == []
    assert len(await store.recent_turns(GUILD, OTHER_CHANNEL, 10)) == 1


async def test_forget_author_deletes_one_members_turns_in_one_guild(
    sessions: SessionFactory,
) -> None:
    store = ConversationStore(sessions)
    await store.add_turn(turn("alice 1"))
    await store.add_turn(turn("bob 1", author=BOB))
    await store.add_turn(turn("alice 2", channel=OTHER_CHANNEL))
    await store.add_turn(turn("alice elsewhere", guild=OTHER_GUILD))

    assert await store.forget_author(GUILD, ALICE) == 2

    assert [t.content for t in await store.recent_turns(GUILD, CHANNEL, 10)] == ["bob 1"]
    assert await store.recent_turns(GUILD, OTHER_CHANNEL, 10) == []
    assert [t.content for t in await store.recent_turns(OTHER_GUILD, CHANNEL, 10)] == [
        "alice elsewhere"
    ]


async def test_prune_removes_turns_older_than_the_cutoff(sessions: SessionFactory) -> None:
    store = ConversationStore(sessions)
    await store.add_turn(turn("old"))
    cutoff = datetime.now(UTC) + timedelta(seconds=1)

    assert await store.prune_older_than(cutoff) == 1
    assert await store.prune_older_than(cutoff) == 0


async def test_guild_settings_default_then_update(sessions: SessionFactory) -> None:
    store = GuildSettingsStore(sessions)
    assert (await store.get(GUILD)).moderation_enabled is False

    updated = await store.update(
        GUILD,
        moderation_enabled=True,
        action=ModerationAction.TIMEOUT,
        exempt_role_ids=frozenset({7, 3}),
    )
    again = await store.get(GUILD)

    assert updated == again
    assert await GuildSettingsStore(sessions).get(GUILD) == updated  # as stored, not cached
    assert again.action is ModerationAction.TIMEOUT and again.exempt_role_ids == {3, 7}
    assert (await store.get(OTHER_GUILD)).moderation_enabled is False
    with pytest.raises(ValueError, match="unknown guild setting"):
        await store.update(GUILD, no_such_field=1)


async def test_channel_settings_persona_and_mode(sessions: SessionFactory) -> None:
    store = ChannelSettingsStore(sessions)
    await store.update(GUILD, CHANNEL, conversation_enabled=True)
    await store.update(GUILD, CHANNEL, persona="a pirate")

    settings = await store.get(GUILD, CHANNEL)
    assert settings.conversation_enabled and settings.persona == "a pirate"
    assert await ChannelSettingsStore(sessions).get(GUILD, CHANNEL) == settings
    assert await store.conversation_channels() == {CHANNEL}
    # A channel id looked up under the wrong guild reveals nothing.
    assert (await store.get(OTHER_GUILD, CHANNEL)).persona is None
    cleared = await store.update(GUILD, CHANNEL, clear_persona=True)
    assert cleared.persona is None and cleared.conversation_enabled


async def test_moderation_event_recorded_and_decided(sessions: SessionFactory) -> None:
    store = ModerationEventStore(sessions)
    event = await store.record(
        NewModerationEvent(GUILD, CHANNEL, 99, BOB, "NEGATIVE", 0.97, ModerationAction.DELETE)
    )
    decided = await store.decide(event.id, "dismissed", ALICE)

    assert decided is not None and decided.decision == "dismissed" and decided.decided_by == ALICE
    since = await store.since(GUILD, datetime.now(UTC) - timedelta(minutes=1))
    assert [e.id for e in since] == [event.id]
    assert await store.decide(12345, "dismissed", ALICE) is None


async def test_a_read_overlapping_a_write_does_not_replace_it() -> None:
    cache: _SettingsCache[int, str] = _SettingsCache()
    release = asyncio.Event()

    async def slow_old_row() -> str:
        await release.wait()
        return "old"

    reading = asyncio.create_task(cache.get(1, slow_old_row))
    await asyncio.sleep(0)
    cache.put(1, "new")  # a write commits while the read is still under way
    release.set()

    assert await reading == "old"  # what that read saw
    assert await cache.get(1, slow_old_row) == "new"  # but the write is what stays
