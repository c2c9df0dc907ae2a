from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import make_url

from bot.errors import StorageError
from bot.storage import migrate
from bot.storage.cache import SettingsCache
from bot.storage.engine import SessionFactory, create_engine, create_session_factory
from bot.storage.models import ConversationTurnRow
from bot.storage.records import ModerationAction, NewModerationEvent, NewTurn, Role
from bot.storage.repositories import (
    ChannelSettingsStore,
    ConversationStore,
    GuildSettingsStore,
    ModerationEventStore,
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
    await store.add_turn(turn("new"))
    async with sessions() as session, session.begin():
        await session.execute(
            update(ConversationTurnRow)
            .where(ConversationTurnRow.content == "old")
            .values(created_at=datetime.now(UTC) - timedelta(days=2))
        )
    cutoff = datetime.now(UTC) - timedelta(days=1)

    assert await store.prune_older_than(cutoff) == 1
    assert await store.prune_older_than(cutoff) == 0
    assert [t.content for t in await store.recent_turns(GUILD, CHANNEL, 10)] == ["new"]


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
    cache: SettingsCache[int, str] = SettingsCache()
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


def sqlite_path(database_url: str) -> Path:
    database = make_url(database_url).database
    assert database is not None
    return Path(database)


@pytest.fixture
async def two_processes(database_url: str) -> AsyncIterator[tuple[SessionFactory, SessionFactory]]:
    """Two engines on one migrated SQLite file, as two writers with their own connections."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    engines = [create_engine(database_url), create_engine(database_url)]
    yield create_session_factory(engines[0]), create_session_factory(engines[1])
    for engine in engines:
        await engine.dispose()


async def test_concurrent_first_time_guild_updates_never_collide(
    two_processes: tuple[SessionFactory, SessionFactory],
) -> None:
    stores = [GuildSettingsStore(sessions) for sessions in two_processes]

    results = await asyncio.gather(
        *(stores[i % 2].update(GUILD, timeout_minutes=i + 1) for i in range(24)),
        return_exceptions=True,
    )

    assert [r for r in results if isinstance(r, BaseException)] == []
    stored = await GuildSettingsStore(two_processes[0]).get(GUILD)
    assert stored.timeout_minutes in {i + 1 for i in range(24)}  # one of them, whole


async def test_concurrent_first_time_channel_updates_never_collide(
    two_processes: tuple[SessionFactory, SessionFactory],
) -> None:
    stores = [ChannelSettingsStore(sessions) for sessions in two_processes]

    results = await asyncio.gather(
        *(
            stores[i % 2].update(GUILD, CHANNEL, conversation_enabled=True)
            if i % 3
            else stores[i % 2].update(GUILD, CHANNEL, persona=f"persona {i}")
            for i in range(24)
        ),
        return_exceptions=True,
    )

    assert [r for r in results if isinstance(r, BaseException)] == []
    stored = await ChannelSettingsStore(two_processes[1]).get(GUILD, CHANNEL)
    assert stored.conversation_enabled and stored.persona is not None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # SQLite only
async def test_sqlite_commits_are_durable_in_wal_mode(sessions: SessionFactory) -> None:
    async with sessions() as session:
        journal = (await session.execute(text("PRAGMA journal_mode"))).scalar_one()
        synchronous = (await session.execute(text("PRAGMA synchronous"))).scalar_one()

    assert journal == "wal"
    assert synchronous == 2  # FULL: the WAL is synced at every commit


async def test_settings_cache_is_bounded_least_recently_used_first() -> None:
    cache: SettingsCache[int, str] = SettingsCache(maxsize=2)
    loads: list[int] = []

    async def load_of(key: int) -> str:
        loads.append(key)
        return f"v{key}"

    await cache.get(1, lambda: load_of(1))
    await cache.get(2, lambda: load_of(2))
    await cache.get(1, lambda: load_of(1))  # 1 is now the most recently used
    await cache.get(3, lambda: load_of(3))  # evicts 2

    assert len(cache) == 2
    await cache.get(1, lambda: load_of(1))
    await cache.get(2, lambda: load_of(2))
    assert loads == [1, 2, 3, 2]


async def test_forget_guild_drops_only_that_guilds_cached_settings(
    sessions: SessionFactory,
) -> None:
    guilds, channels = GuildSettingsStore(sessions), ChannelSettingsStore(sessions)
    await guilds.update(GUILD, threshold=0.5)
    await guilds.update(OTHER_GUILD, threshold=0.6)
    await channels.update(GUILD, CHANNEL, persona="old")
    await channels.update(OTHER_GUILD, OTHER_CHANNEL, persona="other")
    # Another writer changes the rows behind the caches' back.
    await GuildSettingsStore(sessions).update(GUILD, threshold=0.7)
    await GuildSettingsStore(sessions).update(OTHER_GUILD, threshold=0.8)
    await ChannelSettingsStore(sessions).update(GUILD, CHANNEL, persona="new")

    guilds.forget_guild(GUILD)
    channels.forget_guild(GUILD)

    assert (await guilds.get(GUILD)).threshold == 0.7  # read again from the database
    assert (await guilds.get(OTHER_GUILD)).threshold == 0.6  # still cached
    assert (await channels.get(GUILD, CHANNEL)).persona == "new"
    assert (await channels.get(OTHER_GUILD, OTHER_CHANNEL)).persona == "other"


async def test_turns_of_deleted_messages_are_deleted(sessions: SessionFactory) -> None:
    store = ConversationStore(sessions)
    question = await store.add_turn(
        NewTurn(GUILD, CHANNEL, ALICE, "alice", Role.USER, "secret", 1, message_id=9001)
    )
    await store.add_turn(NewTurn(GUILD, CHANNEL, 0, "bot", Role.ASSISTANT, "ok", 1, 9002))
    await store.add_turn(turn("from /chat"))  # no message id
    await store.add_turn(NewTurn(OTHER_GUILD, CHANNEL, ALICE, "a", Role.USER, "x", 1, 9003))

    assert question.message_id == 9001
    assert await store.delete_messages(GUILD, [9001, 9003, 1234]) == 1  # 9003: other guild
    assert await store.delete_messages(GUILD, []) == 0
    remaining = await store.recent_turns(GUILD, CHANNEL, 10)
    assert [(t.content, t.message_id) for t in remaining] == [("ok", 9002), ("from /chat", None)]
    assert await store.delete_messages(GUILD, {9002}) == 1


async def test_moderation_events_are_pruned_by_age(sessions: SessionFactory) -> None:
    store = ModerationEventStore(sessions)
    event = await store.record(
        NewModerationEvent(GUILD, CHANNEL, 99, BOB, "NEGATIVE", 0.97, ModerationAction.LOG)
    )

    assert await store.prune_older_than(event.created_at - timedelta(seconds=1)) == 0
    assert await store.prune_older_than(event.created_at + timedelta(seconds=1)) == 1
    assert await store.get(event.id) is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # SQLite only
async def test_a_failing_database_raises_storage_error_logged_once_with_its_id(
    sessions: SessionFactory, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = ConversationStore(sessions)
    await store.add_turn(turn("before"))
    with sqlite3.connect(sqlite_path(database_url)) as connection:
        connection.execute("DROP TABLE conversation_turns")

    with caplog.at_level(logging.ERROR, logger="bot.storage"), pytest.raises(StorageError) as error:
        await store.recent_turns(GUILD, CHANNEL, 10)

    assert error.value.error_id is not None
    assert f"error id `{error.value.error_id}`" in error.value.message
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.value.error_id in record.getMessage() and record.exc_info is not None
    assert "no such table" in str(record.exc_info[1])
    caplog.clear()
    with pytest.raises(StorageError):
        await store.add_turn(turn("what a member wrote"))
    assert "what a member wrote" not in caplog.text  # SQL parameters stay out of the log


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # SQLite only
async def test_every_moderation_event_method_raises_storage_error(
    sessions: SessionFactory, database_url: str
) -> None:
    store = ModerationEventStore(sessions)
    event = await store.record(
        NewModerationEvent(GUILD, CHANNEL, 99, BOB, "NEGATIVE", 0.97, ModerationAction.DELETE)
    )
    with sqlite3.connect(sqlite_path(database_url)) as connection:
        connection.execute("DROP TABLE moderation_events")

    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.decide_once(event.id, "deleted", ALICE),
        lambda: store.decide(event.id, "deleted", ALICE),
        lambda: store.set_outcome(event.id, True),
        lambda: store.get(event.id),
        lambda: store.since(GUILD, event.created_at),
        lambda: store.counts(GUILD, event.created_at),
        lambda: store.prune_older_than(event.created_at),
    ]
    for call in calls:
        with pytest.raises(StorageError):
            await call()


async def test_an_unopenable_database_file_raises_storage_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_bytes(b"this is not a SQLite file" * 100)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'not-a-db'}")
    try:
        with pytest.raises(StorageError):
            await GuildSettingsStore(create_session_factory(engine)).get(GUILD)
    finally:
        await engine.dispose()
