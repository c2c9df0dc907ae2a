"""/catchup: what you missed in this channel since your last message (only you see it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import Bot
from bot.cogs.first_use import first_use
from bot.cogs.places import kind_of, location
from bot.cogs.summarize import as_channel_message
from bot.errors import InvalidInputError
from bot.formatting import NO_MENTIONS, fit_embed, join_within, truncate
from bot.services.catchup import READ_LIMIT, Catchup, Post, catch_up

# Room in the embed's 4096-character description for each part (links are ~90 characters).
FOR_YOU_CHARS = 2300
REST_CHARS = 1500
EXCERPT_CHARS = 140


def as_post(message: discord.Message) -> Post:
    """What catch-up needs of a Discord message."""
    replied = message.reference.resolved if message.reference else None
    return Post(
        as_channel_message(message),
        author_id=message.author.id,
        mentions=frozenset(message.raw_mentions),
        reply_to_author_id=replied.author.id if isinstance(replied, discord.Message) else None,
    )


def catchup_embed(result: Catchup, guild_id: int, channel_id: int, where: str) -> discord.Embed:
    """Mentions and replies first (with jump links), then the rest summarised or listed."""
    base = f"https://discord.com/channels/{guild_id}/{channel_id}"

    def line(post: Post) -> str:
        message = post.message
        text = truncate(message.content, EXCERPT_CHARS) or "(attachment)"
        return f"• **{message.author_name}** [→]({base}/{message.id}): {text}"

    if result.last_seen is not None:
        title = f"{_count(result.read, 'new message')} in this {where} since yours"
        intro = f"You last wrote here {discord.utils.format_dt(result.last_seen, 'R')}."
    else:
        title = f"The last {result.read} messages in this {where}"
        intro = f"You haven't written in the last {READ_LIMIT} messages here."
    parts = [intro]
    if result.for_you:
        lines = [line(post) for post in result.for_you]
        if result.more_for_you:
            lines.insert(0, f"({result.more_for_you} older ones not shown)")
        parts.append("**Mentions of you and replies to you**")
        parts.append(join_within(lines, FOR_YOU_CHARS, separator="\n"))
    else:
        parts.append("Nobody mentioned you or replied to you.")
    if result.summary is not None:
        bullets = [
            f"• {truncate(b.text, 300)} [→]({base}/{b.message_id})" for b in result.summary.bullets
        ]
        parts.append(f"**The other {result.summary.messages_used} messages, summarised**")
        parts.append(join_within(bullets, REST_CHARS, separator="\n"))
    elif result.listed:
        parts.append("**The rest**")
        parts.append(join_within([line(post) for post in result.listed], REST_CHARS, "\n"))
    embed = discord.Embed(title=title, description="\n".join(parts))
    footer = f"Reads at most the last {READ_LIMIT} messages; bots' messages are not summarised."
    embed.set_footer(text=footer)
    return fit_embed(embed)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


class CatchupCog(commands.Cog):
    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    @app_commands.command(
        name="catchup", description="What you missed here since your last message (only you)"
    )
    @app_commands.guild_only()
    @app_commands.checks.has_permissions(view_channel=True, read_message_history=True)
    async def catchup(self, interaction: discord.Interaction) -> None:
        guild_id, channel_id = location(interaction)
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            raise InvalidInputError("I can only catch you up in text channels and threads.")
        self.bot.services.cooldowns.hit((interaction.user.id, "catchup"))
        await interaction.response.defer(ephemeral=True, thinking=True)

        async def newest_first() -> AsyncIterator[Post]:
            async for message in channel.history(limit=READ_LIMIT):
                yield as_post(message)

        engine = self.bot.services.engine
        async with first_use(interaction, engine, "summarization", "sentiment"):
            result = await catch_up(
                self.bot.services.summaries, interaction.user.id, newest_first()
            )
        where = kind_of(channel)
        if result.is_empty:
            text = (
                f"Nothing new in this {where} since your last message."
                if result.last_seen is not None
                else f"There are no messages in this {where} yet."
            )
            await interaction.followup.send(text, ephemeral=True)
            return
        embed = catchup_embed(result, guild_id, channel_id, where)
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: Bot) -> None:
    await bot.add_cog(CatchupCog(bot))
