"""/budget (today's tokens and limits) and /budget-limits (a guild's own limits)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import Bot
from bot.cogs.places import location
from bot.services.budgets import (
    MAX_DAILY_TOKENS,
    BudgetLimits,
    describe_duration,
    remaining,
)


def _limit(limit: int, used: int) -> str:
    left = remaining(limit, used)
    if left is None:
        return f"{used:,} tokens used (no limit)"
    return f"{used:,} of {limit:,} tokens used, {left:,} left"


def _limits(limits: BudgetLimits) -> str:
    def one(value: int) -> str:
        return "no limit" if value <= 0 else f"{value:,} tokens"

    return f"each member: {one(limits.member_daily)} a day; the server: {one(limits.guild_daily)}"


class BudgetCog(commands.Cog):
    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    @app_commands.command(name="budget", description="Your tokens and the server's for today")
    @app_commands.guild_only()
    async def budget(self, interaction: discord.Interaction) -> None:
        guild_id, _ = location(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        status = await self.bot.services.budgets.status(guild_id, interaction.user.id)
        await interaction.followup.send(
            f"You: {_limit(status.limits.member_daily, status.usage.member_tokens)}.\n"
            f"This server: {_limit(status.limits.guild_daily, status.usage.guild_tokens)}.\n"
            f"Budgets start again in {describe_duration(status.resets_in)} (midnight UTC).",
            ephemeral=True,
        )

    @app_commands.command(
        name="budget-limits", description="Set this server's daily token limits (0: no limit)"
    )
    @app_commands.describe(
        member_daily="Tokens each member may use a day",
        guild_daily="Tokens the whole server may use a day",
        reset="Go back to the bot's default limits",
    )
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def budget_limits(
        self,
        interaction: discord.Interaction,
        member_daily: app_commands.Range[int, 0, MAX_DAILY_TOKENS] | None = None,
        guild_daily: app_commands.Range[int, 0, MAX_DAILY_TOKENS] | None = None,
        reset: bool = False,
    ) -> None:
        guild_id, _ = location(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        limits = await self.bot.services.budgets.set_limits(
            guild_id, member_daily=member_daily, guild_daily=guild_daily, reset=reset
        )
        await interaction.followup.send(f"Daily limits now: {_limits(limits)}.", ephemeral=True)


async def setup(bot: Bot) -> None:
    await bot.add_cog(BudgetCog(bot))
