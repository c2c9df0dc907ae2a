"""Moderation signals over the loopback Discord: toxicity instead of negative sentiment."""

from __future__ import annotations

from tests.e2e.conftest import BotRunner
from tests.e2e.test_moderation import flagged_events, world_and_bot
from tests.loopback.harness import LoopbackDiscord
from tests.tiny_models import INSULTS, SAD, TOXICITY_LABELS


async def test_a_toxicity_guild_flags_the_insult_and_not_the_sad_message(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server, threshold=0.8)
    refused = await world.configure(discord_server, signals="toxicity, sarcasm")
    assert "'sarcasm' is not one" in refused
    text = await world.configure(
        discord_server, signals="toxicity", label="insult", label_threshold=0.7
    )
    assert "Signals: toxicity" in text and "insult 0.70" in text

    await fake.post_message(fake.general, world.member, SAD[2])  # sentiment: NEGATIVE
    hostile = await fake.post_message(fake.general, world.member, INSULTS[1])
    [alert] = await discord_server.wait_for(world.alerts, what="an alert")

    fields = {f["name"]: f["value"] for f in alert["embeds"][0]["fields"]}
    assert fields["Score"].split()[0] in {"toxic", "insult"}
    assert "insult" in fields["All scores"]
    [event] = await flagged_events(bot, 2)  # the sad message was checked, not flagged
    assert event.message_id == int(hostile["id"])
    assert set(event.scores) == set(TOXICITY_LABELS) and event.scores["insult"] >= 0.7
