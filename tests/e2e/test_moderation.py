"""Moderation checks over the loopback Discord: commands, actions, alerts, buttons, bursts."""

from __future__ import annotations

from typing import Any

import pytest

from bot.client import Bot
from bot.storage.records import ModerationEvent
from tests.e2e.conftest import BotRunner
from tests.loopback.discord_server import MANAGE_GUILD, MANAGE_MESSAGES, FakeDiscord
from tests.loopback.harness import LoopbackDiscord
from tests.tiny_models import NEGATIVE, POSITIVE


class World:
    """A server with a log channel, a member, a moderator role and a member above the bot."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.log_channel = fake.channel("mod-log")
        self.quiet = fake.channel("off-topic")
        self.trusted = fake.add_role("trusted", 0, position=1)
        self.mods = fake.add_role("mods", MANAGE_GUILD | MANAGE_MESSAGES, position=2)
        self.senior = fake.add_role("senior", 0, position=9)  # above the bot's role (5)
        self.member = fake.user("member")
        self.moderator = fake.user("moderator")
        self.vip = fake.user("vip")
        self.regular = fake.user("regular")
        fake.add_member(self.member)
        fake.add_member(self.moderator, [self.mods])
        fake.add_member(self.vip, [self.senior])
        fake.add_member(self.regular, [self.trusted])

    async def configure(self, server: LoopbackDiscord, **options: Any) -> str:
        interaction = await self.fake.slash("moderation", {"configure": options})
        [text] = await server.answer(interaction)
        return text

    async def enable(self, server: LoopbackDiscord, **options: Any) -> None:
        [text] = await server.answer(await self.fake.slash("moderation", {"enable": {}}))
        assert "**on**" in text
        await self.configure(server, log_channel=str(self.log_channel), **options)

    def alerts(self) -> list[dict[str, Any]]:
        return [m for m in self.fake.bot_messages(self.log_channel) if m.get("embeds")]


async def world_and_bot(bots: BotRunner, server: LoopbackDiscord) -> tuple[World, Bot]:
    world = World(server.fake)  # channels and roles exist before the bot connects
    return world, await bots.start()


async def flagged_events(bot: Bot, count: int) -> list[ModerationEvent]:
    events = [await bot.services.moderation.event(i) for i in range(1, count + 1)]
    return [event for event in events if event is not None]


async def test_a_member_without_manage_server_cannot_configure(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake

    refused = await fake.slash("moderation", {"enable": {}}, user=world.member)
    [text] = await discord_server.answer(refused)

    assert refused.ephemeral and "Manage Guild permission" in text
    assert not (await bot.services.moderation.settings(fake.guild_id)).moderation_enabled
    assert int(fake.commands["moderation"]["default_member_permissions"]) == MANAGE_GUILD
    allowed = await fake.slash("moderation", {"status": {}}, user=world.moderator)
    assert "Moderation checks are **off**" in (await discord_server.answer(allowed))[0]


async def test_log_action_posts_an_alert_and_records_the_event(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server)

    await fake.post_message(fake.general, world.member, POSITIVE[0])
    hostile = await fake.post_message(fake.general, world.member, NEGATIVE[0])
    [alert] = await discord_server.wait_for(world.alerts, what="an alert")

    embed = alert["embeds"][0]
    assert embed["url"].endswith(f"/{fake.general}/{hostile['id']}")
    assert embed["description"] == NEGATIVE[0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Author"] == f"<@{world.member['id']}>"
    assert fields["Action"] == "logged"
    label, score = fields["Score"].split()
    assert label == "negative" and float(score) >= 0.9  # the default threshold
    buttons = [c["custom_id"] for row in alert["components"] for c in row["components"]]
    assert buttons == ["mod:dismiss:1", "mod:delete:1", "mod:timeout:1"]
    [event] = await flagged_events(bot, 2)  # the friendly message was not flagged
    assert (event.message_id, event.label, event.action_succeeded) == (
        int(hostile["id"]),
        "negative",
        True,
    )


async def test_react_and_delete_actions(bots: BotRunner, discord_server: LoopbackDiscord) -> None:
    world, _ = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server, action="react")

    reacted = await fake.post_message(fake.general, world.member, NEGATIVE[1])
    await discord_server.wait_for(lambda: fake.reactions, what="a reaction")
    assert fake.reactions[0][:2] == (fake.general, int(reacted["id"]))

    await world.configure(discord_server, action="delete")
    deleted = await fake.post_message(fake.general, world.regular, NEGATIVE[2])
    await discord_server.wait_for(lambda: deleted not in fake.messages[fake.general])
    await discord_server.wait_for(lambda: len(world.alerts()) == 2)
    assert "deleted" in str(world.alerts()[1]["embeds"][0]["fields"])


async def test_timeout_respects_the_role_hierarchy(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server, action="timeout", timeout_minutes=5)

    await fake.post_message(fake.general, world.vip, NEGATIVE[3])
    await discord_server.wait_for(lambda: len(world.alerts()) == 1)
    await fake.post_message(fake.general, world.member, NEGATIVE[3])
    await discord_server.wait_for(lambda: len(world.alerts()) == 2)
    await fake.post_message(fake.general, fake.owner, NEGATIVE[3])
    await discord_server.wait_for(lambda: len(world.alerts()) == 3)

    vip_alert, member_alert, owner_alert = (str(a["embeds"][0]["fields"]) for a in world.alerts())
    assert "at or above mine" in vip_alert
    assert "timed out for 5 min" in member_alert
    assert "the server owner cannot be timed out" in owner_alert
    assert fake.members[int(world.vip["id"])]["communication_disabled_until"] is None
    assert fake.members[int(world.member["id"])]["communication_disabled_until"]
    patches = [r for r in fake.requests if r.method == "PATCH" and "/members/" in r.path]
    assert len(patches) == 1  # the bot did not even try on the senior member
    vip_event, member_event, owner_event = await flagged_events(bot, 3)
    assert member_event.action_succeeded
    assert not vip_event.action_succeeded and not owner_event.action_succeeded


async def test_a_failed_action_is_reported_and_the_event_kept(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    fake.bot_role["permissions"] = "0"  # the bot lost Moderate Members
    await world.enable(discord_server, action="timeout")

    await fake.post_message(fake.general, world.member, NEGATIVE[4])
    [alert] = await discord_server.wait_for(world.alerts, what="an alert")

    assert "missing a permission" in str(alert["embeds"][0]["fields"])
    [event] = await flagged_events(bot, 1)
    assert event.action.value == "timeout" and not event.action_succeeded


async def test_dry_run_records_and_logs_but_does_nothing(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server, action="delete", dry_run=True)

    hostile = await fake.post_message(fake.general, world.member, NEGATIVE[5])
    [alert] = await discord_server.wait_for(world.alerts, what="an alert")

    assert alert["embeds"][0]["title"] == "Flagged message (dry run)"
    assert "dry run: would delete it" in str(alert["embeds"][0]["fields"])
    assert hostile in fake.messages[fake.general]
    assert not [r for r in fake.requests if r.method == "DELETE"]
    [event] = await flagged_events(bot, 1)
    assert event.dry_run


async def test_exemptions_and_edits(bots: BotRunner, discord_server: LoopbackDiscord) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server)
    role = world.trusted
    exempt_role = await fake.slash("moderation", {"exempt": {"role": {"role": role["id"]}}})
    exempt_channel = await fake.slash(
        "moderation", {"exempt": {"channel": {"channel": str(world.quiet)}}}
    )
    assert f"Exempt roles: <@&{role['id']}>" in (await discord_server.answer(exempt_role))[0]
    assert f"<#{world.quiet}>" in (await discord_server.answer(exempt_channel))[0]

    await fake.post_message(fake.general, world.regular, NEGATIVE[6])  # exempt role
    await fake.post_message(world.quiet, world.member, NEGATIVE[6])  # exempt channel
    edited = await fake.post_message(fake.general, world.member, POSITIVE[1])
    await fake.edit_message(edited, NEGATIVE[7])
    [alert] = await discord_server.wait_for(world.alerts, what="the edit to be flagged")

    assert alert["embeds"][0]["description"] == NEGATIVE[7]
    assert [e.message_id for e in await flagged_events(bot, 3)] == [int(edited["id"])]


@pytest.mark.both_backends
async def test_alert_buttons_check_the_clicking_member(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server)
    first = await fake.post_message(fake.general, world.member, NEGATIVE[8])
    await discord_server.wait_for(lambda: len(world.alerts()) == 1)
    second = await fake.post_message(fake.general, world.regular, NEGATIVE[9])
    await discord_server.wait_for(lambda: len(world.alerts()) == 2)
    alert_one, alert_two = world.alerts()

    refused = await fake.click(alert_one, "mod:delete:1", user=world.member)
    [text] = await discord_server.answer(refused)
    assert refused.ephemeral and "Manage Messages permission" in text
    assert first in fake.messages[fake.general]

    deleted = await fake.click(alert_one, "mod:delete:1", user=world.moderator)
    await discord_server.answer(deleted)
    dismissed = await fake.click(alert_two, "mod:dismiss:2", user=world.moderator)
    await discord_server.answer(dismissed)

    assert first not in fake.messages[fake.general] and second in fake.messages[fake.general]
    decision = alert_one["embeds"][0]["fields"][-1]
    assert decision == {
        "name": "Decision",
        "value": f"deleted by <@{world.moderator['id']}>",
        "inline": False,
    }
    assert alert_one["components"] == []  # the buttons are gone once decided
    one, two = await flagged_events(bot, 2)
    assert (one.decision, one.decided_by) == ("deleted", int(world.moderator["id"]))
    assert two.decision == "dismissed"


async def test_a_burst_of_100_messages_is_checked_in_batches_without_flooding(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server, action="react")
    raiders = [fake.user(f"raider{i}") for i in range(12)]
    for raider in raiders:
        fake.add_member(raider)
    checks = bot.services.engine.worker("sentiment")
    batches_before = checks.batches_run

    for i in range(100):
        text = NEGATIVE[i % len(NEGATIVE)] if i % 2 else POSITIVE[i % len(POSITIVE)]
        await fake.post_message(fake.general, raiders[i % 12], text)
    await discord_server.wait_for(lambda: len(fake.reactions) == 50, 60, "50 reactions")

    assert len(await flagged_events(bot, 60)) == 50  # every hostile one, none of the others
    assert checks.batches_run - batches_before < 50  # messages shared batches
    posted = fake.bot_messages(world.log_channel)
    alerts = [m for m in posted if m.get("embeds")]
    # 6 hostile authors: one alert each (later flags grouped into it), well under the cap.
    assert len(alerts) == 6
    assert all("more flagged from this author" in a["embeds"][0]["footer"]["text"] for a in alerts)


@pytest.mark.both_backends
async def test_stats_counts_and_charts(bots: BotRunner, discord_server: LoopbackDiscord) -> None:
    world, _ = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server)
    for text in NEGATIVE[:3]:
        await fake.post_message(fake.general, world.member, text)
    await discord_server.wait_for(lambda: len(world.alerts()) == 1)
    await discord_server.wait_for(
        lambda: "+2 more" in world.alerts()[0]["embeds"][0]["footer"]["text"]
    )

    stats = await fake.slash("moderation", {"stats": {"days": 7}})
    [text] = await discord_server.answer(stats, timeout=30)

    assert stats.ephemeral
    assert "last 7 days**: 3 flagged" in text
    assert "By action: log 3" in text and f"<#{fake.general}> 3" in text
    [attachment] = stats.original["attachments"]  # type: ignore[index]
    assert attachment["filename"] == "moderation.png"
