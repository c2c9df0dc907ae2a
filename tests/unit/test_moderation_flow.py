"""The moderation flow in one place: record -> act -> alert, with the Discord side passed in."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from bot.errors import BusyError
from bot.inference.engine import InferenceEngine
from bot.services.explain import WordEffect
from bot.services.moderation import (
    ActingFailedError,
    AlertKey,
    CheckedMessage,
    Decision,
    ModerationActions,
    ModerationService,
)
from bot.storage.engine import SessionFactory
from bot.storage.records import GuildSettings, ModerationAction, ModerationEvent
from bot.storage.repositories import GuildSettingsStore, ModerationEventStore
from tests.tiny_models import NEGATIVE, POSITIVE

GUILD = 1


class RecordingActions:
    """A Discord side that writes down what it was asked to do, in order."""

    def __init__(self, *, fail_apply: bool = False, log_channel: bool = True) -> None:
        self.calls: list[str] = []
        self.fail_apply = fail_apply
        self.log_channel = log_channel
        self._lock = asyncio.Lock()
        self.reasons: list[list[WordEffect]] = []

    async def apply(self, settings: GuildSettings) -> tuple[str, bool]:
        self.calls.append(f"apply {settings.action.value}")
        if self.fail_apply:
            raise RuntimeError("Discord went away")
        return "done", True

    def can_alert(self, settings: GuildSettings) -> bool:
        return self.log_channel

    def alert_lock(self, key: AlertKey) -> AbstractAsyncContextManager[Any]:
        return self._lock

    async def post_alert(
        self,
        settings: GuildSettings,
        event: ModerationEvent,
        outcome: str,
        reasons: Sequence[WordEffect],
    ) -> None:
        self.calls.append(f"post {event.id} {outcome}")
        self.reasons.append(list(reasons))

    async def join_alert(self, key: AlertKey, event: ModerationEvent, outcome: str) -> bool:
        self.calls.append(f"join {event.id}")
        return True

    async def post_cap_notice(self, settings: GuildSettings) -> None:
        self.calls.append("cap")

    async def post_heat_alert(
        self, settings: GuildSettings, channel_id: int, share: float, checked: int
    ) -> None:
        self.calls.append(f"heat {channel_id} {share:.2f} of {checked}")


def _service(engine: InferenceEngine, sessions: SessionFactory) -> ModerationService:
    return ModerationService(engine, GuildSettingsStore(sessions), ModerationEventStore(sessions))


def _message(text: str, message_id: int = 100, author: int = 500) -> CheckedMessage:
    return CheckedMessage(GUILD, 10, message_id, author, text)


def test_the_decision_enum_carries_its_words_permission_and_record() -> None:
    assert [d.value for d in Decision] == ["dismiss", "delete", "timeout"]
    for decision in Decision:
        assert Decision.from_key(decision.value) is decision
        assert Decision.from_past(decision.past) is decision
        assert decision.label and decision.permission in {"manage_messages", "moderate_members"}
    assert Decision.from_past(None) is None and Decision.from_past("eaten") is None
    assert [d.confirms for d in Decision] == [False, True, True]
    with pytest.raises(ValueError, match="unknown decision"):
        Decision.from_key("ban")


async def test_a_flag_is_recorded_then_acted_on_then_alerted(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    await service.configure(
        GUILD, moderation_enabled=True, threshold=0.8, action=ModerationAction.DELETE
    )
    actions = RecordingActions()
    protocol_check: ModerationActions = actions  # the test double satisfies the protocol

    event = await service.process(_message(NEGATIVE[0]), protocol_check)
    friendly = await service.process(_message(POSITIVE[0], 101), actions)
    again = await service.process(_message(NEGATIVE[1], 102), actions)

    assert event is not None and again is not None and friendly is None
    assert actions.calls == [
        "apply delete",
        f"post {event.id} done",
        "apply delete",
        f"join {again.id}",
    ]
    stored = await service.event(event.id)
    assert stored is not None and stored.action_succeeded


async def test_a_dry_run_acts_on_nothing_and_no_log_channel_means_no_alert(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    await service.configure(
        GUILD, moderation_enabled=True, threshold=0.8, action=ModerationAction.DELETE, dry_run=True
    )
    actions = RecordingActions()
    event = await service.process(_message(NEGATIVE[0]), actions)
    assert event is not None and actions.calls == [f"post {event.id} dry run: would delete it"]

    silent = RecordingActions(log_channel=False)
    assert await service.process(_message(NEGATIVE[1], 101, author=600), silent) is not None
    assert silent.calls == []


async def test_a_failed_action_keeps_the_event_and_is_not_retriable(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    await service.configure(GUILD, moderation_enabled=True, threshold=0.8, action="delete")
    actions = RecordingActions(fail_apply=True)

    with pytest.raises(ActingFailedError) as raised:
        await service.process(_message(NEGATIVE[0]), actions)

    assert await service.event(raised.value.event.id) is not None
    assert actions.calls == ["apply delete"]


async def test_a_busy_model_raises_before_anything_is_recorded(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    await service.configure(GUILD, moderation_enabled=True, threshold=0.8)
    actions = RecordingActions()

    async def busy(*args: object, **kwargs: object) -> object:
        raise BusyError("sentiment", 1.0)

    engine.classify = busy  # type: ignore[method-assign]
    with pytest.raises(BusyError):
        await service.process(_message(NEGATIVE[0]), actions)
    assert actions.calls == []
    assert (await service.stats(GUILD, 1)).total == 0


async def test_a_heated_channel_is_alerted_once_when_the_flag_that_heats_it_is_stored(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    await service.configure(GUILD, moderation_enabled=True, threshold=0.8, temperature_level=0.5)
    actions = RecordingActions()
    for index, text in enumerate(POSITIVE[:4] + NEGATIVE):
        await service.process(_message(text, 100 + index, author=500 + index), actions)

    heat = [call for call in actions.calls if call.startswith("heat")]
    assert heat == ["heat 10 0.50 of 8"]  # 4 calm, then the 4th hostile message of 8
    at = actions.calls.index(heat[0])
    assert actions.calls[at - 1 : at + 3] == ["post 3 done", heat[0], "apply log", "post 4 done"]
