"""Thresholds that learn: reviews of moderators' decisions, proposals, and replays."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bot.services.moderation.decisions import Decision
from bot.storage.scores import ReviewedFlag

# A label needs this many reviewed flags with a score for it before a threshold is proposed.
MIN_REVIEWED = 4


@dataclass(frozen=True, slots=True)
class LabelReview:
    label: str
    confirmed: int  # deleted or timed out by a moderator
    dismissed: int  # dismissed as a false positive

    @property
    def precision(self) -> float | None:
        reviewed = self.confirmed + self.dismissed
        return self.confirmed / reviewed if reviewed else None


@dataclass(frozen=True, slots=True)
class Proposal:
    label: str
    threshold: float
    precision: float  # of the reviewed flags at or above it
    kept: int  # confirmed flags it still flags
    avoided: int  # dismissed flags it would not have flagged


def is_confirmed(flag: ReviewedFlag) -> bool | None:
    """True: a moderator acted on it; False: dismissed; None: no known decision."""
    decision = Decision.from_past(flag.decision)
    return None if decision is None else decision.confirms


def review(flags: Iterable[ReviewedFlag]) -> list[LabelReview]:
    """Confirmed and dismissed flags per flagging label, most reviewed first."""
    confirmed: Counter[str] = Counter()
    dismissed: Counter[str] = Counter()
    for flag in flags:
        verdict = is_confirmed(flag)
        if verdict is not None:
            (confirmed if verdict else dismissed)[flag.label] += 1
    labels = sorted(set(confirmed) | set(dismissed), key=lambda k: -(confirmed[k] + dismissed[k]))
    return [LabelReview(label, confirmed[label], dismissed[label]) for label in labels]


def propose_threshold(
    samples: Sequence[tuple[float, bool]], target: float, min_reviewed: int = MIN_REVIEWED
) -> Proposal | None:
    """The lowest threshold among the scores whose reviewed flags at or above it reach
    ``target`` precision; None with too few samples, no confirmed one, or none reaching it.

    ``samples`` are (score, confirmed). The label is filled in by the caller.
    """
    if len(samples) < min_reviewed or not any(ok for _, ok in samples):
        return None
    for threshold in sorted({score for score, ok in samples if ok}):
        above = [ok for score, ok in samples if score >= threshold]
        precision = sum(above) / len(above)
        if precision >= target:
            avoided = sum(1 for score, ok in samples if not ok and score < threshold)
            return Proposal("", threshold, precision, sum(above), avoided)
    return None


def propose(flags: Sequence[ReviewedFlag], target: float) -> list[Proposal]:
    """A threshold per label, from the reviewed flags that label raised.

    Only those: a label that never flagged anything has low scores on every reviewed flag,
    and a threshold learnt from them would flag nearly every message.
    """
    samples: dict[str, list[tuple[float, bool]]] = {}
    for flag in flags:
        verdict = is_confirmed(flag)
        if verdict is not None:
            samples.setdefault(flag.label, []).append((flag.score, verdict))
    proposals = []
    for label, label_samples in sorted(samples.items()):
        found = propose_threshold(label_samples, target)
        if found is not None:
            proposals.append(
                Proposal(label, found.threshold, found.precision, found.kept, found.avoided)
            )
    return proposals


def replay_count(
    checked: Iterable[Mapping[str, float]], threshold: float, label: str | None
) -> int:
    """How many checked messages ``threshold`` would have flagged (on ``label``, or on any)."""
    if label is not None:
        return sum(1 for scores in checked if scores.get(label, -1.0) >= threshold)
    return sum(1 for scores in checked if any(s >= threshold for s in scores.values()))
