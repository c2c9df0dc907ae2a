"""/chat answered by a model on a serving engine (a real `transformers serve` on 127.0.0.1)."""

from __future__ import annotations

from bot.client import Bot
from bot.inference.chat import ChatMessage
from bot.inference.engine import EngineConfig, InferenceEngine
from bot.inference.remote import ServerUnavailableError
from bot.services.conversations import DEFAULT_PERSONA
from tests.conftest import TinyModels
from tests.e2e.conftest import BotRunner
from tests.e2e.test_chat import CURSOR, final_text
from tests.loopback.harness import LoopbackDiscord
from tests.serving import ServeProcess, transformers_serve

COMPLETIONS = '"POST /v1/chat/completions HTTP/1.1" 200'


async def test_chat_through_the_server_streams_and_is_remembered(
    bots: BotRunner, discord_server: LoopbackDiscord, chat_server: ServeProcess
) -> None:
    fake = discord_server.fake
    bot: Bot = await bots.start(chat_api_base=chat_server.api_base, chat_model=chat_server.model)
    served_before = chat_server.log().count(COMPLETIONS)

    chat = await fake.slash("chat", {"message": "hello bot, I am the owner"})
    answer = await final_text(discord_server, chat)

    assert chat_server.log().count(COMPLETIONS) == served_before + 1  # the server answered
    shown = [
        r.body["content"]
        for r in fake.requests
        if chat.token in r.path and isinstance(r.body, dict) and r.body.get("content")
    ]
    assert len(shown) >= 2 and shown[0].endswith(CURSOR)  # streamed: the cursor first...
    assert shown[-1] == answer and CURSOR not in answer and answer.strip()  # ...then all of it
    # The server runs the same tiny model greedily: the answer is the in-process one, and it
    # is remembered as an in-process answer is, with token counts of the model's tokenizer.
    question = "owner: hello bot, I am the owner"
    prompt = [
        ChatMessage("system", f"{DEFAULT_PERSONA}\n\nYou are talking with owner."),
        ChatMessage("user", "hello bot, I am the owner"),
    ]
    expected, counts = await in_process(bots.models, prompt, [question, answer.strip()])
    assert answer.strip() == expected
    turns = await bot.services.conversations.history(fake.guild_id, fake.general, 10)
    assert [(t.role.value, t.content) for t in turns] == [
        ("user", "hello bot, I am the owner"),
        ("assistant", answer.strip()),
    ]
    assert [t.token_count for t in turns] == counts


async def test_a_stopped_server_gets_members_a_friendly_message(
    bots: BotRunner, discord_server: LoopbackDiscord, tiny_models: TinyModels
) -> None:
    fake = discord_server.fake
    with transformers_serve(tiny_models.chat) as server:
        await bots.start(chat_api_base=server.api_base, chat_model=server.model)
        first = await fake.slash("chat", {"message": "hello bot"})
        assert (await final_text(discord_server, first)).strip()
        server.stop()

        discord_server.errors.expect(1)  # the operator's log names the server and the failure
        second = await fake.slash("chat", {"message": "are you there?"})
        [text] = await discord_server.answer(second, timeout=60)

    assert text == ServerUnavailableError("chat").message
    assert "Traceback" not in text and "127.0.0.1" not in text
    failure = discord_server.errors.records[-1].getMessage()
    assert server.api_base in failure


async def in_process(
    models: TinyModels, prompt: list[ChatMessage], texts: list[str]
) -> tuple[str, list[int]]:
    """The in-process answer to ``prompt`` (24 tokens, as the bot asks) and token counts."""
    engine = InferenceEngine(EngineConfig(models=models.as_roles(), device="cpu"))
    try:
        reply = await engine.chat(prompt, max_new_tokens=24)
        return reply.text.strip(), await engine.count_tokens(texts)
    finally:
        await engine.aclose()
