"""/summarize: a text, or the channel's recent discussion with its mood."""

from __future__ import annotations

from datetime import UTC, datetime

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import Bot
from bot.cogs.first_use import first_use
from bot.cogs.waiting import WaitNotice
from bot.errors import InvalidInputError
from bot.formatting import (
    EMBED_DESCRIPTION_LIMIT,
    NO_MENTIONS,
    fit_embed,
    join_within,
    split_message,
    truncate,
)
from bot.inference.fairness import WaitWatch, on_behalf_of
from bot.services.budgets import estimate_tokens
from bot.services.documents import AttachedFile, FileLimits, read_document
from bot.services.summaries import (
    MAX_MAX_LENGTH,
    MAX_MIN_LENGTH,
    MAX_TEXT_CHARS,
    ChannelMessage,
    ChannelSummary,
    parse_duration,
)
from bot.services.waiting import describe_wait


def as_channel_message(message: discord.Message) -> ChannelMessage:
    """What the summarizer needs of a Discord message."""
    return ChannelMessage(
        id=message.id,
        author_name=message.author.display_name,
        content=message.content,
        created_at=message.created_at,
        author_is_bot=message.author.bot,
        has_attachments_or_embeds=bool(message.attachments or message.embeds),
    )


def summary_embed(summary: ChannelSummary, guild_id: int, channel_id: int) -> discord.Embed:
    """Bullets with jump links, the mood, and what was skipped."""
    base = f"https://discord.com/channels/{guild_id}/{channel_id}"
    lines = [f"• {truncate(b.text, 400)} [→]({base}/{b.message_id})" for b in summary.bullets]
    mood = summary.mood
    embed = discord.Embed(
        title=f"Summary of the last {summary.messages_used} messages",
        description=join_within(lines, EMBED_DESCRIPTION_LIMIT, separator="\n"),
    )
    embed.add_field(
        name="Mood",
        value=f"{mood.label} ({mood.positive} positive, {mood.negative} negative)",
        inline=False,
    )
    skipped = []
    if summary.skipped_no_text:
        skipped.append(f"{summary.skipped_no_text} without text (attachments/embeds only)")
    if summary.skipped_bots:
        skipped.append(f"{summary.skipped_bots} from bots")
    if summary.skipped_over_limit:
        skipped.append(f"{summary.skipped_over_limit} older ones (more text than I read at once)")
    if skipped:
        embed.set_footer(text="Skipped: " + ", ".join(skipped))
    return fit_embed(embed)


def _require_history_access(interaction: discord.Interaction) -> None:
    """Only members who may read a channel's history get a summary of it."""
    permissions = interaction.permissions
    missing = [
        name for name in ("view_channel", "read_message_history") if not getattr(permissions, name)
    ]
    if missing:
        raise app_commands.MissingPermissions(missing)


class SummarizeCog(commands.Cog):
    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    @app_commands.command(
        name="summarize", description="Summarise a text or this channel's recent messages"
    )
    @app_commands.describe(
        text="A text to summarise (leave empty to summarise the channel)",
        messages="How many recent messages to read (5-500)",
        since="Only messages newer than this, like 30m, 2h or 1d",
        private="Only you see the summary",
        min_length="Shortest summary, in tokens (text only; default 30)",
        max_length="Longest summary, in tokens (text only; default 130)",
        file="A text file (.txt .md .py .log .csv .json) or PDF to summarise",
    )
    @app_commands.guild_only()
    async def summarize(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, MAX_TEXT_CHARS] | None = None,
        messages: app_commands.Range[int, 5, 500] = 50,
        since: str | None = None,
        private: bool = False,
        min_length: app_commands.Range[int, 0, MAX_MIN_LENGTH] | None = None,
        max_length: app_commands.Range[int, 10, MAX_MAX_LENGTH] = 130,
        file: discord.Attachment | None = None,
    ) -> None:
        if text is None and file is None:
            _require_history_access(interaction)
        after = datetime.now(UTC) - parse_duration(since) if since else None
        self.bot.services.cooldowns.hit((interaction.user.id, "summarize"))  # valid input only
        await interaction.response.defer(ephemeral=private, thinking=True)
        if file is not None:
            with on_behalf_of(interaction.guild_id):
                await self._summarize_file(interaction, file, private=private)
            return
        if text is not None:
            async with first_use(interaction, self.bot.services.engine, "summarization"):
                summary = await self.bot.services.summaries.summarize_text(
                    text, min_length=min_length, max_length=max_length
                )
            note = f"\n-# summarised in {summary.chunks} parts" if summary.chunks > 1 else ""
            for piece in split_message(summary.text + note):
                await interaction.followup.send(
                    piece, ephemeral=private, allowed_mentions=NO_MENTIONS
                )
            return
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable) or interaction.guild_id is None:
            raise InvalidInputError("I can only summarise text channels.")
        history = [
            as_channel_message(m)
            async for m in channel.history(limit=messages, after=after, oldest_first=False)
        ]
        history.reverse()
        async with first_use(interaction, self.bot.services.engine, "summarization", "sentiment"):
            result = await self.bot.services.summaries.summarize_messages(history)
        embed = summary_embed(result, interaction.guild_id, interaction.channel_id or 0)
        await interaction.followup.send(
            embed=embed, ephemeral=private, allowed_mentions=NO_MENTIONS
        )

    async def _summarize_file(
        self, interaction: discord.Interaction, file: discord.Attachment, *, private: bool
    ) -> None:
        limits = FileLimits.from_settings(self.bot.settings)
        document = await read_document(AttachedFile(file.filename, file.size, file.url), limits)
        guild_id, member_id = interaction.guild_id or 0, interaction.user.id
        budgets = self.bot.services.budgets
        await budgets.check(guild_id, member_id, estimate_tokens(document.text))
        watch = WaitWatch()
        with on_behalf_of(guild_id, watch):
            async with first_use(interaction, self.bot.services.engine, "summarization"):
                notice = WaitNotice(interaction, lambda: _queue_place(watch))
                notice.start()
                try:
                    summary = await self.bot.services.summaries.summarize_document(
                        document.text, max_chars=limits.max_chars
                    )
                finally:
                    await notice.stop()
        await budgets.charge_texts(guild_id, member_id, [document.text, summary.text], exact=False)
        notes = [f"summarised in {summary.chunks} parts"] if summary.chunks > 1 else []
        if document.truncated:
            notes.append(f"only the first {len(document.text):,} characters were read")
        header = f"**Summary of {document.name}**\n"
        footer = f"\n-# {'; '.join(notes)}" if notes else ""
        for piece in split_message(header + summary.text + footer):
            await interaction.followup.send(piece, ephemeral=private, allowed_mentions=NO_MENTIONS)


def _queue_place(watch: WaitWatch) -> str | None:
    waiting = watch.waiting()
    return describe_wait(*waiting) if waiting is not None else None


async def setup(bot: Bot) -> None:
    await bot.add_cog(SummarizeCog(bot))
