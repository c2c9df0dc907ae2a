"""Moderation signals over the loopback Discord: toxicity instead of negative sentiment."""

from __future__ import annotations

from bot.services.moderation import Decision
from tests.e2e.conftest import BotRunner
from tests.e2e.test_moderation import buttons, flagged_events, world_and_bot
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
    assert fields["Why"].startswith("flagged mainly for 'idiot' (-0.")
    [event] = await flagged_events(bot, 2)  # the sad message was checked, not flagged
    assert event.message_id == int(hostile["id"])
    assert set(event.scores) == set(TOXICITY_LABELS) and event.scores["insult"] >= 0.7


async def test_sentiment_explain_names_the_words_behind_the_score(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    await bots.start()
    interaction = await discord_server.fake.slash(
        "sentiment", {"text": "i love this idiot", "explain": True}
    )

    [text] = await discord_server.answer(interaction)

    assert text.startswith("Negative (")
    assert "Words that drove it: 'idiot' (-" in text


async def test_review_tune_and_replay_learn_from_moderators(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    authors = [fake.user(f"author{i}") for i in range(4)]
    for author in authors:
        fake.add_member(author)
    await world.enable(discord_server, signals="toxicity", threshold=0.5)
    await fake.post_message(fake.general, world.member, SAD[0])
    for author, insult in zip(authors, INSULTS, strict=True):
        await fake.post_message(fake.general, author, insult)
    await discord_server.wait_for(lambda: len(world.alerts()) == 4, what="four alerts")
    service = bot.services.moderation
    decisions = [Decision.DELETE, Decision.TIMEOUT, Decision.DISMISS, Decision.DELETE]
    for event_id, decision in enumerate(decisions, start=1):
        await service.decide(event_id, decision, int(world.moderator["id"]))

    [review] = await discord_server.answer(await fake.slash("moderation", {"review": {"days": 7}}))
    assert "`toxic`: 3 confirmed, 1 dismissed - precision 75%" in review
    [replay] = await discord_server.answer(
        await fake.slash("moderation", {"replay": {"threshold": 0.5, "label": "toxic"}})
    )
    assert "would have flagged **4** of the 5 messages" in replay

    tune = await fake.slash("moderation", {"tune": {"target_precision": 0.6}})
    [proposal] = await discord_server.answer(tune)
    assert "`toxic` -> " in proposal and "keeps 3 confirmed" in proposal
    assert "toxic" not in (await service.settings(fake.guild_id)).label_thresholds
    shown = tune.original or tune.followups[0]
    apply_id, _cancel = buttons(shown)
    stranger = await fake.click(shown, apply_id, user=world.member)
    assert "Only the moderator who asked" in (await discord_server.answer(stranger))[0]
    assert "toxic" not in (await service.settings(fake.guild_id)).label_thresholds
    await fake.click(shown, apply_id)  # by the owner, who asked

    await discord_server.wait_for(lambda: not buttons(shown), what="the buttons to go")
    assert "Applied thresholds: toxic" in shown["content"]
    thresholds = (await service.settings(fake.guild_id)).label_thresholds
    assert 0.5 < thresholds["toxic"] <= 1.0
    assert f"`toxic` -> {thresholds['toxic']:.2f} " in proposal  # what was shown was applied
