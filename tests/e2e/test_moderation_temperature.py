"""Heated channels over the loopback Discord: one alert per heated period, slowmode and back."""

from __future__ import annotations

from typing import Any, cast

import pytest

from bot.cogs.moderation import ModerationCog
from bot.services.moderation import temperature
from tests.e2e.conftest import BotRunner
from tests.e2e.test_moderation import World, world_and_bot
from tests.loopback.discord_server import MANAGE_CHANNELS
from tests.loopback.harness import LoopbackDiscord
from tests.tiny_models import NEGATIVE, POSITIVE

HEAT_TITLE = "A channel is heating up"


def heat_alerts(world: World) -> list[dict[str, Any]]:
    return [a for a in world.alerts() if a["embeds"][0].get("title") == HEAT_TITLE]


def buttons(alert: dict[str, Any]) -> list[str]:
    return [b["custom_id"] for row in alert["components"] for b in row["components"]]


async def heat_up(world: World, server: LoopbackDiscord, channel: int) -> dict[str, Any]:
    """Half of a channel's messages hostile: the level is 50 %, so it heats up once."""
    fake = server.fake
    for text in POSITIVE[:4]:
        await fake.post_message(channel, world.regular, text)
    for text in NEGATIVE:
        await fake.post_message(channel, world.member, text)
    [alert] = await server.wait_for(lambda: heat_alerts(world), what="the heat alert")
    return alert


@pytest.fixture
def short_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(temperature, "MINUTE_S", 1.0)


def add_keeper(server: LoopbackDiscord, *, bot_may_manage_channels: bool = True) -> dict[str, Any]:
    """A member who may manage channels (made before the bot connects, as its role is)."""
    fake = server.fake
    if bot_may_manage_channels:
        fake.bot_role["permissions"] = str(int(fake.bot_role["permissions"]) | MANAGE_CHANNELS)
    keeper = fake.user("keeper")
    fake.add_member(keeper, [fake.add_role("channel-mods", MANAGE_CHANNELS, position=3)])
    return keeper


async def test_a_heated_channel_gets_one_alert_and_its_slowmode_is_lifted_later(
    bots: BotRunner,
    discord_server: LoopbackDiscord,
    short_minutes: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = discord_server.fake
    keeper = add_keeper(discord_server)
    world, bot = await world_and_bot(bots, discord_server)
    await world.enable(discord_server, temperature=50, slowmode_minutes=2)
    tracker = bot.services.moderation.temperature
    heated: list[bool] = []  # what each checked message did to the channel's temperature
    observe = tracker.observe

    def observed(*args: Any) -> bool:
        heated.append(observe(*args))
        return heated[-1]

    monkeypatch.setattr(tracker, "observe", observed)

    alert = await heat_up(world, discord_server, fake.general)
    for text in NEGATIVE[:6]:  # still heated: no second alert
        await fake.post_message(fake.general, world.member, text)
    await discord_server.wait_for(lambda: len(heated) == 22, what="the later messages checked")

    assert heated.count(True) == 1 and len(heat_alerts(world)) == 1
    assert f"<#{fake.general}>" in alert["embeds"][0]["description"]
    assert buttons(alert) == [
        f"heat:{key}:{fake.general}" for key in ("slowmode", "note", "dismiss")
    ]

    refused = await fake.click(alert, f"heat:slowmode:{fake.general}", user=world.member)
    [text] = await discord_server.answer(refused)
    assert refused.ephemeral and "Manage Channels" in text
    assert fake.channel_edits == []

    slowed = await fake.click(alert, f"heat:slowmode:{fake.general}", user=keeper)
    await discord_server.wait_for(
        lambda: buttons(alert) == [f"heat:{key}:{fake.general}" for key in ("note", "dismiss")],
        what="the slowmode button gone",
    )
    assert fake.channel_edits[0] == (fake.general, 30)
    assert not slowed.followups  # no error
    assert alert["embeds"][0]["fields"][0]["name"] == "Slowmode"

    noted = await fake.click(alert, f"heat:note:{fake.general}", user=keeper)
    await discord_server.wait_for(lambda: len(buttons(alert)) == 1, what="the note button gone")
    notes = [m for m in fake.bot_messages(fake.general) if "take a breath" in m["content"]]
    assert len(notes) == 1 and not noted.followups

    # Two slowmode minutes of one second each: then it is lifted again.
    await discord_server.wait_for(
        lambda: fake.channel_edits == [(fake.general, 30), (fake.general, 0)],
        timeout=10,
        what="the slowmode lifted",
    )
    assert fake.channels[fake.general]["rate_limit_per_user"] == 0

    dismissed = await fake.click(alert, f"heat:dismiss:{fake.general}", user=keeper)
    await discord_server.wait_for(lambda: alert["components"] == [], what="the buttons gone")
    assert [f["name"] for f in alert["embeds"][0]["fields"]] == [
        "Slowmode",
        "Cool-down note",
        "Dismissed",
    ]
    assert not dismissed.followups


async def test_a_slowmode_changed_by_a_moderator_meanwhile_is_left_alone(
    bots: BotRunner, discord_server: LoopbackDiscord, short_minutes: None
) -> None:
    fake = discord_server.fake
    keeper = add_keeper(discord_server)
    world, bot = await world_and_bot(bots, discord_server)
    await world.enable(discord_server, temperature=50, slowmode_minutes=3)
    alert = await heat_up(world, discord_server, fake.general)
    cog = cast(ModerationCog, bot.get_cog("Moderation"))

    await fake.click(alert, f"heat:slowmode:{fake.general}", user=keeper)
    await discord_server.wait_for(lambda: cog.heated.lifting == 1, what="the slowmode")
    await fake.update_channel(fake.general, rate_limit_per_user=120)  # a moderator's own change
    await discord_server.wait_for(lambda: cog.heated.lifting == 0, what="the lift's turn")

    assert fake.channel_edits == [(fake.general, 30)]
    assert fake.channels[fake.general]["rate_limit_per_user"] == 120


async def test_a_bot_without_manage_channels_says_so_and_the_channel_stays_as_it_is(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    keeper = add_keeper(discord_server, bot_may_manage_channels=False)
    world, _ = await world_and_bot(bots, discord_server)
    await world.enable(discord_server, temperature=50)
    alert = await heat_up(world, discord_server, fake.general)

    clicked = await fake.click(alert, f"heat:slowmode:{fake.general}", user=keeper)
    [text] = await discord_server.answer(clicked)

    assert clicked.ephemeral and "missing the Manage Channels permission" in text
    assert fake.channels[fake.general].get("rate_limit_per_user", 0) == 0
    assert "heat:slowmode" in " ".join(buttons(alert))  # still there to try again


async def test_a_stricter_slowmode_is_not_loosened(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    keeper = add_keeper(discord_server)
    fake.channels[fake.general]["rate_limit_per_user"] = 120
    world, _ = await world_and_bot(bots, discord_server)
    await world.enable(discord_server, temperature=50)
    alert = await heat_up(world, discord_server, fake.general)

    clicked = await fake.click(alert, f"heat:slowmode:{fake.general}", user=keeper)
    await discord_server.wait_for(lambda: len(buttons(alert)) == 2, what="the button used")

    assert fake.channel_edits == [] and not clicked.followups
    assert fake.channels[fake.general]["rate_limit_per_user"] == 120
    assert alert["embeds"][0]["fields"][0]["value"].startswith("left at 120 s")
