"""Moderation: /moderation commands, checks of channel messages, and the alerts' buttons."""

from bot.client import Bot
from bot.cogs.moderation.commands import ModerationCog

__all__ = ["ModerationCog", "setup"]


async def setup(bot: Bot) -> None:
    await bot.add_cog(ModerationCog(bot))
