"""/catchup over the loopback Discord: mentions and replies first, the rest summarised."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.client import Bot
from bot.services.catchup import READ_LIMIT
from tests.e2e.test_sentiment_summarize import NEGATIVE, POSITIVE
from tests.loopback.discord_server import FakeDiscord, Interaction
from tests.loopback.harness import LoopbackDiscord

CHATTER = [*POSITIVE, *NEGATIVE]


class Channel:
    """Writes a channel's past: messages a minute apart, ending a minute ago."""

    def __init__(self, fake: FakeDiscord, channel_id: int, count: int) -> None:
        self.fake = fake
        self.channel_id = channel_id
        self.at = datetime.now(UTC) - timedelta(minutes=count + 1)

    def say(self, author: dict[str, Any], content: str, **extra: Any) -> dict[str, Any]:
        self.at += timedelta(minutes=1)
        message = self.fake.message_payload(self.channel_id, author, content, self.at, **extra)
        self.fake.messages[self.channel_id].append(message)
        return message

    def reply(self, author: dict[str, Any], to: dict[str, Any], content: str) -> dict[str, Any]:
        reference = {"message_id": to["id"], "channel_id": to["channel_id"]}
        return self.say(
            author, content, type=19, message_reference=reference, referenced_message=to
        )


def people(fake: FakeDiscord, *names: str) -> list[dict[str, Any]]:
    users = [fake.user(name) for name in names]
    for user in users:
        fake.add_member(user)
    return users


def history_reads(fake: FakeDiscord, channel_id: int) -> list[dict[str, str]]:
    return [
        r.query
        for r in fake.requests
        if r.method == "GET" and r.path.endswith(f"/channels/{channel_id}/messages")
    ]


async def shown(server: LoopbackDiscord, interaction: Interaction) -> dict[str, Any]:
    await server.answer(interaction, timeout=60)
    assert interaction.ephemeral  # only the caller sees it
    [embed] = (interaction.followups or [interaction.original])[0]["embeds"]  # type: ignore[index]
    return dict(embed)


async def test_catchup_lists_mentions_and_replies_first_then_summarises_the_rest(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    alice, bob, carol = people(fake, "alice", "bob", "carol")
    past = Channel(fake, fake.general, 160)
    for i in range(140):  # older than alice's last message: not read
        past.say(bob, CHATTER[i % len(CHATTER)])
    hers = past.say(alice, "i will be back tonight, keep the plans going")
    expected_for_her = []
    for i in range(15):
        past.say([bob, carol][i % 2], CHATTER[i % len(CHATTER)])
        if i == 4:
            expected_for_her.append(past.reply(carol, hers, "sure, we will wait for you"))
        if i == 9:
            mention = f"<@{alice['id']}> what do you think about saturday?"
            expected_for_her.append(past.say(bob, mention, mentions=[alice]))
    past.say(fake.bot_user, "a bot answer that mentions nobody")

    embed = await shown(discord_server, await fake.slash("catchup", user=alice))

    assert embed["title"] == "18 new messages in this channel since yours"
    lines = embed["description"].splitlines()
    assert lines[0].startswith("You last wrote here <t:")
    assert lines[1] == "**Mentions of you and replies to you**"
    base = f"https://discord.com/channels/{fake.guild_id}/{fake.general}"
    for line, message in zip(lines[2:4], expected_for_her, strict=True):
        author = message["author"]["username"]
        assert line.startswith(f"• **{author}** [→]({base}/{message['id']}): ")
    assert lines[4] == "**The other 15 messages, summarised**"
    bullets = lines[5:]
    assert 1 <= len(bullets) <= 8 and all(b.startswith("• ") for b in bullets)
    read_ids = {m["id"] for m in fake.messages[fake.general][-18:]}
    assert all(b.rsplit("/", 1)[-1].rstrip(")") in read_ids for b in bullets)
    assert len(history_reads(fake, fake.general)) == 1  # stopped at her message
    assert len(embed["description"]) <= 4096


async def test_catchup_reads_at_most_its_limit_and_says_so(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    newcomer, bob = people(fake, "newcomer", "bob")
    channel = fake.channel("busy")
    past = Channel(fake, channel, READ_LIMIT + 50)
    for i in range(READ_LIMIT + 50):
        past.say(bob, CHATTER[i % len(CHATTER)])

    embed = await shown(
        discord_server, await fake.slash("catchup", user=newcomer, channel_id=channel)
    )

    assert embed["title"] == f"The last {READ_LIMIT} messages in this channel"
    lines = embed["description"].splitlines()
    assert lines[:2] == [
        f"You haven't written in the last {READ_LIMIT} messages here.",
        "Nobody mentioned you or replied to you.",
    ]
    assert lines[2] == f"**The other {READ_LIMIT} messages, summarised**"
    assert [q["limit"] for q in history_reads(fake, channel)] == ["100", "100"]


async def test_catchup_in_a_quiet_thread_lists_what_little_there_is(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    alice, bob = people(fake, "alice", "bob")
    thread = await fake.open_thread(fake.general, "plans")
    past = Channel(fake, thread, 4)
    past.say(alice, "anyone?")
    answers = [past.say(bob, "yes"), past.say(bob, "we meet at eight at the station, bring a coat")]

    embed = await shown(discord_server, await fake.slash("catchup", user=alice, channel_id=thread))
    assert embed["title"] == "2 new messages in this thread since yours"
    base = f"https://discord.com/channels/{fake.guild_id}/{thread}"
    assert embed["description"].splitlines()[-3:] == [
        "**The rest**",
        *(f"• **bob** [→]({base}/{m['id']}): {m['content']}" for m in answers),
    ]
    assert bot.services.engine.worker("summarization").batches_run == 0  # read, not summarised

    past.say(alice, "thanks")
    nothing = await fake.slash("catchup", user=alice, channel_id=thread)
    assert await discord_server.answer(nothing) == [
        "Nothing new in this thread since your last message."
    ]
    assert nothing.ephemeral
