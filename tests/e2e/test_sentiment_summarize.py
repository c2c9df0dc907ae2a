from __future__ import annotations

from datetime import timedelta

import pytest

from bot.client import Bot
from bot.services import summaries
from tests.e2e.conftest import BotRunner
from tests.loopback.discord_server import READ_MESSAGE_HISTORY
from tests.loopback.harness import LoopbackDiscord
from tests.tiny_models import NEGATIVE, NEUTRAL_CORPUS, POSITIVE


async def test_sentiment_is_public_by_default(bot: Bot, discord_server: LoopbackDiscord) -> None:
    interaction = await discord_server.fake.slash("sentiment", {"text": "what a wonderful day"})

    [text] = await discord_server.answer(interaction)

    assert not interaction.ephemeral
    assert text.startswith("Positive (") and "confident" in text
    assert "Text: what a wonderful day" in text


async def test_sentiment_private_and_emotions(bot: Bot, discord_server: LoopbackDiscord) -> None:
    interaction = await discord_server.fake.slash(
        "sentiment", {"text": "shut up you idiot", "emotions": True, "private": True}
    )

    [text] = await discord_server.answer(interaction)

    assert interaction.ephemeral
    lines = text.splitlines()
    assert lines[0] == "Mostly anger"
    assert lines[1].startswith("`█") and "anger" in lines[1]
    assert sum("%" in line for line in lines) == 4  # every label of the model, as bars


