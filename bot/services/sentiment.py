"""Sentiment and emotion analysis of texts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.errors import InvalidInputError
from bot.inference.classify import LabelScore
from bot.inference.engine import InferenceEngine
from bot.services.explain import WordEffect, strongest, word_effects

MAX_TEXT_CHARS = 4000
_NEGATIVE_LABELS = frozenset({"negative", "neg", "label_0"})


@dataclass(frozen=True, slots=True)
class SentimentResult:
    label: str
    score: float
    emotions: tuple[LabelScore, ...] = ()  # every emotion label, best first (when asked)


@dataclass(frozen=True, slots=True)
class Mood:
    """The overall tone of many texts."""

    positive: int
    negative: int
    average_positive: float  # mean probability of "positive", 0..1

    @property
    def label(self) -> str:
        if self.average_positive >= 0.6:
            return "positive"
        if self.average_positive <= 0.4:
            return "negative"
        return "mixed"


def is_negative(label: str) -> bool:
    """Whether a sentiment model's label means negative."""
    return label.lower() in _NEGATIVE_LABELS


def check_text(text: str, *, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` stripped, or a friendly error when empty or longer than ``limit``."""
    text = text.strip()
    if not text:
        raise InvalidInputError("There is no text to analyse - give me a few words.")
    if len(text) > limit:
        raise InvalidInputError(f"That text is {len(text)} characters long; the limit is {limit}.")
    return text


class SentimentService:
    """Labels texts with the sentiment (and optionally emotions) models."""

    def __init__(self, engine: InferenceEngine) -> None:
        self._engine = engine

    async def analyze(self, text: str, *, emotions: bool = False) -> SentimentResult:
        """Label and confidence of one text; with ``emotions``, the full emotion distribution."""
        text = check_text(text)
        if emotions:
            [distribution] = await self._engine.classify([text], role="emotion", top_k=None)
            best = distribution[0]
            return SentimentResult(best.label, best.score, tuple(distribution))
        [[best]] = await self._engine.classify([text], role="sentiment", top_k=1)
        return SentimentResult(best.label, best.score)

    async def explain(self, text: str) -> tuple[SentimentResult, list[WordEffect]]:
        """The label, and the words that drove its score most (each left out, one batch)."""
        text = check_text(text)
        [[best]] = await self._engine.classify([text], role="sentiment", top_k=1)

        async def score(texts: list[str]) -> list[float]:
            results = await self._engine.classify(texts, role="sentiment", top_k=None)
            return [next((s.score for s in r if s.label == best.label), 0.0) for r in results]

        effects = await word_effects(text, score)
        return SentimentResult(best.label, best.score), strongest(effects)

    async def mood(self, texts: Sequence[str]) -> Mood:
        """The overall tone of many texts, in one batched model call."""
        texts = [text for text in texts if text.strip()]
        if not texts:
            raise InvalidInputError("There is no text to analyse.")
        results = await self._engine.classify(texts, role="sentiment", top_k=1)
        positives = [
            1.0 - best.score if is_negative(best.label) else best.score for [best] in results
        ]
        negative = sum(1 for [best] in results if is_negative(best.label))
        return Mood(len(results) - negative, negative, sum(positives) / len(positives))
