"""Thresholds that learn from moderators' decisions: reviews, proposals, replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update

from bot.inference.engine import InferenceEngine
from bot.services.moderation import CheckedMessage, Decision, ModerationService
from bot.services.moderation.learning import propose, propose_threshold, replay_count, review
from bot.services.retention import RetentionService
from bot.storage.engine import SessionFactory
from bot.storage.models import CheckedScoresRow
from bot.storage.repositories import GuildSettingsStore, ModerationEventStore
from bot.storage.scores import ModerationHistory, ReviewedFlag
from tests.tiny_models import INSULTS

GUILD = 1
scores = st.floats(0, 1, allow_nan=False)
samples = st.lists(st.tuples(scores, st.booleans()), max_size=30)


def _precision(samples: list[tuple[float, bool]], threshold: float) -> float:
    above = [ok for score, ok in samples if score >= threshold]
    return sum(above) / len(above)


@given(samples, st.floats(0.01, 1))
def test_the_proposal_is_the_lowest_threshold_reaching_the_precision(
    data: list[tuple[float, bool]], target: float
) -> None:
    proposal = propose_threshold(data, target, min_reviewed=1)
    candidates = sorted({s for s, ok in data if ok})
    reaching = [t for t in candidates if _precision(data, t) >= target]
    if proposal is None:
        assert reaching == []
    else:
        assert proposal.threshold == reaching[0]
        assert proposal.precision == _precision(data, proposal.threshold) >= target
        assert proposal.kept == sum(1 for s, ok in data if ok and s >= proposal.threshold)
        assert proposal.avoided == sum(1 for s, ok in data if not ok and s < proposal.threshold)


@given(st.lists(st.dictionaries(st.sampled_from(["toxic", "insult"]), scores)), scores)
def test_a_replay_counts_what_passes(checked: list[dict[str, float]], threshold: float) -> None:
    assert replay_count(checked, threshold, "toxic") == sum(
        1 for c in checked if "toxic" in c and c["toxic"] >= threshold
    )
    assert replay_count(checked, threshold, None) == sum(
        1 for c in checked if c and max(c.values()) >= threshold
    )


def _flag(toxic: float, decision: Decision, insult: float = 0.0) -> ReviewedFlag:
    return ReviewedFlag("toxic", toxic, decision.past, {"toxic": toxic, "insult": insult})


def test_reviews_and_proposals_from_decided_flags() -> None:
    flags = [
        _flag(0.95, Decision.DELETE),
        _flag(0.9, Decision.TIMEOUT),
        _flag(0.85, Decision.DELETE),
        _flag(0.8, Decision.DISMISS),
        _flag(0.7, Decision.DISMISS),
        ReviewedFlag("negative", 0.99, Decision.DISMISS.past),
        ReviewedFlag("negative", 0.99, "eaten"),  # unknown decisions count nowhere
    ]
    [toxic, negative] = review(flags)
    assert (toxic.label, toxic.confirmed, toxic.dismissed) == ("toxic", 3, 2)
    assert (negative.confirmed, negative.dismissed, negative.precision) == (0, 1, 0.0)

    [proposal] = propose(flags, 1.0)  # negative: too few reviewed, and none confirmed
    assert (proposal.threshold, proposal.kept, proposal.avoided) == (0.85, 3, 2)
    more = [*flags, _flag(0.6, Decision.DELETE)]  # 4 of the 6 at or above 0.6 were right
    assert [p.threshold for p in propose(more, 0.6) if p.label == "toxic"] == [0.6]
    assert [p.threshold for p in propose(more, 0.75) if p.label == "toxic"] == [0.85]
    assert propose(flags[:2], 0.5) == []  # too few reviewed flags


async def test_tune_and_replay_over_the_database(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    history = ModerationHistory(sessions)
    service = ModerationService(
        engine, GuildSettingsStore(sessions), ModerationEventStore(sessions), history=history
    )
    await service.configure(
        GUILD, moderation_enabled=True, threshold=0.5, signals=frozenset({"toxicity"})
    )
    texts = [*INSULTS, "i feel so lonely tonight"]
    for i, text in enumerate(texts):
        _, verdict = await service.check(CheckedMessage(GUILD, 10, 100 + i, 500, text))
        if verdict is not None:
            event = await service.record(verdict, await service.settings(GUILD))
            decision = Decision.DISMISS if i == 2 else Decision.DELETE
            await service.decide(event.id, decision, 900)

    await service.check(CheckedMessage(GUILD, 10, 100, 500, texts[0]))  # edited: once more
    [reviewed] = await service.review(GUILD, 30)
    assert (reviewed.confirmed, reviewed.dismissed) == (3, 1)
    flagged, checked = await service.replay(GUILD, 0.5, "toxic", 7)
    assert (flagged, checked) == (4, 5)
    assert await service.replay(GUILD, 0.5, None, 7) == (4, 5)
    assert await service.replay(GUILD, 0.5, "no_such_label", 7) == (0, 5)

    proposals = await service.propose_thresholds(GUILD, 0.6, 30)
    assert [p.label for p in proposals] == [reviewed.label]  # only labels that flagged
    assert 0.5 < proposals[0].threshold <= 1
    applied = await service.apply_thresholds(GUILD, proposals)
    assert dict(applied.label_thresholds) == {reviewed.label: proposals[0].threshold}

    # Scores past their retention are pruned; events stay for their own period.
    async with sessions() as session, session.begin():
        old = datetime.now(UTC) - timedelta(days=20)
        await session.execute(
            update(CheckedScoresRow)
            .where(CheckedScoresRow.message_id == 100)
            .values(created_at=old)
        )
    retention = RetentionService(
        None,  # type: ignore[arg-type]
        ModerationEventStore(sessions),
        conversation_days=0,
        moderation_days=0,
        scores=history,
        scores_days=14,
    )
    assert await retention._prune_scores() == 2  # message 100 was checked twice
    assert await service.replay(GUILD, 0.5, "toxic", 30) == (3, 4)
