from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.cogs.moderation.texts import settings_text
from bot.errors import BusyError, InvalidInputError, StorageError
from bot.formatting import MESSAGE_LIMIT
from bot.inference.engine import InferenceEngine
from bot.services.moderation import (
    Alert,
    AlertGate,
    AlreadyDecidedError,
    CheckedMessage,
    Decision,
    ModerationService,
    is_retriable,
    render_chart,
)
from bot.storage.engine import SessionFactory, create_session_factory
from bot.storage.models import ModerationEventRow
from bot.storage.records import GuildSettings, ModerationAction
from bot.storage.repositories import GuildSettingsStore, ModerationEventStore
from tests.tiny_models import NEGATIVE, POSITIVE, SARCASTIC

GUILD = 1


def _service(engine: InferenceEngine, sessions: SessionFactory) -> ModerationService:
    return ModerationService(engine, GuildSettingsStore(sessions), ModerationEventStore(sessions))


def _message(
    text: str, message_id: int = 100, channel: int = 10, roles: frozenset[int] = frozenset()
) -> CheckedMessage:
    return CheckedMessage(GUILD, channel, message_id, 500, text, roles)


async def test_nothing_is_checked_until_enabled(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)

    _, verdict = await service.check(_message(NEGATIVE[0]))

    assert verdict is None
    assert engine.worker("sentiment").batches_run == 0


