"""The alerts the bot posted lately: the one place they are edited, so no edit undoes another."""

from __future__ import annotations

import asyncio
import copy
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import discord
from cachetools import TTLCache

from bot.formatting import NO_MENTIONS
from bot.services.moderation import ALERT_GROUP_WINDOW_S

# (guild id, author id): an author's flags within the group window join one alert.
AlertKey = tuple[int, int]
ALERT_MEMORY = 10_000
# Later flags join an alert only within the group window after it was posted.
ALERT_MEMORY_S = 2 * ALERT_GROUP_WINDOW_S
DECISION_FIELD = "Decision"


@dataclass(slots=True)
class PostedAlert:
    message: discord.Message
    first_event_id: int
    embed: discord.Embed  # as last written: edits start from it, never from a stale copy
    more: int = 0  # later flags that joined it


def copy_embed(embed: discord.Embed) -> discord.Embed:
    """A deep copy (``Embed.copy`` shares the list of fields with the original)."""
    return discord.Embed.from_dict(copy.deepcopy(embed.to_dict()))


def with_decision(embed: discord.Embed, text: str) -> discord.Embed:
    """A copy of an alert's embed with its Decision field set to ``text``."""
    embed = copy_embed(embed)
    for index, existing in enumerate(embed.fields):
        if existing.name == DECISION_FIELD:
            return embed.set_field_at(index, name=DECISION_FIELD, value=text, inline=False)
    return embed.add_field(name=DECISION_FIELD, value=text, inline=False)


class AlertBoard:
    """Recent alerts per (guild, author) and the locks that put their edits in order."""

    def __init__(self, memory: int = ALERT_MEMORY, ttl_s: float = ALERT_MEMORY_S) -> None:
        self._alerts: TTLCache[AlertKey, PostedAlert] = TTLCache(memory, ttl=ttl_s)
        # A lock lives while someone holds or waits for it, then goes by itself.
        self._locks: weakref.WeakValueDictionary[AlertKey, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def __len__(self) -> int:
        self._alerts.expire()
        return len(self._alerts)

    def lock(self, key: AlertKey) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def post(
        self,
        channel: discord.abc.Messageable,
        key: AlertKey,
        event_id: int,
        embed: discord.Embed,
        view: discord.ui.View,
    ) -> None:
        """Post a new alert (call under ``lock(key)``)."""
        sent = await channel.send(embed=embed, view=view, allowed_mentions=NO_MENTIONS)
        self._alerts[key] = PostedAlert(sent, event_id, embed)

    async def join(self, key: AlertKey, event_id: int, outcome: str) -> bool:
        """Count a later flag on the author's alert (call under ``lock(key)``); False if there
        is none, or it was deleted (then it is forgotten)."""
        alert = self._alerts.get(key)
        if alert is None:
            return False
        embed = copy_embed(alert.embed)
        embed.set_footer(
            text=f"event #{alert.first_event_id} · +{alert.more + 1} more flagged from this "
            f"author (event #{event_id}, {outcome})"
        )
        try:  # its buttons, or their absence, stay as they are
            await alert.message.edit(embed=embed)
        except discord.NotFound:
            self._alerts.pop(key, None)
            return False
        alert.more += 1
        alert.embed = embed
        return True

    async def write_decision(
        self,
        key: AlertKey,
        event_id: int,
        shown: discord.Embed | None,
        text: str,
        edit: Callable[[discord.Embed], Awaitable[object]],
        *,
        keep_written: bool = False,
    ) -> None:
        """Write a decision on an alert through ``edit``, starting from its latest embed.

        ``shown`` is the embed the member clicked on, used when the alert is not remembered
        (then no flag can join it any more either). With ``keep_written``, a decision
        already on the alert stays as it is.
        """
        async with self.lock(key):
            alert = self._alerts.get(key)
            remembered = alert is not None and alert.first_event_id == event_id
            base = (alert.embed if alert is not None and remembered else shown) or discord.Embed()
            written = any(field.name == DECISION_FIELD for field in base.fields)
            embed = copy_embed(base) if keep_written and written else with_decision(base, text)
            await edit(embed)
            if alert is not None and remembered:
                alert.embed = embed

    def forget_guild(self, guild_id: int) -> None:
        for key in [key for key in self._alerts if key[0] == guild_id]:
            self._alerts.pop(key, None)
