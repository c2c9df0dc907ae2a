"""Who may do what with a moderation alert, and who may read what it quotes (Discord's rules)."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class ServerRoles:
    """The roles of a server as far as View Channel goes (ids; @everyone is implied)."""

    roles: frozenset[int]  # every role a member may hold, @everyone not among them
    everyone_views: bool = True  # @everyone has View Channel server-wide
    viewers: frozenset[int] = frozenset()  # roles with View Channel server-wide
    admins: frozenset[int] = frozenset()  # roles with Administrator: they see every channel


@dataclass(frozen=True, slots=True)
class ViewOverwrites:
    """What a channel's overwrites say about View Channel: @everyone's and the roles'."""

    everyone_allow: bool = False
    everyone_deny: bool = False
    allow: frozenset[int] = frozenset()
    deny: frozenset[int] = frozenset()


def views(channel: ViewOverwrites, server: ServerRoles, held: frozenset[int]) -> bool:
    """Whether a member holding ``held`` (and @everyone) may view the channel, as Discord
    decides: Administrator, then a role allow, a role deny, @everyone's allow and deny, then
    the server-wide permission."""
    if held & server.admins or held & channel.allow:
        return True
    if held & channel.deny:
        return False
    if channel.everyone_allow or channel.everyone_deny:
        return channel.everyone_allow
    return server.everyone_views or bool(held & server.viewers)


def some_roles_see_only_the_log(
    log: ViewOverwrites, source: ViewOverwrites, server: ServerRoles
) -> bool:
    """Whether some combination of roles views the log channel but not the source channel.

    If any combination does, one of at most two roles does too: one that opens the log
    channel (or none), and perhaps one denied on the source. Dropping any other role keeps
    the log open (a role only opens it by an allow, or by base View Channel while none of the
    mix is denied there) and the source closed (no admin, no allow there), so checking the
    mixes of one or two roles is exact, and linear in the number of roles.
    """
    # Holding an admin role or one allowed on the source, a member sees the source.
    usable = server.roles - server.admins - source.allow
    openers = [frozenset({role}) for role in log.allow & usable]
    openers += [frozenset()] + [frozenset({role}) for role in server.viewers & usable - log.deny]
    closers = source.deny & usable
    for held in openers:
        if not views(log, server, held):
            continue
        if not views(source, server, held):
            return True
        # Adding a role denied on the source closes it; it must not close the log as well.
        if closers if held & log.allow else closers - log.deny:
            return True
    return False


def _server_roles(guild: discord.Guild) -> ServerRoles:
    # A bot's own role is only ever held by that bot: no member reads with it.
    others = [role for role in guild.roles if not (role.is_default() or role.is_bot_managed())]
    return ServerRoles(
        roles=frozenset(role.id for role in others),
        everyone_views=guild.default_role.permissions.view_channel,
        viewers=frozenset(role.id for role in others if role.permissions.view_channel),
        admins=frozenset(role.id for role in others if role.permissions.administrator),
    )


def _view_overwrites(channel: discord.abc.GuildChannel) -> ViewOverwrites:
    everyone = channel.overwrites_for(channel.guild.default_role).view_channel
    roles = [
        (target.id, overwrite.view_channel)
        for target, overwrite in channel.overwrites.items()
        if isinstance(target, discord.Role) and not target.is_default()
    ]
    return ViewOverwrites(
        everyone_allow=everyone is True,
        everyone_deny=everyone is False,
        allow=frozenset(role for role, view in roles if view is True),
        deny=frozenset(role for role, view in roles if view is False),
    )


def _surely_sees(
    channel: discord.abc.GuildChannel, rules: ViewOverwrites, server: ServerRoles, target: Any
) -> bool:
    """Whether a member named in an overwrite views ``channel`` whatever roles they hold
    (exactly, for a cached member: by their roles)."""
    if isinstance(target, discord.Member):
        return channel.permissions_for(target).view_channel
    own = channel.overwrites_for(target).view_channel
    if own is not None:  # a member's own overwrite comes last
        return own
    # Roles can only close it by a deny: it must be open with none, and none may deny it.
    return views(rules, server, frozenset()) and not rules.deny - server.admins


def _may_see(channel: discord.abc.GuildChannel, target: Any) -> bool:
    """Whether a member named in an overwrite might view ``channel`` (exactly, when cached)."""
    if isinstance(target, discord.Member):
        return channel.permissions_for(target).view_channel
    return channel.overwrites_for(target).view_channel is not False


def readers_can_see(source: GuildChannel, log_channel: GuildChannel) -> bool:
    """Whether everyone who can view ``log_channel`` can also view ``source``.

    By the channels' permission overwrites: no combination of roles may open the log channel
    but not the source (see ``some_roles_see_only_the_log``), members given View Channel on
    the log channel by name must view the source, and members denied it on the source by
    name must not view the log channel. Members the bot has not cached count with whichever
    roles would let them read the log channel only. A private thread is only for its
    members, and a channel whose parent is unknown cannot be judged: both count as not
    visible.
    """
    if isinstance(source, discord.Thread) and source.is_private():
        return False
    log_base, source_base = _overwrite_base(log_channel), _overwrite_base(source)
    if log_base is None or source_base is None:
        return False
    guild = log_base.guild
    if guild.default_role.permissions.administrator:
        return True
    server, source_rules = _server_roles(guild), _view_overwrites(source_base)
    if some_roles_see_only_the_log(_view_overwrites(log_base), source_rules, server):
        return False
    return all(
        _surely_sees(source_base, source_rules, server, target)
        for target in _named(log_base, view=True)
    ) and not any(_may_see(log_base, target) for target in _named(source_base, view=False))


def _named(channel: discord.abc.GuildChannel, *, view: bool) -> list[Any]:
    """Members whose own overwrite on the channel sets View Channel to ``view``."""
    return [
        target
        for target, overwrite in channel.overwrites.items()
        if overwrite.view_channel is view
        and not isinstance(target, discord.Role)
        # An uncached role comes as an Object of type Role (uncached members: type User).
        and not (isinstance(target, discord.Object) and target.type is discord.Role)
    ]


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
