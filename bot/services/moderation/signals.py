"""The signals that can flag a message, each a set of labels with a score from one model."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

from bot.inference.engine import ClassifierRole, InferenceEngine
from bot.inference.worker import URGENT
from bot.services.sentiment import is_negative
from bot.storage.records import GuildSettings

SENTIMENT, EMOTIONS, TOXICITY = "sentiment", "emotions", "toxicity"
SIGNALS = (SENTIMENT, EMOTIONS, TOXICITY)
SIGNAL_ROLES: dict[str, ClassifierRole] = {
    SENTIMENT: "sentiment",
    EMOTIONS: "emotion",
    TOXICITY: "moderation",
}
# Emotion labels that count as hostile on their own (go_emotions names them so).
HOSTILE_EMOTIONS = frozenset({"anger", "disgust"})
# unitary/toxic-bert's labels (a toxicity model may name others; they count all the same).
TOXICITY_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
LABEL_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")


def parse_signals(text: str) -> frozenset[str]:
    """The signals named in ``text`` ("toxicity" or "sentiment, emotions"); ValueError if none
    or an unknown one is named."""
    names = [name.strip().lower() for name in re.split(r"[,\s]+", text) if name.strip()]
    unknown = [name for name in names if name not in SIGNALS]
    if unknown or not names:
        raise ValueError(
            f"Pick one or more of {', '.join(SIGNALS)} (comma-separated)"
            + (f"; {unknown[0][:40]!r} is not one." if unknown else ".")
        )
    return frozenset(names)


def active_signals(settings: GuildSettings) -> frozenset[str]:
    """The guild's signals (its older emotions switch still adds emotions)."""
    return settings.signals | ({EMOTIONS} if settings.use_emotions else frozenset())


def signal_of(label: str) -> str:
    """The signal a label belongs to."""
    if label == "negative":
        return SENTIMENT
    return EMOTIONS if label in HOSTILE_EMOTIONS else TOXICITY


def threshold_for(settings: GuildSettings, label: str) -> float:
    return settings.label_thresholds.get(label, settings.threshold)


def flagging_label(settings: GuildSettings, scores: Mapping[str, float]) -> str | None:
    """The label whose score passed its threshold by the most, or None when none did."""
    passed = [
        (score - threshold_for(settings, label), label)
        for label, score in scores.items()
        if score >= threshold_for(settings, label)
    ]
    return max(passed)[1] if passed else None


async def score_texts(
    engine: InferenceEngine, texts: list[str], signals: frozenset[str]
) -> list[dict[str, float]]:
    """Every label score of each text for these signals.

    All signals run at once and every text goes in the same request, so the texts share
    model batches with each other and with other checks waiting in each model's worker.
    """
    ordered = [signal for signal in SIGNALS if signal in signals]
    results = await asyncio.gather(
        *(
            engine.classify(texts, role=SIGNAL_ROLES[signal], top_k=None, priority=URGENT)
            for signal in ordered
        )
    )
    scores: list[dict[str, float]] = [{} for _ in texts]
    for signal, per_text in zip(ordered, results, strict=True):
        for text_scores, labelled in zip(scores, per_text, strict=True):
            text_scores.update(_signal_scores(signal, [(s.label, s.score) for s in labelled]))
    return scores


def _signal_scores(signal: str, labelled: list[tuple[str, float]]) -> dict[str, float]:
    if signal == SENTIMENT:
        return {"negative": max((s for label, s in labelled if is_negative(label)), default=0.0)}
    if signal == EMOTIONS:
        return {label: score for label, score in labelled if label in HOSTILE_EMOTIONS}
    return {label.lower(): score for label, score in labelled}
