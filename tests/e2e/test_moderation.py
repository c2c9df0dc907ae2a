"""Moderation checks over the loopback Discord: commands, actions, alerts, buttons, bursts."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from typing import Any, cast

import pytest
from sqlalchemy.engine import make_url

from bot.client import Bot
from bot.cogs.moderation import ModerationCog
from bot.cogs.moderation.access import CANNOT_QUOTE
from bot.storage.records import ModerationEvent
from tests.e2e.conftest import BotRunner
from tests.loopback.discord_server import (
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    MODERATE_MEMBERS,
    VIEW_CHANNEL,
    FakeDiscord,
    Interaction,
    RecordedRequest,
)
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


async def test_exempt_channels_exempt_their_threads_and_forums_can_be_exempt(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    world = World(fake)
    forum = fake.channel("questions")
    fake.channels[forum]["type"] = 15  # a forum: every post is a thread
    quiet_thread = fake.thread(world.quiet, "banter")
    forum_post = fake.thread(forum, "why is the sky blue")
    general_thread = fake.thread(fake.general, "help")
    bot = await bots.start()
    await world.enable(discord_server)
    for channel in (world.quiet, forum):
        exempt = await fake.slash("moderation", {"exempt": {"channel": {"channel": str(channel)}}})
        assert f"<#{channel}>" in (await discord_server.answer(exempt))[0]

    await fake.post_message(quiet_thread, world.member, NEGATIVE[0])
    await fake.post_message(forum_post, world.member, NEGATIVE[1])
    checked = await fake.post_message(general_thread, world.member, NEGATIVE[2])
    [alert] = await discord_server.wait_for(world.alerts, what="the alert of the checked thread")

    assert alert["embeds"][0]["url"].endswith(f"/{general_thread}/{checked['id']}")
    assert [e.message_id for e in await flagged_events(bot, 3)] == [int(checked["id"])]


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


# --- the alert buttons, as Discord would check the clicking member --------------------


class Ranks(World):
    """World plus moderators below and above a member, and the bot's role (5) between."""

    def __init__(self, fake: FakeDiscord) -> None:
        super().__init__(fake)
        junior = fake.add_role("junior-mods", MODERATE_MEMBERS | MANAGE_MESSAGES, position=3)
        veteran = fake.add_role("veteran", 0, position=4)
        lead = fake.add_role("lead-mods", MODERATE_MEMBERS | MANAGE_MESSAGES, position=7)
        self.junior_mod, self.veteran, self.lead_mod = (
            fake.user("junior"),
            fake.user("veteran"),
            fake.user("lead"),
        )
        fake.add_member(self.junior_mod, [junior])
        fake.add_member(self.veteran, [veteran])
        fake.add_member(self.lead_mod, [lead])


def buttons(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message.get("components") or [] for c in row["components"]]


def decision_of(alert: dict[str, Any]) -> str | None:
    fields = {f["name"]: f["value"] for f in alert["embeds"][0].get("fields") or []}
    return fields.get("Decision")


def member_patches(fake: FakeDiscord) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.method == "PATCH" and "/members/" in r.path]


def requests_after(fake: FakeDiscord, interaction: Interaction) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.at >= interaction.created_at]


def moderation_cog(bot: Bot) -> ModerationCog:
    # load_extension imports the module afresh, so isinstance against ours would fail.
    cog = bot.get_cog("Moderation")
    assert type(cog).__name__ == ModerationCog.__name__
    return cast(ModerationCog, cog)


