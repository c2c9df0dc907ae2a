"""Reasons: the words that drove a score, found by leaving each out in one batch."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.inference.engine import InferenceEngine
from bot.services.explain import (
    MIN_EFFECT,
    WordEffect,
    effects_text,
    leave_one_out,
    strongest,
    word_effects,
)
from bot.services.moderation import ModerationService
from bot.services.sentiment import SentimentService
from bot.storage.engine import SessionFactory
from bot.storage.repositories import GuildSettingsStore, ModerationEventStore
from tests.tiny_models import INSULTS, SAD

words = st.lists(st.text(st.characters(blacklist_categories=["Z", "C"]), min_size=1), max_size=60)


@given(words, st.integers(1, 60))
def test_each_variant_leaves_out_exactly_one_word_in_order(
    text_words: list[str], limit: int
) -> None:
    variants = leave_one_out(" ".join(text_words), max_words=limit)
    assert len(variants) == min(len(text_words), limit)
    for i, (word, variant) in enumerate(variants):
        assert word == text_words[i]
        assert variant.split() == text_words[:i] + text_words[i + 1 :]


async def _bad_share(texts: list[str]) -> list[float]:
    return [sum(w == "bad" for w in t.split()) / max(1, len(t.split())) for t in texts]


@given(words.filter(bool))
async def test_effects_are_the_score_change_without_each_word(text_words: list[str]) -> None:
    text = " ".join(text_words)
    effects = await word_effects(text, _bad_share)
    [base] = await _bad_share([text])
    assert [e.word for e in effects] == text_words[: len(effects)]
    for effect, (_, variant) in zip(effects, leave_one_out(text), strict=True):
        assert effect.effect == ([0.0] if not variant else await _bad_share([variant]))[0] - base
    shown = strongest(effects)
    assert all(e.effect <= -MIN_EFFECT for e in shown)
    assert [e.effect for e in shown] == sorted(e.effect for e in shown)


def test_the_text_names_words_with_their_signed_effect() -> None:
    assert effects_text([WordEffect("idiot", -0.624), WordEffect("shut", -0.1)]) == (
        "'idiot' (-0.62), 'shut' (-0.10)"
    )
    assert strongest([WordEffect("a", -0.001), WordEffect("b", 0.5)]) == []


async def test_a_flag_is_explained_by_its_hostile_word_in_one_batch(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = ModerationService(
        engine, GuildSettingsStore(sessions), ModerationEventStore(sessions)
    )
    await engine.classify(["warm up"], role="moderation")
    before = engine.worker("moderation").batches_run

    reasons = await service.explain(INSULTS[1], "insult")  # "shut up you idiot"

    assert reasons[0].word == "idiot" and reasons[0].effect < -0.5
    assert engine.worker("moderation").batches_run == before + 1
    assert await service.explain(SAD[0], "insult") == []  # nothing to explain


async def test_sentiment_explains_any_text(engine: InferenceEngine) -> None:
    result, effects = await SentimentService(engine).explain("i love this idiot")
    assert result.label == "NEGATIVE" and effects[0].word == "idiot"
