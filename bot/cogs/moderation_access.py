"""Who may do what with a moderation alert, and who may read what it quotes (Discord's rules)."""

from __future__ import annotations

from typing import Any, Protocol

import discord

# What an alert shows instead of quoting a message its readers could not read themselves.
CANNOT_QUOTE = "*Message in a channel this log channel's readers can't see - open the link.*"

GuildChannel = discord.abc.GuildChannel | discord.Thread


class Ranked(Protocol):
    """A top role (or anything ordered like one: Discord compares position, then id)."""

    def __lt__(self, other: Any, /) -> bool: ...


def timeout_refusal(
    *,
    target_id: int,
    target_rank: Ranked,
    clicker_id: int,
    clicker_rank: Ranked,
    bot_rank: Ranked,
    owner_id: int,
) -> str | None:
    """Why Discord would not let this member time out that one through the bot; None if it would.

    The owner cannot be timed out; the target's top role must be below the bot's, and below
    the clicking member's unless the clicking member owns the server.
    """
    if target_id == owner_id:
        return "The server owner cannot be timed out."
    if not target_rank < bot_rank:
        return "Their top role is at or above mine, so I cannot time them out."
    if clicker_id != owner_id and not target_rank < clicker_rank:
        return "You can only time out members whose top role is below yours."
    return None


def _overwrite_base(channel: GuildChannel) -> discord.abc.GuildChannel | None:
    # A thread has no overwrites of its own: its parent's apply.
    return channel.parent if isinstance(channel, discord.Thread) else channel


def readers_can_see(source: GuildChannel, log_channel: GuildChannel) -> bool:
    """Whether everyone who can view ``log_channel`` can also view ``source``.

    Checked role by role with the channels' permission overwrites: a member holding only
    @everyone and that role who can view the log channel must be able to view the source.
    Members given View Channel on the log channel by name must be able to view the source
    too (their cached roles, else @everyone and their own overwrite there). A private
    thread is only for its members, and a channel whose parent is unknown cannot be judged:
    both count as not visible.
    """
    if isinstance(source, discord.Thread) and source.is_private():
        return False
    log_base, source_base = _overwrite_base(log_channel), _overwrite_base(source)
    if log_base is None or source_base is None:
        return False
    guild = log_base.guild
    for role in guild.roles:
        if (
            log_base.permissions_for(role).view_channel
            and not source_base.permissions_for(role).view_channel
        ):
            return False
    for target, overwrite in log_base.overwrites.items():
        if isinstance(target, discord.Role) or overwrite.view_channel is not True:
            continue
        if isinstance(target, discord.Member):
            sees = source_base.permissions_for(target).view_channel
        else:  # not cached: what @everyone sees, changed by their own overwrite there
            permissions = source_base.permissions_for(guild.default_role)
            allow, deny = source_base.overwrites_for(target).pair()
            permissions.handle_overwrite(allow.value, deny.value)
            sees = permissions.view_channel
        if not sees:
            return False
    return True


async def resolve_channel(guild: discord.Guild, channel_id: int) -> GuildChannel | None:
    """A channel or thread of the guild, from the cache or else from Discord; None if gone."""
    channel = guild.get_channel_or_thread(channel_id)
    if channel is not None:
        return channel
    try:
        fetched = await guild.fetch_channel(channel_id)
    except discord.NotFound:
        return None
    return fetched
