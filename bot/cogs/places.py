"""Where a command or message is: a channel, a thread or a forum post, and its parent."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.errors import InvalidInputError

# Channels whose mode and persona a moderator may set from elsewhere (a forum has no
# messages of its own, so its posts' default is set with `channel:`).
SettableChannel = discord.TextChannel | discord.ForumChannel


def location(interaction: discord.Interaction) -> tuple[int, int]:
    """Guild and channel ids of a server interaction."""
    if interaction.guild_id is None or interaction.channel_id is None:
        raise InvalidInputError("That command only works in a server channel.")
    return interaction.guild_id, interaction.channel_id


def parent_of(channel: object) -> int | None:
    """A thread's (or forum post's) channel id; None for a channel."""
    return channel.parent_id if isinstance(channel, discord.Thread) else None


def kind_of(channel: object) -> str:
    """What members call the place: a channel, a thread, or a forum post."""
    if not isinstance(channel, discord.Thread):
        return "channel"
    return "post" if isinstance(channel.parent, discord.ForumChannel) else "thread"


def settings_target(
    interaction: discord.Interaction, channel: SettableChannel | None
) -> tuple[int, int, str]:
    """Guild id, channel id and wording of the channel a settings command changes: the one
    named in ``channel:`` (the member must manage it), else where it was used."""
    guild_id, here = location(interaction)
    if channel is None:
        return guild_id, here, f"this {kind_of(interaction.channel)}"
    if not isinstance(interaction.user, discord.Member) or channel.guild.id != guild_id:
        raise InvalidInputError("Pick a channel of this server.")
    if not channel.permissions_for(interaction.user).manage_channels:
        raise app_commands.MissingPermissions(["manage_channels"])
    if isinstance(channel, discord.ForumChannel):
        return guild_id, channel.id, f"the posts of <#{channel.id}>"
    return guild_id, channel.id, f"<#{channel.id}>"
