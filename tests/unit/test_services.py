from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from bot.errors import CooldownError, InvalidInputError
from bot.inference.chat import ChatMessage
from bot.inference.engine import InferenceEngine
from bot.services.conversations import DEFAULT_PERSONA, ConversationService, Speaker
from bot.services.cooldowns import RateLimit
from bot.services.retention import Pruned, RetentionService, retention_cutoff
from bot.services.sentiment import SentimentService
from bot.services.summaries import ChannelMessage, SummaryService, parse_duration
from bot.storage.engine import SessionFactory
from bot.storage.models import ConversationTurnRow, ModerationEventRow
from bot.storage.records import ModerationAction, NewModerationEvent, NewTurn, Role, Turn
from bot.storage.repositories import ChannelSettingsStore, ConversationStore, ModerationEventStore


async def test_sentiment_label_and_emotions(engine: InferenceEngine) -> None:
    service = SentimentService(engine)

    positive = await service.analyze("i love this")
    emotions = await service.analyze("shut up you idiot", emotions=True)

    assert positive.label == "POSITIVE" and positive.score > 0.9
    assert emotions.label == "anger" and len(emotions.emotions) == 4


@pytest.mark.parametrize("text", ["", "   ", "x" * 4001])
async def test_sentiment_refuses_empty_or_huge_text(engine: InferenceEngine, text: str) -> None:
    with pytest.raises(InvalidInputError):
        await SentimentService(engine).analyze(text)


async def test_mood_of_many_texts_is_one_engine_call(engine: InferenceEngine) -> None:
    service = SentimentService(engine)
    texts = ["i love this", "great work everyone", "i hate this"] * 10

    mood = await service.mood(texts)

    assert (mood.positive, mood.negative) == (20, 10)
    assert mood.label == "positive"
    assert engine.worker("sentiment").batches_run == 1


def _messages(count: int) -> list[ChannelMessage]:
    start = datetime.now(UTC)
    return [
        ChannelMessage(
            1000 + i,
            f"user{i % 3}",
            f"we should ship release {i} on friday",
            start + timedelta(seconds=i),
        )
        for i in range(count)
    ]


async def test_channel_summary_has_linked_bullets_mood_and_skips(engine: InferenceEngine) -> None:
    service = SummaryService(engine, SentimentService(engine))
    messages = [
        *_messages(40),
        ChannelMessage(5000, "bot", "beep", datetime.now(UTC), author_is_bot=True),
        ChannelMessage(5001, "eve", "", datetime.now(UTC), has_attachments_or_embeds=True),
    ]

    summary = await service.summarize_messages(messages)

    assert 1 < len(summary.bullets) <= 8
    assert summary.bullets[0].message_id == 1000
    ids = [b.message_id for b in summary.bullets]
    assert ids == sorted(ids) and set(ids) <= {m.id for m in messages}
    assert (summary.messages_used, summary.skipped_bots, summary.skipped_no_text) == (40, 1, 1)
    assert summary.mood.positive + summary.mood.negative == 40 + len(summary.bullets)


