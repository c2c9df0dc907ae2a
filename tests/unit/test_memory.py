"""Long memory: turns that leave the chat model's window are folded into a channel summary."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.errors import InferenceError
from bot.inference.chat import ChatMessage
from bot.inference.engine import InferenceEngine
from bot.inference.summarize import Summary
from bot.services.conversations import ConversationService, Speaker
from bot.services.prompts import SUMMARY_HEADING
from bot.storage.engine import SessionFactory
from bot.storage.records import ConversationSummary, NewTurn, Role
from bot.storage.repositories import ChannelSettingsStore, ConversationStore

ALICE, BOB = Speaker(1, 10, 501, "alice"), Speaker(1, 10, 502, "bob")
FACT = "remember that the secret launch code is walrus"
# Long enough that a few of them fill the tiny chat model's 512-token window.
FILLER = "we should ship the release on friday and write the notes before lunch " * 4


class Spy:
    """Records what the conversation service hands the engine (prompts, texts to summarise)."""

    def __init__(self, engine: InferenceEngine) -> None:
        self.prompts: list[list[ChatMessage]] = []
        self.summarized: list[str] = []
        self.summaries: list[str] = []
        self.failing = False
        chat_stream, summarize = engine.chat_stream, engine.summarize

        def recording_chat(messages: list[ChatMessage], **kwargs: Any) -> Any:
            self.prompts.append(list(messages))
            return chat_stream(messages, **kwargs)

        async def recording_summarize(text: str, **kwargs: Any) -> Summary:
            self.summarized.append(text)
            if self.failing:
                raise InferenceError("The summarization model failed.")
            summary = await summarize(text, **kwargs)
            self.summaries.append(summary.text)
            return summary

        engine.chat_stream = recording_chat  # type: ignore[method-assign]
        engine.summarize = recording_summarize  # type: ignore[method-assign]


def _service(engine: InferenceEngine, sessions: SessionFactory) -> ConversationService:
    return ConversationService(
        engine,
        ConversationStore(sessions),
        ChannelSettingsStore(sessions),
        bot_user_id=999,
        max_new_tokens=8,
        summary_tokens=40,
    )


async def _say(service: ConversationService, speaker: Speaker, text: str) -> None:
    async for _ in service.respond(speaker, text):
        pass
    assert service.memory is not None
    await service.memory.idle()


async def _fill(service: ConversationService, rounds: int) -> None:
    for i in range(rounds):
        await _say(service, BOB, f"{i} {FILLER}")


async def test_a_fact_far_beyond_the_window_reaches_the_model_through_the_summary(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    spy, service = Spy(engine), _service(engine, sessions)
    await _say(service, ALICE, FACT)
    await _fill(service, 6)

    summary = await service.summary(1, 10)
    assert summary is not None and summary.content
    turns = await service.history(1, 10, 100)
    fact_turn = next(t for t in turns if t.content == FACT)
    assert summary.covered_through >= fact_turn.id
    assert summary.turns_folded >= 2
    assert any(FACT in text for text in spy.summarized)  # the fact went into the summary

    await _say(service, BOB, "what was the secret launch code?")

    prompt = spy.prompts[-1]
    assert SUMMARY_HEADING in prompt[0].content
    current = await service.summary(1, 10)
    assert current is not None and current.content in prompt[0].content
    assert prompt[0].content.index(current.content) > 0  # after the persona
    # Turns the summary covers are not repeated; the newest ones are sent as they are.
    assert all(FACT not in m.content for m in prompt[1:])
    assert prompt[-1] == ChatMessage("user", "what was the secret launch code?")
    assert len(await service.history(1, 10, 100)) == len(turns) + 2  # no turn was deleted


async def test_a_summary_is_only_made_once_turns_fall_out_of_the_window(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    spy, service = Spy(engine), _service(engine, sessions)
    await _say(service, ALICE, "hello")
    await _say(service, BOB, "hi alice")

    assert await service.summary(1, 10) is None
    assert spy.summarized == []


async def test_a_failing_summary_loses_no_turn_and_chat_goes_on(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    spy, service = Spy(engine), _service(engine, sessions)
    spy.failing = True
    await _say(service, ALICE, FACT)
    await _fill(service, 6)

    assert spy.summarized and await service.summary(1, 10) is None
    assert len(await service.history(1, 10, 100)) == 14
    assert FACT not in spy.prompts[-1][0].content

    spy.failing = False
    await _say(service, BOB, "and now?")

    assert await service.summary(1, 10) is not None
    assert FACT in spy.summarized[-1]  # the turns that waited are folded now


async def test_forget_drops_a_summary_made_from_the_members_turns_and_it_is_rebuilt(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    spy, service = Spy(engine), _service(engine, sessions)
    await _say(service, ALICE, FACT)
    await _fill(service, 6)
    assert await service.summary(1, 10) is not None

    assert await service.forget_member(1, ALICE.author_id) == 1

    assert await service.summary(1, 10) is None
    spy.summarized.clear()
    await _say(service, BOB, "anything new?")
    rebuilt = await service.summary(1, 10)
    assert rebuilt is not None
    assert spy.summarized and all(FACT not in text for text in spy.summarized)
    assert all(FACT not in m.content for m in spy.prompts[-1])


async def test_reset_and_deleted_messages_clear_the_summary(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    async for _ in service.respond(ALICE, FACT, message_id=7001):
        pass
    await _fill(service, 6)
    assert await service.summary(1, 10) is not None

    assert await service.forget_messages(1, [7001]) == 1
    assert await service.summary(1, 10) is None

    await _say(service, BOB, "more")
    assert await service.summary(1, 10) is not None
    await service.reset(1, 10)
    assert await service.summary(1, 10) is None
    assert await service.history(1, 10, 10) == []


async def test_refreshes_of_a_channel_are_coalesced(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = _service(engine, sessions)
    assert service.memory is not None
    runs: list[int] = []
    release = asyncio.Event()
    refresh = service.memory.refresh

    async def slow_refresh(
        guild_id: int, channel_id: int, parent_id: int | None = None
    ) -> bool | None:
        runs.append(channel_id)
        await release.wait()
        return await refresh(guild_id, channel_id, parent_id)

    service.memory.refresh = slow_refresh  # type: ignore[method-assign]
    service.memory.schedule(1, 10)
    service.memory.schedule(1, 11)
    for _ in range(100):  # until both refreshes have started
        if len(runs) == 2:
            break
        await asyncio.sleep(0)
    for _ in range(4):
        service.memory.schedule(1, 10)
    release.set()
    await service.memory.idle()

    assert sorted(runs) == [10, 10, 11]  # the first run, then one for the four asked meanwhile


@pytest.mark.both_backends
async def test_a_summary_made_from_turns_deleted_meanwhile_is_refused(
    sessions: SessionFactory,
) -> None:
    store = ConversationStore(sessions)
    turns = [
        await store.add_turn(NewTurn(1, 10, 501, "alice", Role.USER, f"turn {i}")) for i in range(4)
    ]
    summary = ConversationSummary(1, 10, "they talked", turns[1].id, 2)

    assert not await store.save_summary(summary, replaces=5, folded_range_turns=2)
    assert await store.delete_turn(turns[0].id) == 1
    assert not await store.save_summary(summary, replaces=None, folded_range_turns=2)
    assert await store.save_summary(summary, replaces=None, folded_range_turns=1)
    newer = ConversationSummary(1, 10, "more talk", turns[2].id, 3)
    assert not await store.save_summary(newer, replaces=None, folded_range_turns=1)
    assert await store.save_summary(newer, replaces=turns[1].id, folded_range_turns=1)

    memory = await store.memory(1, 10, 10)
    assert memory.summary is not None and memory.summary.content == "more talk"
    assert [t.content for t in memory.recent] == ["turn 3"] and memory.unsummarized == 1
    assert await store.summary(2, 10) is None  # another guild's channel id: not its summary
    assert await store.prune_older_than(turns[3].created_at) == 2  # covered turns: it goes
    assert await store.summary(1, 10) is None


@pytest.mark.parametrize("memory", [False])
async def test_with_memory_off_there_is_no_summary(
    engine: InferenceEngine, sessions: SessionFactory, memory: bool
) -> None:
    spy = Spy(engine)
    service = ConversationService(
        engine, ConversationStore(sessions), ChannelSettingsStore(sessions), memory=memory
    )
    await _say_plain(service, ALICE, FACT)
    for i in range(6):
        await _say_plain(service, BOB, f"{i} {FILLER}")

    assert service.memory is None and await service.summary(1, 10) is None
    assert spy.summarized == []


async def _say_plain(service: ConversationService, speaker: Speaker, text: str) -> None:
    async for _ in service.respond(speaker, text):
        pass


@pytest.mark.both_backends
async def test_a_summary_saved_while_the_channel_is_reset_is_refused_or_deleted(
    sessions: SessionFactory,
) -> None:
    store = ConversationStore(sessions)
    for attempt in range(15):
        first = await store.add_turn(NewTurn(1, 10, 501, "alice", Role.USER, "one"))
        await store.add_turn(NewTurn(1, 10, 501, "alice", Role.USER, "two"))
        old = ConversationSummary(1, 10, "old", first.id, 1)
        assert await store.save_summary(old, replaces=None, folded_range_turns=1)
        new = ConversationSummary(1, 10, f"new {attempt}", first.id + 1, 2)

        # Both finish without an error, in either order; no summary outlives the reset.
        await asyncio.gather(
            store.save_summary(new, replaces=first.id, folded_range_turns=1),
            store.clear_channel(1, 10),
        )

        assert await store.summary(1, 10) is None


async def test_a_threads_window_is_measured_with_the_persona_it_inherits(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    # The summary refresh measured a thread's window with the thread's own persona (none: the
    # short default), not the long one it inherits and its answers are given, so turns that
    # no longer fit the answers' window were never folded into its summary.
    service = _service(engine, sessions)
    await service.set_persona(1, 10, FILLER * 2)
    in_thread = Speaker(1, 20, 501, "alice", parent_id=10)
    for i in range(7):
        await _say(service, in_thread, f"{i} we should ship the release on friday")

    assert await service.summary(1, 20) is not None


async def test_a_refresh_asked_for_right_after_a_reset_still_runs(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    # A reset cancels the channel's refresh; an answer right after it asked for a new one
    # while the cancelled task was still unwinding, and that request was lost.
    service = _service(engine, sessions)
    assert service.memory is not None
    memory = service.memory
    runs: list[int] = []
    release = asyncio.Event()

    async def slow_refresh(
        guild_id: int, channel_id: int, parent_id: int | None = None
    ) -> bool | None:
        runs.append(channel_id)
        await release.wait()
        return None

    memory.refresh = slow_refresh  # type: ignore[method-assign]
    memory.schedule(1, 10)
    await asyncio.sleep(0)  # the first refresh is running
    memory.cancel(10)  # /reset
    memory.schedule(1, 10)  # the next answer, before the cancelled task has unwound
    release.set()
    await memory.idle()

    assert runs == [10, 10]
