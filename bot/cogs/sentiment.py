"""/sentiment and the "Analyze sentiment" message menu."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands
from discord.utils import escape_markdown

from bot.client import Bot
from bot.cogs.first_use import first_use
from bot.formatting import NO_MENTIONS, bar, fit_embed, truncate
from bot.services.explain import WordEffect, effects_text
from bot.services.sentiment import MAX_TEXT_CHARS, SentimentResult, is_negative

EMOTIONS_SHOWN = 8


def sentiment_embed(result: SentimentResult, text: str) -> discord.Embed:
    """An embed with the label, or the emotion distribution as a bar chart."""
    if result.emotions:
        lines = [
            f"`{bar(e.score)}` {e.label} {e.score:.0%}" for e in result.emotions[:EMOTIONS_SHOWN]
        ]
        embed = discord.Embed(title=f"Mostly {result.label}", description="\n".join(lines))
    else:
        colour = discord.Colour.red() if is_negative(result.label) else discord.Colour.green()
        embed = discord.Embed(
            title=f"{result.label.title()} ({result.score:.1%} confident)", colour=colour
        )
    embed.add_field(name="Text", value=truncate(text, 1000), inline=False)
    return fit_embed(embed)


class SentimentCog(commands.Cog):
    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(
            name="Analyze sentiment", callback=self.analyze_message
        )

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(name="sentiment", description="How positive or negative is a text?")
    @app_commands.describe(
        text="The text to analyse",
        emotions="Show the full emotion distribution (go_emotions) instead",
        private="Only you see the answer",
        explain="Also name the words that drove the score most",
    )
    async def sentiment(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, MAX_TEXT_CHARS],
        emotions: bool = False,
        private: bool = False,
        explain: bool = False,
    ) -> None:
        await interaction.response.defer(ephemeral=private, thinking=True)
        engine = self.bot.services.engine
        service = self.bot.services.sentiment
        async with first_use(interaction, engine, "emotion" if emotions else "sentiment"):
            result = await service.analyze(text, emotions=emotions)
            effects = (await service.explain(text))[1] if explain else None
        embed = sentiment_embed(result, text)
        if effects is not None:
            words = [WordEffect(escape_markdown(e.word), e.effect) for e in effects]
            embed.add_field(
                name="Words that drove it",
                value=effects_text(words) or "no single word stands out",
                inline=False,
            )
        await interaction.followup.send(
            embed=fit_embed(embed), ephemeral=private, allowed_mentions=NO_MENTIONS
        )

    async def analyze_message(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with first_use(interaction, self.bot.services.engine, "sentiment"):
            result = await self.bot.services.sentiment.analyze(message.content)
        embed = sentiment_embed(result, message.content)
        embed.url = message.jump_url
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: Bot) -> None:
    await bot.add_cog(SentimentCog(bot))