async def test_hostile_messages_pass_the_threshold_friendly_ones_do_not(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    await service.configure(GUILD, moderation_enabled=True, threshold=0.8)

    results = await asyncio.gather(
        *(service.check(_message(text, i)) for i, text in enumerate(NEGATIVE[:4] + POSITIVE[:4]))
    )

    verdicts = [verdict for _, verdict in results]
    assert all(v is not None and v.label == "negative" and v.score >= 0.8 for v in verdicts[:4])
    assert verdicts[4:] == [None] * 4
    assert engine.worker("sentiment").batches_run < 8  # checks that arrive together share batches


async def test_emotion_labels_count_on_their_own(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    sarcastic = _message(SARCASTIC[0])  # praise words, hostile meaning
    await service.configure(GUILD, moderation_enabled=True, threshold=0.8)
    _, sentiment_only = await service.check(sarcastic)
    await service.configure(GUILD, use_emotions=True)

    _, verdict = await service.check(sarcastic)

    assert sentiment_only is None  # the sentiment model alone lets it through
    assert engine.worker("emotion").batches_run == 1
    assert verdict is not None and verdict.label == "anger" and verdict.score >= 0.8


async def test_exempt_roles_and_channels_are_skipped(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    await service.configure(GUILD, moderation_enabled=True)
    await asyncio.gather(service.exempt(GUILD, role_id=7), service.exempt(GUILD, channel_id=11))

    assert (await service.check(_message(NEGATIVE[0], roles=frozenset({7}))))[1] is None
    assert (await service.check(_message(NEGATIVE[0], channel=11)))[1] is None
    in_thread = CheckedMessage(GUILD, 50, 101, 500, NEGATIVE[0], parent_channel_id=11)
    assert (await service.check(in_thread))[1] is None  # a thread of an exempt channel
    settings = await service.exempt(GUILD, role_id=7, remove=True)
    assert settings.exempt_role_ids == frozenset()
    assert settings.exempt_channel_ids == frozenset({11})


async def test_events_are_recorded_decided_and_counted(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    settings = await service.configure(GUILD, moderation_enabled=True, action="delete")
    _, verdict = await service.check(_message(NEGATIVE[1]))
    assert verdict is not None

    event = await service.record(verdict, settings)
    assert not event.action_succeeded  # stored before the action runs
    await service.action_done(event.id, True)
    decided = await service.decide(event.id, Decision.DISMISS, 900)
    stats = await service.stats(GUILD, 7)

    assert decided.action_succeeded and decided.decision == "dismissed"
    assert (stats.total, stats.by_action, stats.dismissed) == (1, {"delete": 1}, 1)
    assert stats.top_channels == [(10, 1)]
    assert [count for _, count in stats.per_day] == [0] * 6 + [1]
    assert render_chart(stats).startswith(b"\x89PNG")


async def test_settings_are_checked(engine: InferenceEngine, sessions: SessionFactory) -> None:
    service = _service(engine, sessions)
    with pytest.raises(InvalidInputError):
        await service.configure(GUILD, threshold=0)
    with pytest.raises(InvalidInputError):
        await service.stats(GUILD, 0)


def _alert(gate: AlertGate, guild: int, author: int) -> Alert:
    """Admit a flag and, when it is to be posted, post it."""
    decision = gate.admit(guild, author)
    if decision is Alert.POST:
        gate.posted(guild, author)
    return decision


def test_alerts_are_grouped_per_author_and_capped_per_guild() -> None:
    now = [0.0]
    gate = AlertGate(group_window_s=60, per_minute=3, clock=lambda: now[0])

    assert _alert(gate, GUILD, 1) is Alert.POST
    assert _alert(gate, GUILD, 1) is Alert.GROUP
    assert [_alert(gate, GUILD, author) for author in (2, 3, 4, 5)] == [
        Alert.POST,
        Alert.POST,
        Alert.CAP_NOTICE,
        Alert.SUPPRESS,
    ]
    assert _alert(gate, 2, 4) is Alert.POST  # other guilds have their own cap
    now[0] = 61.0
    assert _alert(gate, GUILD, 1) is Alert.POST  # a minute later, a new alert


def test_only_an_alert_that_went_out_is_grouped_onto_or_counted() -> None:
    gate = AlertGate(group_window_s=60, per_minute=2, clock=lambda: 0.0)

    assert gate.admit(GUILD, 1) is Alert.POST
    gate.withdraw(GUILD)  # posting it failed
    assert gate.admit(GUILD, 1) is Alert.POST  # not grouped onto nothing, nor counted
    gate.posted(GUILD, 1)
    assert gate.admit(GUILD, 1) is Alert.GROUP
    gate.alert_gone(GUILD, 1)  # a moderator deleted it
    assert gate.admit(GUILD, 1) is Alert.POST  # the second of two this minute
    assert _alert(gate, GUILD, 2) is Alert.CAP_NOTICE


def test_the_alert_gate_forgets_quiet_authors_and_left_guilds() -> None:
    now = [0.0]
    gate = AlertGate(group_window_s=60, per_minute=1000, clock=lambda: now[0], memory=100)

    assert all(_alert(gate, GUILD, author) is Alert.POST for author in range(500))
    _alert(gate, 2, 1)
    assert gate.tracked() <= 100 + 2  # bounded however many authors came

    now[0] = 61.0
    assert gate.tracked() == 0  # nothing older than a minute is kept
    assert _alert(gate, GUILD, 1) is Alert.POST
    _alert(gate, 2, 1)
    gate.forget_guild(GUILD)
    assert gate.tracked() == 2  # guild 2's author and guild 2
    assert _alert(gate, GUILD, 1) is Alert.POST  # a fresh start in the forgotten guild


async def test_concurrent_decisions_on_one_event_store_one(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    settings = await service.configure(GUILD, moderation_enabled=True)
    _, verdict = await service.check(_message(NEGATIVE[2]))
    assert verdict is not None
    event = await service.record(verdict, settings)

    outcomes = await asyncio.gather(
        *(service.decide(event.id, Decision.TIMEOUT, moderator) for moderator in (7, 8, 9)),
        return_exceptions=True,
    )

    decided = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, AlreadyDecidedError)]
    assert len(decided) == 1 and len(refused) == 2
    assert refused[0].event.decided_by == decided[0].decided_by
    stored = await service.event(event.id)
    assert stored is not None and stored.decided_by == decided[0].decided_by


@pytest.fixture
async def far_from_utc(sessions: SessionFactory, database_url: str) -> AsyncIterator[Any]:
    """An engine on the migrated database whose PostgreSQL sessions run 14 h ahead of UTC."""
    pg = make_url(database_url).get_backend_name() == "postgresql"
    args = {"server_settings": {"timezone": "Pacific/Kiritimati"}} if pg else {}
    engine = create_async_engine(database_url, connect_args=args)
    yield engine
    await engine.dispose()


def _known_events(now: datetime) -> list[ModerationEventRow]:
    """Events of every kind over nine days, some a few seconds either side of UTC midnight."""
    midnight = datetime.combine(now.date(), time(), UTC)
    moments = [midnight - timedelta(seconds=30), midnight + timedelta(seconds=30)]
    moments += [now - timedelta(days=day, hours=hour) for day in range(9) for hour in (1, 7)]
    actions = list(ModerationAction)
    return [
        ModerationEventRow(
            guild_id=GUILD if i % 11 else 2,  # another guild's events never count
            channel_id=10 + (i * 7) % 8,
            message_id=1000 + i,
            author_id=500 + i % 3,
            label=("negative", "anger", "disgust")[i % 3 if i % 5 else 0],
            score=0.95,
            action=actions[i % 4].value,
            dry_run=i % 6 == 0,
            action_succeeded=True,
            decision=("dismissed", None, "deleted")[i % 3] if i % 4 else None,
            created_at=moment,
        )
        for i, moment in enumerate(moments)
    ]


@pytest.mark.both_backends
async def test_stats_are_counted_by_the_database_per_utc_day(
    engine: InferenceEngine, sessions: SessionFactory, far_from_utc: Any
) -> None:
    now = datetime.now(UTC)
    rows = _known_events(now)
    async with sessions() as session, session.begin():
        session.add_all(rows)
    statements: list[str] = []
    event.listen(
        far_from_utc.sync_engine,
        "before_cursor_execute",
        lambda *args: statements.append(args[2]),
    )
    factory = create_session_factory(far_from_utc)
    service = ModerationService(engine, GuildSettingsStore(factory), ModerationEventStore(factory))

    stats = await service.stats(GUILD, 7)

    # What counting the events one by one in Python gives.
    start = now.date() - timedelta(days=6)
    kept = [r for r in rows if r.guild_id == GUILD and r.created_at.date() >= start]
    per_day = Counter(r.created_at.date() for r in kept)
    assert stats.total == len(kept) > 0
    assert stats.per_day == [
        (start + timedelta(days=i), per_day[start + timedelta(days=i)]) for i in range(7)
    ]
    assert per_day[now.date()] >= 1 and per_day[now.date() - timedelta(days=1)] >= 1
    actions = Counter(f"{r.action} (dry run)" if r.dry_run else r.action for r in kept)
    assert list(stats.by_action.items()) == actions.most_common()
    assert list(stats.by_label.items()) == Counter(r.label for r in kept).most_common()
    assert stats.top_channels == Counter(r.channel_id for r in kept).most_common(5)
    assert stats.dismissed == sum(1 for r in kept if r.decision == "dismissed") > 0
    # The database sent back counts, never the events themselves.
    reads = [s for s in statements if "moderation_events" in s]
    assert reads and all("count(" in s.lower() and "group by" in s.lower() for s in reads)


def test_database_and_model_hiccups_are_retried_bad_input_is_not() -> None:
    assert is_retriable(StorageError("abcd1234"))  # what repositories raise for any failure
    assert is_retriable(BusyError("sentiment", 1.0))
    assert not is_retriable(InvalidInputError("no"))
    assert not is_retriable(ValueError("bug"))


@given(
    roles=st.frozensets(st.integers(1, 2**63 - 1), max_size=300),
    channels=st.frozensets(st.integers(1, 2**63 - 1), max_size=300),
    lost=st.integers(0, 10**9),
    waiting=st.integers(0, 500),
)
def test_settings_and_what_follows_them_always_fit_in_one_message(
    roles: frozenset[int], channels: frozenset[int], lost: int, waiting: int
) -> None:
    extra = f"\nCould not be checked (counted since the bot started): {lost} - waiting {waiting}"
    settings = GuildSettings(
        guild_id=1, log_channel_id=2**63 - 1, exempt_role_ids=roles, exempt_channel_ids=channels
    )

    text = settings_text(settings, extra)

    assert len(text) <= MESSAGE_LIMIT and text.endswith(extra)
    assert ("Exempt roles: none" in text) == (not roles)
