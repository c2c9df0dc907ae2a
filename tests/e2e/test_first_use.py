"""The first member to use a model sees that it loads, and for how long, then only the answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cogs import first_use
from bot.cogs.first_use import is_loading_notice
from tests.e2e.conftest import BotRunner
from tests.loopback.discord_server import Interaction
from tests.loopback.harness import LoopbackDiscord


@pytest.fixture(autouse=True)
def notice_for_tiny_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny models load in well under a second: show the notice for them too."""
    monkeypatch.setattr(first_use, "NOTICE_MIN_S", 0.0)


def shown(interaction: Interaction) -> str:
    """What the member sees as the answer now ("" while thinking or loading)."""
    original = interaction.original or {}
    embeds = original.get("embeds") or []
    text = original.get("content") or "".join(e.get("title") or "" for e in embeds)
    return "" if is_loading_notice(text) else text


def notices(interaction: Interaction) -> list[str]:
    return [e["content"] for e in interaction.edits if is_loading_notice(e.get("content") or "")]


async def test_first_use_of_a_model_shows_a_notice_then_only_the_answer(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    await bots.start()
    fake = discord_server.fake

    first = await fake.slash("sentiment", {"text": "what a wonderful day"})
    await discord_server.wait_for(lambda: shown(first), 60, "the first answer")
    second = await fake.slash("sentiment", {"text": "what a wonderful day"})
    await discord_server.wait_for(lambda: shown(second), 60, "the second answer")

    [notice] = notices(first)
    assert notice.startswith("Loading the sentiment model for the first time (about ")
    assert notice.endswith(" s)…")
    [answer] = first.texts()  # the notice went away; the answer took its place
    assert answer.startswith("Positive (")
    assert notices(second) == [] and second.texts() == [answer]


async def test_chat_and_summaries_say_which_models_load(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    await bots.start()
    fake = discord_server.fake
    fake.seed_history(fake.general, fake.owner, [f"message {i} about the picnic" for i in range(6)])

    chat = await fake.slash("chat", {"message": "hello there"})
    await discord_server.wait_for(lambda: shown(chat) and "▌" not in shown(chat), 60, "chat")
    summary = await fake.slash("summarize", {"messages": 5})
    await discord_server.wait_for(lambda: shown(summary), 120, "the channel summary")

    assert notices(chat) == [notices(chat)[0]]
    assert notices(chat)[0].startswith("Loading the chat model for the first time")
    assert not any(is_loading_notice(text) for text in chat.texts())
    [notice] = notices(summary)
    assert notice.startswith("Loading the summarization and sentiment models for the first time")
    assert summary.texts()[0].startswith("Summary of the last")


async def test_a_model_that_fails_to_load_still_gets_its_friendly_error(
    bots: BotRunner, discord_server: LoopbackDiscord, tmp_path: Path
) -> None:
    await bots.start(sentiment_model=str(tmp_path / "no-such-model"))
    discord_server.errors.expect(1)  # the worker logs the failed load

    interaction = await discord_server.fake.slash("sentiment", {"text": "hello", "private": True})
    await discord_server.wait_for(lambda: shown(interaction), 60, "the error")

    assert len(notices(interaction)) == 1
    [text] = interaction.texts()
    assert "sentiment" in text and "does not exist" in text
    assert interaction.ephemeral
