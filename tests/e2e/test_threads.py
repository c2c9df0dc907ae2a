"""Threads and forum posts: settings follow the parent channel, memory is the thread's own."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.client import Bot
from bot.inference.chat import ChatMessage
from tests.e2e.conftest import BotRunner
from tests.e2e.test_chat import CURSOR, replies_to, spy_on_prompts
from tests.loopback.discord_server import SEND_MESSAGES_IN_THREADS, FakeDiscord
from tests.loopback.harness import LoopbackDiscord


def persona(prompt: list[ChatMessage]) -> str:
    """The persona part of a prompt's system message (the speaker's name follows it)."""
    return prompt[0].content.split("\n\n")[0]


async def answered(
    server: LoopbackDiscord, channel_id: int, message: dict[str, Any], timeout: float = 30
) -> str:
    """The bot's finished reply to ``message``."""
    fake = server.fake
    await server.wait_for(
        lambda: (
            message["id"] in replies_to(fake, channel_id)
            and CURSOR not in replies_to(fake, channel_id)[message["id"]]["content"]
        ),
        timeout,
        f"the reply to {message['content']!r}",
    )
    return str(replies_to(fake, channel_id)[message["id"]]["content"])


async def said(server: LoopbackDiscord, name: str, options: Any, channel_id: int) -> str:
    """The first text the bot answered a slash command with."""
    return (await server.answer(await server.fake.slash(name, options, channel_id=channel_id)))[0]


def member(fake: FakeDiscord, name: str) -> dict[str, Any]:
    user = fake.user(name)
    fake.add_member(user)
    return user


