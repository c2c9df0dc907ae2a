from __future__ import annotations

import asyncio

import pytest

from bot.errors import InvalidInputError
from bot.inference.engine import InferenceEngine
from bot.services.moderation import (
    Alert,
    AlertGate,
    AlreadyDecidedError,
    CheckedMessage,
    ModerationService,
    render_chart,
)
from bot.storage.engine import SessionFactory
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
    decided = await service.decide(event.id, "dismiss", 900)
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


def test_alerts_are_grouped_per_author_and_capped_per_guild() -> None:
    now = [0.0]
    gate = AlertGate(group_window_s=60, per_minute=3, clock=lambda: now[0])

    assert gate.admit(GUILD, 1) is Alert.POST
    assert gate.admit(GUILD, 1) is Alert.GROUP
    assert [gate.admit(GUILD, author) for author in (2, 3, 4, 5)] == [
        Alert.POST,
        Alert.POST,
        Alert.CAP_NOTICE,
        Alert.SUPPRESS,
    ]
    assert gate.admit(2, 4) is Alert.POST  # other guilds have their own cap
    now[0] = 61.0
    assert gate.admit(GUILD, 1) is Alert.POST  # a minute later, a new alert


def test_the_alert_gate_forgets_quiet_authors_and_left_guilds() -> None:
    now = [0.0]
    gate = AlertGate(group_window_s=60, per_minute=1000, clock=lambda: now[0], memory=100)

    assert all(gate.admit(GUILD, author) is Alert.POST for author in range(500))
    gate.admit(2, 1)
    assert gate.tracked() <= 100 + 2  # bounded however many authors came

    now[0] = 61.0
    assert gate.tracked() == 0  # nothing older than a minute is kept
    assert gate.admit(GUILD, 1) is Alert.POST
    gate.admit(2, 1)
    gate.forget_guild(GUILD)
    assert gate.tracked() == 2  # guild 2's author and guild 2
    assert gate.admit(GUILD, 1) is Alert.POST  # a fresh start in the forgotten guild


async def test_concurrent_decisions_on_one_event_store_one(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    settings = await service.configure(GUILD, moderation_enabled=True)
    _, verdict = await service.check(_message(NEGATIVE[2]))
    assert verdict is not None
    event = await service.record(verdict, settings)

    outcomes = await asyncio.gather(
        *(service.decide(event.id, "timeout", moderator) for moderator in (7, 8, 9)),
        return_exceptions=True,
    )

    decided = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, AlreadyDecidedError)]
    assert len(decided) == 1 and len(refused) == 2
    assert refused[0].event.decided_by == decided[0].decided_by
    stored = await service.event(event.id)
    assert stored is not None and stored.decided_by == decided[0].decided_by
