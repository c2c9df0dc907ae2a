"""Many members at once: acknowledgement in time, resets under load, pacing, reading rights."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.client import Bot
from bot.inference.chat import ChatMessage
from tests.e2e.conftest import BotRunner
from tests.loopback.discord_server import EVERYONE_PERMISSIONS, FakeDiscord, Interaction
from tests.loopback.harness import LoopbackDiscord

CURSOR = "▌"
READ_MESSAGE_HISTORY = 1 << 16
DISCORD_ACK_LIMIT_S = 3.0


def slow_down(bot: Bot, seconds_per_piece: float, *, first_s: float = 0.0, about: str = "") -> None:
    """Answers to prompts containing ``about`` start ``first_s`` late and stream slowly."""
    engine = bot.services.engine
    original = engine.chat_stream

    async def slow(messages: Sequence[ChatMessage], **kwargs: Any) -> AsyncGenerator[str, None]:
        delay = any(about in m.content for m in messages)
        async with contextlib.aclosing(original(messages, **kwargs)) as stream:
            await asyncio.sleep(first_s if delay else 0)
            async for piece in stream:
                await asyncio.sleep(seconds_per_piece if delay else 0)
                yield piece

    engine.chat_stream = slow  # type: ignore[method-assign]


def members(fake: FakeDiscord, count: int) -> list[dict[str, Any]]:
    users = [fake.user(f"member{i}") for i in range(count)]
    for user in users:
        fake.add_member(user)
    return users


def acknowledged_in_time(interaction: Interaction) -> bool:
    return (
        interaction.callback_at is not None
        and interaction.callback_at - interaction.created_at < DISCORD_ACK_LIMIT_S
    )


def replies(fake: FakeDiscord, channel_id: int) -> dict[str, dict[str, Any]]:
    return {
        str(m["message_reference"]["message_id"]): m
        for m in fake.bot_messages(channel_id)
        if m.get("message_reference")
    }


async def test_reset_while_chats_are_queued_is_acknowledged_at_once(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    bot = await bots.start(chat_answers_per_minute=0)
    slow_down(bot, 0.3)
    chats = [
        await fake.slash("chat", {"message": f"question {i}"}, user=member)
        for i, member in enumerate(members(fake, 8))
    ]
    await discord_server.wait_for(
        lambda: all(chat.callback_type == 5 for chat in chats), 10, "every /chat deferred"
    )
    assert all(acknowledged_in_time(chat) for chat in chats)

    reset = await fake.slash("reset")
    await discord_server.wait_for(lambda: reset.callback_type is not None, 5, "the reset's ack")
    assert acknowledged_in_time(reset)
    [done] = await discord_server.answer(reset, timeout=30)
    assert "forgot this channel's conversation" in done

    # Every dropped /chat was told why; nothing of them is remembered.
    for chat in chats:
        await discord_server.wait_for(
            lambda chat=chat: any("was reset" in text for text in chat.texts()),  # type: ignore[misc]
            10,
            "the dropped /chat to be told",
        )
    await asyncio.sleep(0.5)  # an answer stored late would show up now
    assert await bot.services.conversations.history(fake.guild_id, fake.general, 50) == []


async def test_a_flooding_member_is_paced_and_does_not_delay_other_channels(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    quiet = fake.channel("quiet")
    bot = await bots.start(chat_answers_per_minute=3, chat_max_new_tokens=6)
    slow_down(bot, 0.5, first_s=3, about="spam")  # each flood answer takes over 3 s
    enable = await fake.slash("conversation", {"enable": {}})
    await discord_server.answer(enable)
    flooder, alice = members(fake, 2)

    flood = [await fake.post_message(fake.general, flooder, f"spam {i}") for i in range(10)]
    asked = await fake.post_message(
        quiet, alice, f"<@{fake.bot_user['id']}> hello", mentions=[fake.bot_user]
    )

    def finished(channel_id: int) -> list[dict[str, Any]]:
        return [m for m in fake.bot_messages(channel_id) if CURSOR not in m["content"]]

    await discord_server.wait_for(lambda: finished(quiet), 30, "the answer in the quiet channel")
    # Each channel has its own line: alice did not wait behind the flood's three answers.
    assert asked["id"] in replies(fake, quiet)
    flood_answers = [m for m in finished(fake.general) if "going a bit fast" not in m["content"]]
    assert flood_answers == []

    await discord_server.wait_for(lambda: len(finished(fake.general)) == 4, 60, "the flood")
    await asyncio.sleep(1)
    answered = replies(fake, fake.general)
    assert [m["id"] for m in flood if m["id"] in answered] == [m["id"] for m in flood[:4]]
    # Three answers, then one notice for the whole flood, then silence.
    assert "going a bit fast" in answered[flood[3]["id"]]["content"]
    assert len(fake.bot_messages(fake.general)) == 4


async def test_a_full_channel_line_gets_a_friendly_refusal(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    bot = await bots.start(chat_answers_per_minute=0, chat_queue_limit=2)
    slow_down(bot, 0.3)
    enable = await fake.slash("conversation", {"enable": {}})
    await discord_server.answer(enable)

    posted = [
        await fake.post_message(fake.general, member, f"question {i}")
        for i, member in enumerate(members(fake, 5))
    ]

    def finished() -> bool:
        answered = replies(fake, fake.general)
        return all(
            m["id"] in answered and "▌" not in answered[m["id"]]["content"] for m in posted[:3]
        )

    await discord_server.wait_for(finished, 60, "the three answers")
    answered = replies(fake, fake.general)
    # One answering, two waiting, the rest refused: the channel is told once, not per message.
    assert sorted(answered) == sorted(m["id"] for m in posted[:4])
    assert "already answering" in answered[posted[3]["id"]]["content"]
    assert not any("already answering" in answered[m["id"]]["content"] for m in posted[:3])


async def test_history_and_channel_summaries_need_read_message_history(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    fake.everyone_role["permissions"] = str(EVERYONE_PERMISSIONS & ~READ_MESSAGE_HISTORY)
    readers = fake.add_role("readers", READ_MESSAGE_HISTORY, position=1)
    lurker, reader = members(fake, 2)
    fake.add_member(reader, roles=[readers])
    fake.seed_history(fake.general, fake.owner, ["the launch moved to friday"] * 6)
    await bot.services.conversations.history(fake.guild_id, fake.general, 1)

    for command, options in (("history", {}), ("summarize", {"messages": 10})):
        refused = await fake.slash(command, options, user=lurker)
        [text] = await discord_server.answer(refused)
        assert text == "You need the Read Message History permission to do that."
        assert refused.ephemeral

    allowed = await fake.slash("history", user=reader)
    assert "don't remember anything" in (await discord_server.answer(allowed))[0]
    own_text = await fake.slash(
        "summarize",
        {"text": "the launch moved to friday because the tests failed twice"},
        user=lurker,
    )
    assert "permission" not in (await discord_server.answer(own_text, timeout=60))[0]


async def test_listener_errors_are_reported_with_an_id(
    bot: Bot, discord_server: LoopbackDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    discord_server.errors.expect(1)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        await bot.on_error("on_message")
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage().startswith("error ") and "in event on_message" in record.getMessage()
    assert record.exc_info is not None and str(record.exc_info[1]) == "boom"


async def test_commands_are_acknowledged_while_the_database_is_stuck(
    bot: Bot, discord_server: LoopbackDiscord, database_url: str
) -> None:
    fake = discord_server.fake
    path = database_url.removeprefix("sqlite+aiosqlite:///")
    holder = sqlite3.connect(path, timeout=10)
    holder.execute("BEGIN EXCLUSIVE")  # every write of the bot now waits
    try:
        sent = [
            await fake.slash(name, options)
            for name, options in (
                ("conversation", {"enable": {}}),
                ("forget", {}),
                ("history", {}),
                ("reset", {}),
                ("moderation", {"status": {}}),
                ("moderation", {"exempt": {"channel": {"channel": str(fake.general)}}}),
            )
        ]
        await discord_server.wait_for(
            lambda: all(i.callback_type is not None for i in sent), 5, "every acknowledgement"
        )
        assert all(acknowledged_in_time(i) for i in sent)
    finally:
        await asyncio.sleep(1.0)
        holder.rollback()
        holder.close()
    for interaction in sent:
        await discord_server.answer(interaction, timeout=30)


async def test_an_answer_that_would_outlive_the_interaction_token_goes_to_the_channel(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    # Used 14 minutes ago (e.g. after a long wait in line): its token ends before an answer could.
    late = await fake.slash(
        "chat", {"message": "hello there"}, created_at=datetime.now(UTC) - timedelta(minutes=14)
    )
    fresh = await fake.slash("chat", {"message": "and hello again"})

    await discord_server.wait_for(
        lambda: any(CURSOR not in m["content"] for m in fake.bot_messages(fake.general)),
        30,
        "the late answer in the channel",
    )
    await discord_server.answer(fresh, timeout=30)
    assert late.callback_type == 5 and late.original is None and late.followups == []
    assert fresh.original is not None  # a fresh one is answered by followup, as usual