async def test_channel_without_text_is_refused(engine: InferenceEngine) -> None:
    service = SummaryService(engine, SentimentService(engine))
    with pytest.raises(InvalidInputError, match="enough written discussion"):
        await service.summarize_messages(
            [ChannelMessage(1, "a", "", datetime.now(UTC), has_attachments_or_embeds=True)]
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d12h", timedelta(hours=36)),
        (" 1w ", timedelta(weeks=1)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2 hours", "5y", "0m", "30d", "h2"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_duration(text)


def test_cooldown_per_member_and_command() -> None:
    now = [100.0]
    cooldowns = RateLimit(1, 10, clock=lambda: now[0])
    cooldowns.hit((1, "summarize"))
    cooldowns.hit((2, "summarize"))
    cooldowns.hit((1, "chat"))
    now[0] += 4
    with pytest.raises(CooldownError) as error:
        cooldowns.hit((1, "summarize"))
    assert "6 s" in error.value.message
    now[0] += 6
    cooldowns.hit((1, "summarize"))


def _conversations(engine: InferenceEngine, sessions: SessionFactory) -> ConversationService:
    return ConversationService(
        engine,
        ConversationStore(sessions),
        ChannelSettingsStore(sessions),
        bot_user_id=999,
        max_new_tokens=12,
    )


async def _say(service: ConversationService, speaker: Speaker, text: str) -> str:
    return "".join([piece async for piece in service.respond(speaker, text)])


async def test_conversation_prompt_has_persona_names_and_history(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _conversations(engine, sessions)
    prompts: list[list[ChatMessage]] = []
    original = engine.chat_stream

    def spy(messages: list[ChatMessage], **kwargs: int):  # type: ignore[no-untyped-def]
        prompts.append(list(messages))
        return original(messages, **kwargs)

    engine.chat_stream = spy  # type: ignore[method-assign]
    alice, bob = Speaker(1, 10, 501, "Alice"), Speaker(1, 10, 502, "Bob")

    first = await _say(service, alice, "hello bot")
    await _say(service, bob, "what did alice say?")

    # The member answered is named in the system prompt, earlier members in their turns.
    assert prompts[0][0] == ChatMessage(
        "system", f"{DEFAULT_PERSONA}\n\nYou are talking with Alice."
    )
    assert prompts[0][1] == ChatMessage("user", "hello bot")
    second = prompts[1]
    assert [m.role for m in second] == ["system", "user", "assistant", "user"]
    assert second[0].content == f"{DEFAULT_PERSONA}\n\nYou are talking with Bob."
    assert second[1].content == "[Alice] hello bot"
    assert second[2].content == first.strip()
    assert second[3].content == "what did alice say?"
    turns = await service.history(1, 10, 10)
    assert [t.role for t in turns] == [Role.USER, Role.ASSISTANT, Role.USER, Role.ASSISTANT]
    assert turns[0].token_count > 0 and turns[1].author_id == 999


async def test_persona_and_channel_isolation(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _conversations(engine, sessions)
    assert await service.set_persona(1, 10, "You are a pirate.") == "You are a pirate."
    await _say(service, Speaker(1, 10, 501, "Alice"), "ahoy")
    await _say(service, Speaker(1, 11, 501, "Alice"), "other channel")

    assert next(t.content for t in await service.history(1, 11, 10)) == "other channel"
    assert await service.set_persona(1, 10, None) == DEFAULT_PERSONA
    assert await service.reset(1, 10) == 2
    assert await service.forget_member(1, 501) == 1


async def test_messages_in_one_channel_are_answered_in_order(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _conversations(engine, sessions)
    speakers = [Speaker(1, 10, 500 + i, f"user{i}") for i in range(5)]

    await asyncio.gather(*(_say(service, s, f"message {i}") for i, s in enumerate(speakers)))

    turns = await service.history(1, 10, 20)
    users = [t.content for t in turns if t.role is Role.USER]
    assert users == [f"message {i}" for i in range(5)]
    assert [t.role for t in turns] == [Role.USER, Role.ASSISTANT] * 5


async def test_the_question_is_stored_even_if_generation_fails(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _conversations(engine, sessions)

    async def broken(*_args: object, **_kwargs: object):  # type: ignore[no-untyped-def]
        raise RuntimeError("model crashed")
        yield ""

    engine.chat_stream = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await _say(service, Speaker(1, 10, 501, "Alice"), "are you there?")

    assert [t.content for t in await service.history(1, 10, 5)] == ["are you there?"]


async def test_retention_prunes_turns_past_the_period_and_keeps_the_rest(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _conversations(engine, sessions)
    alice = Speaker(1, 10, 501, "Alice")
    await _say(service, alice, "an old question")
    await _say(service, alice, "a new question")
    await _age_turn(sessions, "an old question", timedelta(days=31))

    assert await service.prune(0) == 0  # 0 keeps everything
    assert await service.prune(60) == 0
    assert len(await service.history(1, 10, 10)) == 4
    assert await service.prune(30) == 1

    turns = await service.history(1, 10, 10)
    assert [t.role for t in turns] == [Role.ASSISTANT, Role.USER, Role.ASSISTANT]
    assert "an old question" not in [t.content for t in turns]
    assert turns[1].content == "a new question"


async def _age_turn(sessions: SessionFactory, content: str, age: timedelta) -> None:
    """Move one stored turn back in time, as if it had been written ``age`` ago."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(ConversationTurnRow)
            .where(ConversationTurnRow.content == content)
            .values(created_at=datetime.now(UTC) - age)
        )
    assert result.rowcount == 1  # type: ignore[attr-defined]


async def test_deleting_a_message_deletes_its_turn_and_the_answers_message_too(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _conversations(engine, sessions)
    alice = Speaker(1, 10, 501, "Alice")
    answered_in = iter([8001, 8002])

    async def say(text: str, message_id: int | None) -> None:
        shown_in = next(answered_in)
        async for _ in service.respond(
            alice, text, message_id=message_id, answer_message_id=lambda: shown_in
        ):
            pass

    await say("my secret is 1234", 7001)
    await say("from a slash command", None)
    turns = await service.history(1, 10, 10)
    assert [t.message_id for t in turns] == [7001, 8001, None, 8002]

    assert await service.forget_messages(1, [7001]) == 1
    assert await service.forget_messages(2, [8001]) == 0  # another guild's id: untouched
    assert await service.forget_messages(1, [8001, 8002, 424242]) == 2
    assert [t.content for t in await service.history(1, 10, 10)] == ["from a slash command"]


async def test_a_message_deleted_before_its_turn_is_stored_is_never_remembered(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _conversations(engine, sessions)
    alice = Speaker(1, 10, 501, "Alice")

    await service.forget_messages(1, [7001])  # deleted while waiting for its turn
    assert [p async for p in service.respond(alice, "hello", message_id=7001)] == []
    assert service.was_deleted(7001) and not service.was_deleted(None)
    assert await service.history(1, 10, 10) == []


async def test_a_message_deleted_while_its_turn_is_written_is_not_remembered(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    class DeletedDuringWrite(ConversationStore):
        async def add_turn(self, turn: NewTurn) -> Turn:
            if turn.message_id == 7001:
                # The delete event is handled before this insert commits: it finds nothing.
                assert await service.forget_messages(1, [7001]) == 0
            return await super().add_turn(turn)

    service = ConversationService(
        engine, DeletedDuringWrite(sessions), ChannelSettingsStore(sessions), max_new_tokens=8
    )

    pieces = [p async for p in service.respond(Speaker(1, 10, 501, "A"), "hi", message_id=7001)]

    assert pieces == []
    assert await service.history(1, 10, 10) == []


async def test_retention_prunes_turns_and_moderation_events_by_their_own_periods(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    events, conversations = ModerationEventStore(sessions), _conversations(engine, sessions)
    for message_id in (98, 99):
        await events.record(
            NewModerationEvent(1, 10, message_id, 501, "NEGATIVE", 0.99, ModerationAction.LOG)
        )
    await _say(conversations, Speaker(1, 10, 501, "Alice"), "hello")
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():  # one event and every turn get old
        await session.execute(
            update(ModerationEventRow)
            .where(ModerationEventRow.message_id == 98)
            .values(created_at=now - timedelta(days=100))
        )
        await session.execute(
            update(ConversationTurnRow).values(created_at=now - timedelta(days=40))
        )

    keep_all = RetentionService(conversations, events, conversation_days=0, moderation_days=0)
    assert await keep_all.prune() == Pruned(turns=0, moderation_events=0)
    keep_long = RetentionService(conversations, events, conversation_days=60, moderation_days=120)
    assert await keep_long.prune() == Pruned(turns=0, moderation_events=0)
    defaults = RetentionService(conversations, events, conversation_days=30, moderation_days=90)
    assert await defaults.prune() == Pruned(turns=2, moderation_events=1)
    assert [e.message_id for e in await events.since(1, now - timedelta(days=365))] == [99]
    assert retention_cutoff(0, now) is None
    assert retention_cutoff(90, now) == now - timedelta(days=90)
