"""Which flags become alerts: grouped per author, capped per guild."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from cachetools import TTLCache

ALERT_GROUP_WINDOW_S = 60.0
ALERTS_PER_MINUTE = 10
# How many (guild, author) pairs and guilds the alert gate remembers at most.
GATE_MEMORY = 100_000


class Alert(Enum):
    POST = "post"  # a new alert in the log channel
    GROUP = "group"  # add to the author's recent alert
    CAP_NOTICE = "cap_notice"  # the guild hit its cap: post one line saying so
    SUPPRESS = "suppress"  # over the cap: recorded, not posted


@dataclass(slots=True)
class _GuildAlerts:
    posted: deque[float] = field(default_factory=deque)  # when alerts went out, last minute
    capped: bool = False  # the cap notice was posted


class AlertGate:
    """Groups alerts per author and caps them per guild, so raids do not flood moderators.

    It only remembers the last minute (and at most ``memory`` authors and guilds).
    """

    def __init__(
        self,
        group_window_s: float = ALERT_GROUP_WINDOW_S,
        per_minute: int = ALERTS_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
        memory: int = GATE_MEMORY,
    ) -> None:
        self._window = group_window_s
        self._per_minute = per_minute
        self._clock = clock
        self._last_alert: TTLCache[tuple[int, int], float] = TTLCache(
            memory, ttl=group_window_s, timer=clock
        )
        # A guild's state expires a minute after its last alert, when nothing in it counts.
        self._guilds: TTLCache[int, _GuildAlerts] = TTLCache(memory, ttl=60, timer=clock)

    def admit(self, guild_id: int, author_id: int) -> Alert:
        """What to do with a flag; a POST holds a place under the cap until ``posted`` (or
        ``withdraw`` when posting failed)."""
        now = self._clock()
        last = self._last_alert.get((guild_id, author_id))
        if last is not None and now - last < self._window:
            return Alert.GROUP
        state = self._guilds.get(guild_id) or _GuildAlerts()
        self._guilds[guild_id] = state  # (re)starts its minute
        posted = state.posted
        while posted and now - posted[0] >= 60:
            posted.popleft()
        if len(posted) >= self._per_minute:
            if state.capped:
                return Alert.SUPPRESS
            state.capped = True
            return Alert.CAP_NOTICE
        state.capped = False
        posted.append(now)
        return Alert.POST

    def posted(self, guild_id: int, author_id: int) -> None:
        """The author's alert went out: their next flags in the window join it."""
        self._last_alert[(guild_id, author_id)] = self._clock()

    def withdraw(self, guild_id: int) -> None:
        """An admitted alert could not be posted: it does not count under the cap."""
        state = self._guilds.get(guild_id)
        if state is not None and state.posted:
            state.posted.pop()

    def alert_gone(self, guild_id: int, author_id: int) -> None:
        """The author's alert is gone (deleted): their next flag is admitted anew."""
        self._last_alert.pop((guild_id, author_id), None)

    def tracked(self) -> int:
        """How many authors and guilds it remembers now."""
        self._last_alert.expire()
        self._guilds.expire()
        return len(self._last_alert) + len(self._guilds)

    def forget_guild(self, guild_id: int) -> None:
        self._guilds.pop(guild_id, None)
        for key in [key for key in self._last_alert if key[0] == guild_id]:
            self._last_alert.pop(key, None)
