"""Out-of-range values and failures members can cause, over the loopback Discord."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.client import Bot
from tests.e2e.conftest import BotRunner
from tests.loopback.harness import LoopbackDiscord


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("99999999999999999999d", "more than 0 and at most 28 days"),
        ("9" * 5000 + "d", "too long to read"),
    ],
    ids=["huge-number", "5000-digits"],
)
async def test_out_of_range_durations_get_a_friendly_answer(
    bot: Bot, discord_server: LoopbackDiscord, since: str, expected: str
) -> None:
    interaction = await discord_server.fake.slash("summarize", {"since": since})

    [text] = await discord_server.answer(interaction)

    assert expected in text and "error id" not in text
    assert interaction.ephemeral


async def test_a_model_that_fails_to_load_is_named_without_host_paths(
    bots: BotRunner, discord_server: LoopbackDiscord, tmp_path: Path
) -> None:
    private = tmp_path / "operator-home" / "models"
    await bots.start(sentiment_model=str(private / "sentiment.gguf"))
    discord_server.errors.expect(1)  # the operator's log says which file is missing

    interaction = await discord_server.fake.slash("sentiment", {"text": "i love this"})
    # The loading notice shows first, then goes; the error follows it.
    await discord_server.wait_for(
        lambda: any("isn't available" in text for text in interaction.texts()), 30, "the error"
    )
    [text] = [text for text in interaction.texts() if "isn't available" in text]

    assert "sentiment model isn't available" in text and "sentiment.gguf" in text
    assert str(tmp_path) not in text and "operator-home" not in text
    [logged] = discord_server.errors.records
    assert str(private / "sentiment.gguf") in logged.getMessage()
