"""Signals per guild: which models flag a message, thresholds per label, every score kept."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import InvalidInputError
from bot.inference.engine import InferenceEngine
from bot.services.moderation import (
    SIGNALS,
    CheckedMessage,
    ModerationService,
    parse_signals,
    score_texts,
)
from bot.services.moderation.signals import flagging_label
from bot.storage.engine import SessionFactory
from bot.storage.records import GuildSettings
from bot.storage.repositories import GuildSettingsStore, ModerationEventStore
from tests.tiny_models import INSULTS, SAD, TOXICITY_LABELS

GUILD = 1


def _service(engine: InferenceEngine, sessions: SessionFactory) -> ModerationService:
    return ModerationService(engine, GuildSettingsStore(sessions), ModerationEventStore(sessions))


def _message(text: str, message_id: int = 100) -> CheckedMessage:
    return CheckedMessage(GUILD, 10, message_id, 500, text)


@given(st.lists(st.sampled_from(SIGNALS), min_size=1), st.sampled_from([",", " ", ", ", " ,"]))
def test_signals_are_parsed_from_any_spelling(names: list[str], separator: str) -> None:
    text = separator.join(name.upper() if i % 2 else name for i, name in enumerate(names))
    assert parse_signals(f" {text} ") == frozenset(names)


@given(st.text(max_size=60))
def test_anything_else_is_refused_with_a_short_reason(text: str) -> None:
    names = {name.strip().lower() for name in text.replace(",", " ").split()}
    if names and names <= set(SIGNALS):
        assert parse_signals(text) == names
    else:
        with pytest.raises(ValueError, match="sentiment") as refused:
            parse_signals(text)
        assert len(str(refused.value)) < 200


@given(
    st.dictionaries(
        st.sampled_from(["toxic", "insult", "negative", "anger"]), st.floats(0, 1), min_size=1
    ),
    st.dictionaries(st.sampled_from(["toxic", "insult"]), st.floats(0.01, 1)),
    st.floats(0.01, 1),
)
def test_a_label_flags_exactly_when_it_passes_its_own_threshold(
    scores: dict[str, float], own: dict[str, float], threshold: float
) -> None:
    settings = GuildSettings(GUILD, threshold=threshold, label_thresholds=own)
    label = flagging_label(settings, scores)
    passed = {k for k, v in scores.items() if v >= own.get(k, threshold)}
    assert (label is None) == (not passed)
    assert label is None or label in passed


async def test_a_toxicity_only_guild_flags_insults_not_sadness(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    await service.configure(GUILD, moderation_enabled=True, threshold=0.8)
    [sad_by_sentiment] = [(await service.check(_message(SAD[2])))[1]]
    assert sad_by_sentiment is not None  # what the sentiment signal alone would do

    await service.configure(GUILD, signals=frozenset({"toxicity"}))
    _, sad = await service.check(_message(SAD[2]))
    _, hostile = await service.check(_message(INSULTS[1], 101))

    assert sad is None
    assert hostile is not None and hostile.label in {"toxic", "insult"}
    assert set(hostile.scores) == set(TOXICITY_LABELS)  # every label, no sentiment
    event = await service.record(hostile, await service.settings(GUILD))
    stored = await service.event(event.id)
    assert stored is not None and stored.scores == pytest.approx(hostile.scores)


async def test_all_signals_of_a_burst_share_batches_and_thresholds_are_per_label(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    await service.configure(
        GUILD,
        moderation_enabled=True,
        threshold=0.8,
        signals=frozenset({"sentiment", "emotions", "toxicity"}),
    )
    await service.set_label_threshold(GUILD, "negative", 1.0)  # sentiment cannot flag
    await service.set_label_threshold(GUILD, "anger", 1.0)
    settings = await service.set_label_threshold(GUILD, "Toxic", 0.5)
    assert settings.use_emotions and dict(settings.label_thresholds) == {
        "negative": 1.0,
        "anger": 1.0,
        "toxic": 0.5,
    }

    texts = SAD + INSULTS
    results = await asyncio.gather(*(service.check(_message(t, i)) for i, t in enumerate(texts)))

    verdicts = [verdict for _, verdict in results]
    assert verdicts[: len(SAD)] == [None] * len(SAD)
    assert all(v is not None and v.label in {"toxic", "insult"} for v in verdicts[len(SAD) :])
    assert all({"negative", "anger", "toxic"} <= set(v.scores) for v in verdicts if v)

    reset = await service.set_label_threshold(GUILD, "anger", 0)
    assert "anger" not in reset.label_thresholds
    with pytest.raises(InvalidInputError, match="label"):
        await service.set_label_threshold(GUILD, "no such label!", 0.5)


async def test_the_signals_of_many_texts_run_in_one_batch_per_model(
    engine: InferenceEngine,
) -> None:
    roles = ("sentiment", "emotion", "moderation")
    await score_texts(engine, ["warm up"], frozenset(SIGNALS))
    before = [engine.worker(role).batches_run for role in roles]

    scores = await score_texts(engine, SAD + INSULTS, frozenset(SIGNALS))

    assert [engine.worker(role).batches_run for role in roles] == [n + 1 for n in before]
    assert all({"negative", "anger", *TOXICITY_LABELS} <= set(s) for s in scores)