async def test_message_menu_analyzes_the_selected_message(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    [message] = fake.seed_history(fake.general, fake.owner, ["i hate this"])

    interaction = await fake.slash(
        "Analyze sentiment",
        command_type=3,
        target_id=int(message["id"]),
        resolved={"messages": {message["id"]: message}},
    )
    [text] = await discord_server.answer(interaction)

    assert interaction.ephemeral
    assert text.startswith("Negative")
    assert interaction.original is not None
    assert interaction.original["embeds"][0]["url"].endswith(f"/{message['id']}")


async def test_summarize_a_long_text_in_parts(bot: Bot, discord_server: LoopbackDiscord) -> None:
    text = " ".join(f"Point {i}: the team agreed to ship release {i} on friday." for i in range(60))

    interaction = await discord_server.fake.slash("summarize", {"text": text, "max_length": 20})
    texts = await discord_server.answer(interaction, timeout=60)

    assert texts[-1].rstrip().endswith("parts")
    assert "summarised in" in texts[-1]


async def test_summarize_refuses_blank_text_and_bad_durations(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    blank = await fake.slash("summarize", {"text": "   "})
    bad_since = await fake.slash("summarize", {"since": "soon"})

    assert "no text" in (await discord_server.answer(blank))[0]
    assert "can't read 'soon' as a duration" in (await discord_server.answer(bad_since))[0]
    assert bad_since.ephemeral


async def test_summarize_a_channel_of_500_messages(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    channel = fake.channel("busy")
    members = [fake.user(f"member{i}") for i in range(3)]
    for member in members:
        fake.add_member(member)
    corpus = POSITIVE * 4 + NEGATIVE  # clearly positive overall: 4 to 1
    for i in range(500):
        fake.seed_history(channel, members[i % 3], [corpus[i % len(corpus)]])
    fake.seed_history(channel, fake.bot_user, ["an earlier bot answer"])
    [no_text] = fake.seed_history(channel, members[0], [""])
    no_text["attachments"] = [
        {
            "id": "1",
            "filename": "cat.png",
            "size": 1,
            "url": "http://127.0.0.1/x",
            "proxy_url": "http://127.0.0.1/x",
        }
    ]

    interaction = await fake.slash("summarize", {"messages": 500}, channel_id=channel)
    [text] = await discord_server.answer(interaction, timeout=90)

    assert text.startswith("Summary of the last 498 messages")
    assert "Mood: positive (" in text
    links = [line for line in text.splitlines() if line.startswith("• ")]
    assert 1 < len(links) <= 8
    ids = {m["id"] for m in fake.messages[channel]}
    for line in links:
        assert line.split("/")[-1].rstrip(")") in ids
    footer = interaction.original["embeds"][0]["footer"]["text"]  # type: ignore[index]
    assert footer == "Skipped: 1 without text (attachments/embeds only), 1 from bots"
    pages = [
        r for r in fake.requests if r.method == "GET" and r.path.endswith(f"{channel}/messages")
    ]
    assert len(pages) == 5  # read 100 at a time, as Discord allows
    # The whole window (and the bullets) was classified in full worker rounds, not per
    # message: pieces of one round each, so urgent moderation checks can run in between.
    worker = bot.services.engine.worker("sentiment")
    texts = 498 + len(links)
    assert worker.batches_run == -(-texts // worker.limits.max_batch_size)


async def test_summarize_since_reads_only_recent_messages(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    channel = fake.channel("recent")
    fake.seed_history(
        channel, fake.owner, [POSITIVE[i % 12] for i in range(120)], spacing=timedelta(minutes=1)
    )

    interaction = await fake.slash(
        "summarize", {"since": "30m", "messages": 500}, channel_id=channel
    )
    [text] = await discord_server.answer(interaction, timeout=60)

    # Seeded one a minute, the newest a minute ago: 29 are newer than 30 minutes.
    assert text.startswith("Summary of the last 29 messages")


async def test_heavy_commands_have_a_per_member_cooldown(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    await bots.start(command_cooldown_s=60)
    fake = discord_server.fake
    text = " ".join(NEUTRAL_CORPUS)

    first = await fake.slash("summarize", {"text": text})
    await discord_server.answer(first, timeout=30)
    second = await fake.slash("summarize", {"text": text})
    [reply] = await discord_server.answer(second)

    assert "try again in" in reply and second.ephemeral
    assert second.callback_type == 4  # refused at once, nothing deferred


async def test_a_mistyped_since_does_not_spend_the_cooldown(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    await bots.start(command_cooldown_s=60)
    fake = discord_server.fake
    fake.seed_history(fake.general, fake.owner, [POSITIVE[i % 12] for i in range(10)])

    typo = await fake.slash("summarize", {"since": "2hh"})
    assert "as a duration" in (await discord_server.answer(typo))[0]
    again = await fake.slash("summarize", {"since": "2h"})
    [text] = await discord_server.answer(again, timeout=60)

    assert text.startswith("Summary of the last 10 messages")


async def test_a_channel_the_bot_cannot_read_gets_a_friendly_refusal(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    hidden = fake.channel("staff-only")
    fake.set_overwrite(hidden, fake.bot_role["id"], deny=READ_MESSAGE_HISTORY)

    interaction = await fake.slash("summarize", {}, channel_id=hidden)
    [text] = await discord_server.answer(interaction)

    assert "missing a permission" in text and "error id" not in text


async def test_a_long_winded_channel_is_summarised_from_its_newest_messages(
    bot: Bot, discord_server: LoopbackDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A smaller budget than the real one (8 x 6000 characters): the tiny test model reads
    # a few hundred characters at a time, and the real budget would take it minutes.
    monkeypatch.setattr(summaries, "MAX_DISCUSSION_CHARS", 1200)
    fake = discord_server.fake
    channel = fake.channel("essays")
    fake.seed_history(channel, fake.owner, [f"{i}: {POSITIVE[i % 12]} " * 4 for i in range(40)])
    kept_texts = [m["content"] for m in fake.messages[channel]]
    kept = 0
    while sum(len(t) for t in kept_texts[len(kept_texts) - kept - 1 :]) <= 1200:
        kept += 1

    interaction = await fake.slash("summarize", {"messages": 100}, channel_id=channel)
    [text] = await discord_server.answer(interaction, timeout=120)

    assert 0 < kept < 40
    assert text.startswith(f"Summary of the last {kept} messages")
    assert f"Skipped: {40 - kept} older ones" in text