async def test_timeout_button_follows_the_clicking_members_rank(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world = Ranks(discord_server.fake)
    bot = await bots.start()
    fake = discord_server.fake
    await world.enable(discord_server)
    await fake.post_message(fake.general, world.veteran, NEGATIVE[0])  # ranked 4
    [alert] = await discord_server.wait_for(world.alerts, what="an alert")

    refused = await fake.click(alert, "mod:timeout:1", user=world.junior_mod)  # ranked 3
    [text] = await discord_server.answer(refused)
    assert refused.ephemeral and "below yours" in text
    assert not member_patches(fake)
    assert len(buttons(alert)) == 3 and decision_of(alert) is None
    assert (await bot.services.moderation.event(1)).decision is None  # type: ignore[union-attr]

    done = await fake.click(alert, "mod:timeout:1", user=world.lead_mod)  # ranked 7
    await discord_server.answer(done)
    assert fake.members[int(world.veteran["id"])]["communication_disabled_until"]
    assert decision_of(alert) == f"timed out by <@{world.lead_mod['id']}>"
    assert buttons(alert) == []
    # The click was acknowledged (deferred) before the bot looked anything up.
    first = requests_after(fake, done)[0]
    assert first.path.endswith(f"/interactions/{done.id}/{done.token}/callback")
    assert first.body["type"] == 6

    # Nobody, the owner included, times out a member ranked at or above the bot.
    await fake.post_message(fake.general, world.vip, NEGATIVE[1])  # ranked 9
    await discord_server.wait_for(lambda: len(world.alerts()) == 2)
    above = await fake.click(world.alerts()[1], "mod:timeout:2", user=fake.owner)
    [text] = await discord_server.answer(above)
    assert "at or above mine" in text and len(member_patches(fake)) == 1


async def test_delete_button_needs_manage_messages_in_the_flagged_channel(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    world = World(fake)
    log_mods = fake.add_role("log-mods", 0, position=3)
    helper = fake.user("helper")
    fake.add_member(helper, [log_mods])
    # Manage Messages only in the log channel; the mods lose it in #off-topic.
    fake.set_overwrite(world.log_channel, log_mods["id"], allow=MANAGE_MESSAGES)
    fake.set_overwrite(world.quiet, world.mods["id"], deny=MANAGE_MESSAGES)
    bot = await bots.start()
    await world.enable(discord_server)
    in_general = await fake.post_message(fake.general, world.member, NEGATIVE[2])
    await discord_server.wait_for(lambda: len(world.alerts()) == 1)
    in_quiet = await fake.post_message(world.quiet, world.regular, NEGATIVE[3])
    await discord_server.wait_for(lambda: len(world.alerts()) == 2)
    general_alert, quiet_alert = world.alerts()

    refused = await fake.click(general_alert, "mod:delete:1", user=helper)
    [text] = await discord_server.answer(refused)
    assert f"Manage Messages permission in <#{fake.general}>" in text
    refused = await fake.click(quiet_alert, "mod:delete:2", user=world.moderator)
    [text] = await discord_server.answer(refused)
    assert f"Manage Messages permission in <#{world.quiet}>" in text
    assert in_general in fake.messages[fake.general] and in_quiet in fake.messages[world.quiet]
    assert len(buttons(general_alert)) == len(buttons(quiet_alert)) == 3

    fake.set_overwrite(fake.general, log_mods["id"], allow=MANAGE_MESSAGES)
    await fake.update_channel(fake.general)
    await discord_server.wait_for(
        lambda: bot.get_channel(fake.general).overwrites  # type: ignore[union-attr]
    )
    allowed = await fake.click(general_alert, "mod:delete:1", user=helper)
    await discord_server.answer(allowed)
    assert in_general not in fake.messages[fake.general]
    assert decision_of(general_alert) == f"deleted by <@{helper['id']}>"


async def test_delete_button_works_in_threads_and_channels_the_bot_has_not_cached(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    world = World(fake)
    thread = fake.thread(fake.general, "help")
    uncached = fake.channel("archive", cached=False)
    bot = await bots.start()
    await world.enable(discord_server)
    late_thread = await fake.open_thread(fake.general, "later")
    await discord_server.wait_for(lambda: bot.get_channel(late_thread) is not None)
    assert bot.get_channel(uncached) is None

    flagged = []
    for index, (channel, author) in enumerate(
        [(thread, world.member), (uncached, world.regular), (late_thread, world.vip)], start=1
    ):
        flagged.append(await fake.post_message(channel, author, NEGATIVE[index]))
        await discord_server.wait_for(lambda: len(world.alerts()) == len(flagged))

    for index, (alert, message) in enumerate(zip(world.alerts(), flagged, strict=True), start=1):
        clicked = await fake.click(alert, f"mod:delete:{index}", user=world.moderator)
        await discord_server.answer(clicked)
        assert message not in fake.messages[int(message["channel_id"])]
        assert decision_of(alert) == f"deleted by <@{world.moderator['id']}>"
    # The uncached channel is public: the bot fetched it to know, and quoted the message.
    assert world.alerts()[1]["embeds"][0]["description"] == NEGATIVE[2]


async def test_a_failed_button_action_is_not_recorded_and_the_buttons_stay(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    world = World(fake)
    fake.set_overwrite(fake.general, fake.bot_role["id"], deny=MANAGE_MESSAGES)
    bot = await bots.start()
    await world.enable(discord_server)
    hostile = await fake.post_message(fake.general, world.member, NEGATIVE[7])
    [alert] = await discord_server.wait_for(world.alerts, what="an alert")

    failed = await fake.click(alert, "mod:delete:1", user=world.moderator)
    [text] = await discord_server.answer(failed)

    assert failed.ephemeral and "I am missing the Manage Messages permission" in text
    assert hostile in fake.messages[fake.general]
    assert len(buttons(alert)) == 3 and decision_of(alert) is None
    assert (await bot.services.moderation.event(1)).decision is None  # type: ignore[union-attr]
    fake.set_overwrite(fake.general, fake.bot_role["id"])  # the permission is back
    again = await fake.click(alert, "mod:delete:1", user=world.moderator)
    await discord_server.answer(again)
    assert hostile not in fake.messages[fake.general] and buttons(alert) == []


async def test_two_moderators_clicking_at_once_act_once(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world = Ranks(discord_server.fake)
    bot = await bots.start()
    fake = discord_server.fake
    await world.enable(discord_server)
    await fake.post_message(fake.general, world.member, NEGATIVE[8])
    [alert] = await discord_server.wait_for(world.alerts, what="an alert")

    clicks = [
        await fake.click(alert, "mod:timeout:1", user=clicker)
        for clicker in (world.lead_mod, fake.owner)
    ]
    [second] = await discord_server.wait_for(
        lambda: [c for c in clicks if c.followups], what="the second click's answer"
    )
    for click in clicks:
        await discord_server.answer(click)

    assert len(member_patches(fake)) == 1
    assert "already handled: timed out by" in second.followups[0]["content"]
    event = await bot.services.moderation.event(1)
    assert event is not None and event.decision == "timed out"
    assert event.decided_by == next(c.user_id for c in clicks if c is not second)
    assert buttons(alert) == []


async def test_a_later_flag_joins_a_decided_alert_without_erasing_the_decision(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, _ = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server)
    await fake.post_message(fake.general, world.member, NEGATIVE[9])
    [alert] = await discord_server.wait_for(world.alerts, what="an alert")
    dismissed = await fake.click(alert, "mod:dismiss:1", user=world.moderator)
    await discord_server.answer(dismissed)

    await fake.post_message(fake.general, world.member, NEGATIVE[10])
    await discord_server.wait_for(
        lambda: "+1 more" in alert["embeds"][0]["footer"]["text"], what="the flag to join"
    )

    assert decision_of(alert) == f"dismissed by <@{world.moderator['id']}>"
    assert buttons(alert) == []


async def test_a_flag_after_its_alert_was_deleted_gets_a_new_alert(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, _ = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server)
    await fake.post_message(fake.general, world.member, NEGATIVE[0])
    [first] = await discord_server.wait_for(world.alerts, what="an alert")
    await fake.delete_messages(world.log_channel, [first])  # a moderator tidies the log

    later = await fake.post_message(fake.general, world.member, NEGATIVE[1])
    [alert] = await discord_server.wait_for(world.alerts, what="a new alert")
    await fake.post_message(fake.general, world.member, NEGATIVE[2])
    await discord_server.wait_for(
        lambda: "+1 more" in alert["embeds"][0].get("footer", {}).get("text", ""),
        what="the next flag to join the new alert",
    )

    assert alert["embeds"][0]["url"].endswith(f"/{later['id']}")
    assert alert["embeds"][0]["description"] == NEGATIVE[1]
    assert len(world.alerts()) == 1


async def test_a_flag_after_a_failed_alert_gets_an_alert_of_its_own(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, _ = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server)
    fake.fail_with("POST", f"/channels/{world.log_channel}/messages$", 403)
    await fake.post_message(fake.general, world.member, NEGATIVE[0])
    await discord_server.wait_for(lambda: not fake.failures, what="the alert to fail")

    later = await fake.post_message(fake.general, world.member, NEGATIVE[1])
    [alert] = await discord_server.wait_for(world.alerts, what="an alert")

    assert alert["embeds"][0]["url"].endswith(f"/{later['id']}")
    assert "more flagged" not in alert["embeds"][0].get("footer", {}).get("text", "")


# --- what alerts quote --------------------------------------------------------------


async def test_alerts_quote_only_what_the_log_channels_readers_can_see(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    world = World(fake)
    everyone = fake.guild_id
    helpers = fake.add_role("helpers", 0, position=3)

    def restricted(name: str, *roles: dict[str, Any]) -> int:
        channel = fake.channel(name)
        fake.set_overwrite(channel, everyone, deny=VIEW_CHANNEL)
        for role in (*roles, fake.bot_role):  # the bot reads and posts there too
            fake.set_overwrite(channel, role["id"], allow=VIEW_CHANNEL)
        return channel

    staff = restricted("staff", world.mods)
    staff_log = restricted("staff-log", world.mods)
    mixed_log = restricted("mixed-log", world.mods, helpers)
    staff_thread = fake.thread(staff, "staff-thread")
    private_thread = fake.thread(fake.general, "secret", private=True)
    authors = [fake.user(f"author{i}") for i in range(6)]
    for author in authors:
        fake.add_member(author)
    await bots.start()
    await world.enable(discord_server)  # the log channel is readable by everyone

    async def excerpt(channel: int, author: int, log: int) -> str:
        message = await fake.post_message(channel, authors[author], NEGATIVE[author])
        alert = await discord_server.wait_for(
            lambda: next(
                (
                    m
                    for m in fake.bot_messages(log)
                    if m.get("embeds") and m["embeds"][0]["url"].endswith(f"/{message['id']}")
                ),
                None,
            ),
            what="an alert",
        )
        description: str = alert["embeds"][0]["description"]
        return description

    log = world.log_channel
    assert await excerpt(staff, 0, log) == CANNOT_QUOTE
    assert await excerpt(staff_thread, 1, log) == CANNOT_QUOTE
    assert await excerpt(private_thread, 2, log) == CANNOT_QUOTE
    assert await excerpt(fake.general, 3, log) == NEGATIVE[3]
    await world.configure(discord_server, log_channel=str(staff_log))
    assert await excerpt(staff, 4, staff_log) == NEGATIVE[4]  # the same readers
    await world.configure(discord_server, log_channel=str(mixed_log))
    assert await excerpt(staff, 5, mixed_log) == CANNOT_QUOTE  # helpers read the log only


async def test_alerts_do_not_quote_to_a_mix_of_roles_that_reads_the_log_only(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    world = World(fake)
    helpers = fake.add_role("helpers", 0, position=3)
    newbies = fake.add_role("newbies", 0, position=1)
    helper_log = fake.channel("helper-log")
    fake.set_overwrite(helper_log, fake.guild_id, deny=VIEW_CHANNEL)
    fake.set_overwrite(helper_log, helpers["id"], allow=VIEW_CHANNEL)
    fake.set_overwrite(helper_log, fake.bot_role["id"], allow=VIEW_CHANNEL)  # the bot posts there
    veterans = fake.channel("veterans")
    fake.set_overwrite(veterans, newbies["id"], deny=VIEW_CHANNEL)
    lounge = fake.channel("lounge")
    banned = fake.user("banned-helper")
    fake.add_member(banned, [helpers])
    fake.set_overwrite(lounge, banned["id"], member=True, deny=VIEW_CHANNEL)
    fake.add_member(fake.user("new-helper"), [helpers, newbies])  # reads the log, not veterans
    await bots.start()
    await world.enable(discord_server)
    await world.configure(discord_server, log_channel=str(helper_log))

    quoted = []
    for count, (channel, author) in enumerate(
        [(veterans, world.member), (lounge, world.regular), (fake.general, world.vip)], start=1
    ):
        message = await fake.post_message(channel, author, NEGATIVE[count])
        alerts = await discord_server.wait_for(
            lambda n=count: (
                len(fake.bot_messages(helper_log)) == n and fake.bot_messages(helper_log)
            ),
            what="an alert",
        )
        [embed] = alerts[-1]["embeds"]
        assert embed["url"].endswith(f"/{channel}/{message['id']}")
        quoted.append(embed["description"])

    assert quoted == [CANNOT_QUOTE, CANNOT_QUOTE, NEGATIVE[3]]


# --- checks that failed are tried again ---------------------------------------------


async def test_a_check_that_timed_out_is_retried_later(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server)
    cog = moderation_cog(bot)
    cog.backlog.delays_s = (0.2, 0.2, 0.2)
    worker = bot.services.engine.worker("sentiment")
    await worker.ensure_loaded()
    patient = worker.limits
    worker.limits = replace(patient, timeout_s=1e-6)  # every check times out now

    hostile = await fake.post_message(fake.general, world.member, NEGATIVE[0])
    await discord_server.wait_for(lambda: cog.backlog.waiting(fake.guild_id) == 1)
    worker.limits = patient
    [alert] = await discord_server.wait_for(world.alerts, what="the retried check's alert")

    assert alert["embeds"][0]["url"].endswith(f"/{hostile['id']}")
    assert cog.backlog.lost(fake.guild_id) == 0 and cog.backlog.waiting(fake.guild_id) == 0


async def test_a_flag_the_database_could_not_store_is_retried_not_lost(
    bots: BotRunner, discord_server: LoopbackDiscord, database_url: str
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server, action="delete")
    cog = moderation_cog(bot)
    cog.backlog.delays_s = (0.2,) * 5
    # Another process holds the database's write lock longer than the bot waits for it.
    blocker = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        discord_server.errors.expect(1)  # the repository logs the failure once, at ERROR
        hostile = await fake.post_message(fake.general, world.member, NEGATIVE[0])
        await discord_server.wait_for(
            lambda: cog.backlog.waiting(fake.guild_id) == 1, 20, "the flag to wait for a retry"
        )
        assert hostile in fake.messages[fake.general]  # nothing was done before it was stored
    finally:
        blocker.rollback()
        blocker.close()

    [alert] = await discord_server.wait_for(world.alerts, 20, "the retried flag's alert")

    assert alert["embeds"][0]["url"].endswith(f"/{hostile['id']}")
    assert hostile not in fake.messages[fake.general]
    [event] = await flagged_events(bot, 1)
    assert event.message_id == int(hostile["id"]) and event.action_succeeded
    assert cog.backlog.lost(fake.guild_id) == 0


async def test_messages_that_could_not_be_checked_are_counted_in_status(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server)
    cog = moderation_cog(bot)
    cog.backlog.delays_s, cog.backlog.limit = (0.05, 0.05), 1
    worker = bot.services.engine.worker("sentiment")
    worker.limits = replace(worker.limits, timeout_s=1e-6)

    for text in NEGATIVE[:3]:
        await fake.post_message(fake.general, world.member, text)
    await discord_server.wait_for(
        lambda: cog.backlog.lost(fake.guild_id) == 3 and not cog.backlog.waiting(fake.guild_id),
        what="three checks given up",
    )
    [text] = await discord_server.answer(await fake.slash("moderation", {"status": {}}))

    assert (
        "Could not be checked (model or database busy or down, counted since the bot started): 3"
        in text
    )
    assert not world.alerts()


async def test_status_with_many_exemptions_and_lost_checks_fits_in_one_message(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server)
    await bot.services.moderation.configure(
        fake.guild_id,
        exempt_role_ids=frozenset(10**18 + i for i in range(200)),
        exempt_channel_ids=frozenset(2 * 10**18 + i for i in range(200)),
    )
    cog = moderation_cog(bot)
    cog.backlog.limit = 0  # nothing can wait: every failed check is counted as lost
    worker = bot.services.engine.worker("sentiment")
    worker.limits = replace(worker.limits, timeout_s=1e-6)
    await fake.post_message(fake.general, world.member, NEGATIVE[0])
    await discord_server.wait_for(lambda: cog.backlog.lost(fake.guild_id) == 1)

    status = await fake.slash("moderation", {"status": {}})
    [text] = await discord_server.answer(status)

    assert len(text) <= 2000
    assert "Exempt roles: <@&1000000000000000000>, " in text
    assert re.search(r"… and \d+ more - exempt channels: <#2000000000000000000>, ", text)
    assert text.endswith("counted since the bot started): 1")


async def test_leaving_a_server_drops_its_moderation_memory(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    world, bot = await world_and_bot(bots, discord_server)
    fake = discord_server.fake
    await world.enable(discord_server)
    cog, gate = moderation_cog(bot), bot.services.moderation.gate
    cog.backlog.delays_s = (60.0,)
    await fake.post_message(fake.general, world.member, NEGATIVE[0])
    await discord_server.wait_for(world.alerts, what="an alert")
    worker = bot.services.engine.worker("sentiment")
    worker.limits = replace(worker.limits, timeout_s=1e-6)
    await fake.post_message(fake.general, world.regular, NEGATIVE[1])
    await discord_server.wait_for(lambda: cog.backlog.waiting(fake.guild_id) == 1)
    assert len(cog.alerts) == 1 and gate.tracked() == 2  # the author and the guild

    await fake.remove_bot()

    await discord_server.wait_for(
        lambda: (len(cog.alerts), gate.tracked(), cog.backlog.waiting(fake.guild_id)) == (0, 0, 0),
        what="the guild to be forgotten",
    )
