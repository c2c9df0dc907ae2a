"""Long memory over the loopback Discord: the summary of turns that left the window."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bot.client import Bot
from bot.services.prompts import SUMMARY_HEADING
from bot.storage.records import ConversationSummary
from tests.e2e.conftest import BotRunner
from tests.e2e.test_chat import final_text, spy_on_prompts
from tests.loopback.harness import LoopbackDiscord

FACT = "remember that the secret launch code is walrus"
FILLER = "we should ship the release on friday and write the notes before lunch " * 4


async def eventually(
    check: Callable[[], Awaitable[ConversationSummary | None]],
    wanted: Callable[[ConversationSummary | None], bool],
    what: str,
    timeout: float = 30,
) -> ConversationSummary | None:
    """Poll ``check`` until its result is ``wanted`` (a deadline, not a sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not wanted(result := await check()):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return result


async def test_turns_beyond_the_window_reach_the_model_through_the_summary(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    bot: Bot = await bots.start(conversation_summary_tokens=40, chat_answers_per_minute=0)
    fake = discord_server.fake
    conversations = bot.services.conversations
    prompts = spy_on_prompts(bot)
    alice, bob = fake.user("alice"), fake.user("bob")
    fake.add_member(alice)
    fake.add_member(bob)

    async def chat(text: str, user: dict[str, Any]) -> None:
        await final_text(discord_server, await fake.slash("chat", {"message": text}, user=user))

    def summary() -> Awaitable[ConversationSummary | None]:
        return conversations.summary(fake.guild_id, fake.general)

    async def settled() -> None:
        """Every answer in the channel is stored and the refreshes it asked for are done."""
        with conversations.line_up(fake.general) as place:
            await place.wait_turn()  # the answers before have left the line, refresh asked
        assert conversations.memory is not None
        await conversations.memory.idle()

    await chat(FACT, alice)
    for i in range(6):
        await chat(f"{i} {FILLER}", bob)
    turns = await conversations.history(fake.guild_id, fake.general, 50)
    fact_turn = next(t.id for t in turns if t.content == FACT)
    folded = await eventually(
        summary, lambda s: s is not None and s.covered_through >= fact_turn, "the summary"
    )
    assert folded is not None and folded.content
    await settled()
    used = await summary()  # what the next answer's prompt holds
    assert used is not None

    await chat("what was the secret launch code?", bob)

    assert prompts[-1][-1].content == "what was the secret launch code?"
    assert f"{SUMMARY_HEADING} {used.content}" in prompts[-1][0].content
    assert all(FACT not in m.content for m in prompts[-1][1:])  # the turn itself fell out
    await settled()  # that answer may have refreshed it
    current = await summary()
    assert current is not None

    history = await fake.slash("history", {"turns": 2}, user=bob)
    shown = (await discord_server.answer(history))[0]
    assert shown.startswith(f"**Summary of {current.turns_folded} older messages**: ")
    assert "what was the secret launch code?" in shown

    forget = await fake.slash("forget", user=alice)
    assert "Deleted 1 of your messages" in (await discord_server.answer(forget))[0]
    assert await summary() is None  # it was made from alice's turn: dropped with it

    await chat("anything new?", bob)  # rebuilt from what remains
    await eventually(summary, lambda s: s is not None, "the rebuilt summary")
    await settled()
    reset = await fake.slash("reset")
    assert "I forgot this channel's conversation" in (await discord_server.answer(reset))[0]
    assert await summary() is None
    empty = await fake.slash("history")
    assert "don't remember anything" in (await discord_server.answer(empty))[0]