async def test_a_thread_follows_its_channel_until_it_sets_its_own_and_keeps_its_own_memory(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    prompts = spy_on_prompts(bot)
    alice = member(fake, "alice")
    await said(discord_server, "conversation", {"enable": {}}, fake.general)
    await said(
        discord_server, "conversation", {"persona": {"text": "You are a pirate."}}, fake.general
    )
    in_general = await fake.post_message(fake.general, alice, "hello general")
    await answered(discord_server, fake.general, in_general)
    thread = await fake.open_thread(fake.general, "plans")

    first = await fake.post_message(thread, alice, "hello thread")
    await answered(discord_server, thread, first)
    assert persona(prompts[-1]) == "You are a pirate."  # the channel's persona
    assert [m.content for m in prompts[-1][1:]] == ["hello thread"]  # its own memory

    own = await said(
        discord_server, "conversation", {"persona": {"text": "You are a cat."}}, thread
    )
    assert own.startswith("Persona for this thread:\n> You are a cat.")
    assert "off" in await said(discord_server, "conversation", {"disable": {}}, thread)
    ignored = await fake.post_message(thread, alice, "nobody answers this")
    mentioned = await fake.post_message(
        thread, alice, f"<@{fake.bot_user['id']}> but this", mentions=[fake.bot_user]
    )
    await answered(discord_server, thread, mentioned)
    assert persona(prompts[-1]) == "You are a cat."
    assert ignored["id"] not in replies_to(fake, thread)

    back = await said(discord_server, "conversation", {"inherit": {}}, thread)
    assert back == f"This thread follows <#{fake.general}> again: conversation mode is on."
    again = await fake.post_message(thread, alice, "and now?")
    await answered(discord_server, thread, again)
    assert persona(prompts[-1]) == "You are a pirate."
    # The channel never saw the thread: its own settings and memory are unchanged.
    channel_settings = await bot.services.conversations.channel_settings(
        fake.guild_id, fake.general
    )
    assert channel_settings.conversation_enabled and channel_settings.persona == "You are a pirate."
    general_memory = await bot.services.conversations.history(fake.guild_id, fake.general, 50)
    assert [t.content for t in general_memory][:1] == ["hello general"]
    assert len(general_memory) == 2


async def test_forum_posts_follow_the_forum_set_from_elsewhere(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    forum = fake.forum("questions")
    alice = member(fake, "alice")
    regular = member(fake, "regular")  # may use the commands here, may not manage the forum
    bot = await bots.start()
    prompts = spy_on_prompts(bot)

    refused = await fake.slash(
        "conversation", {"enable": {"channel": str(forum)}}, user=regular, channel_id=fake.general
    )
    [refusal] = await discord_server.answer(refused)
    assert "Manage Channels" in refusal and refused.ephemeral
    enabled = await said(
        discord_server, "conversation", {"enable": {"channel": str(forum)}}, fake.general
    )
    assert (
        enabled == f"Conversation mode is on: I'll answer every message in the posts of <#{forum}>."
    )
    options = {"persona": {"text": "You answer questions.", "channel": str(forum)}}
    await said(discord_server, "conversation", options, fake.general)
    post, opening = await fake.forum_post(forum, "why is the sky blue", alice, "why blue?")

    await answered(discord_server, post, opening)
    assert persona(prompts[-1]) == "You answer questions."
    assert [m.content for m in prompts[-1][1:]] == ["why blue?"]
    general = await bot.services.conversations.channel_settings(fake.guild_id, fake.general)
    assert not general.conversation_enabled and general.persona is None


async def test_no_answer_in_a_thread_where_the_bot_may_not_send(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    thread = fake.thread(fake.general, "read only")
    fake.set_overwrite(fake.general, fake.bot_role["id"], deny=SEND_MESSAGES_IN_THREADS)
    bot = await bots.start()
    prompts = spy_on_prompts(bot)
    alice = member(fake, "alice")
    await said(discord_server, "conversation", {"enable": {}}, fake.general)

    unanswerable = await fake.post_message(thread, alice, "anyone here?")
    in_general = await fake.post_message(fake.general, alice, "and here?")
    await answered(discord_server, fake.general, in_general)

    # No model time was spent on a message nobody would see an answer to, and no error.
    assert [p[-1].content for p in prompts] == ["and here?"]
    assert not fake.bot_messages(thread)
    assert unanswerable in fake.messages[thread]


async def test_reset_and_history_of_a_thread_leave_its_channel_alone(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    thread = fake.thread(fake.general, "side talk")
    await discord_server.wait_for(lambda: bot.get_channel(fake.general) is not None)
    for channel_id, text in ((fake.general, "in the channel"), (thread, "in the thread")):
        chat = await fake.slash("chat", {"message": text}, channel_id=channel_id)
        await discord_server.wait_for(
            lambda chat=chat: chat.original and CURSOR not in chat.original["content"], 30
        )

    history = await said(discord_server, "history", None, thread)
    assert history.startswith("**owner**: in the thread") and "in the channel" not in history
    reset = await said(discord_server, "reset", None, thread)
    assert reset == "Done - I forgot this thread's conversation (2 messages)."
    empty = await said(discord_server, "history", None, thread)
    assert empty == "I don't remember anything of this thread."
    kept = await said(discord_server, "history", None, fake.general)
    assert kept.startswith("**owner**: in the channel")


async def test_a_thread_the_bot_never_saw_still_follows_its_channel(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    unseen = fake.thread(fake.general, "old talk", cached=False)  # not in GUILD_CREATE
    bot = await bots.start()
    prompts = spy_on_prompts(bot)
    await said(
        discord_server, "conversation", {"persona": {"text": "You are a pirate."}}, fake.general
    )
    await said(discord_server, "conversation", {"enable": {}}, fake.general)

    first = await fake.post_message(unseen, member(fake, "alice"), "hello from the old thread")
    await answered(discord_server, unseen, first)
    second = await fake.post_message(unseen, fake.owner, "and again")
    await answered(discord_server, unseen, second)

    assert [persona(p) for p in prompts] == ["You are a pirate."] * 2
    lookups = [r for r in fake.requests if r.method == "GET" and r.path.endswith(f"/{unseen}")]
    assert len(lookups) == 1  # asked once, then remembered


async def test_deleting_a_thread_forgets_its_conversation(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    thread = await fake.open_thread(fake.general, "to be deleted")
    for channel_id in (thread, fake.general):
        chat = await fake.slash("chat", {"message": "remember this"}, channel_id=channel_id)
        await discord_server.wait_for(
            lambda chat=chat: chat.original and CURSOR not in chat.original["content"], 30
        )
    conversations = bot.services.conversations
    assert len(await conversations.history(fake.guild_id, thread, 10)) == 2

    await fake.delete_thread(thread)

    deadline = time.monotonic() + 15
    while await conversations.history(fake.guild_id, thread, 10):
        discord_server.check_errors()
        assert time.monotonic() < deadline, "the deleted thread's turns are still remembered"
        await asyncio.sleep(0.05)
    assert len(await conversations.history(fake.guild_id, fake.general, 10)) == 2  # kept
