"""Channel temperature: the share of a channel's recent checked messages that were flagged.

A channel heats up when that share reaches the guild's level (over at least ``MIN_CHECKED``
messages) and cools down when it falls to half the level or the channel goes quiet. Moderators
get one alert when a channel heats up, not one per message: the next comes only after it has
cooled down and heated up again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cachetools import TTLCache

# The checked messages a channel's temperature is measured over (its most recent ones).
WINDOW = 20
# No verdict on fewer: one flagged message of one is not a heated channel.
MIN_CHECKED = 8
# A channel quiet this long starts again from nothing (and has cooled down).
QUIET_S = 15 * 60
# How many channels it remembers at most (the least recently checked are forgotten first).
MEMORY = 50_000
# Seconds in a minute of a heated channel's slowmode (tests make it shorter).
MINUTE_S = 60.0


@dataclass(slots=True)
class _Channel:
    flags: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW))
    heated: bool = False

    @property
    def share(self) -> float:
        return sum(self.flags) / len(self.flags) if self.flags else 0.0


class ChannelTemperature:
    """Remembers the last ``window`` checks of each channel, for at most ``memory`` channels."""

    def __init__(
        self,
        *,
        window: int = WINDOW,
        min_checked: int = MIN_CHECKED,
        quiet_s: float = QUIET_S,
        memory: int = MEMORY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._min_checked = min(min_checked, window)
        self._channels: TTLCache[tuple[int, int], _Channel] = TTLCache(
            memory, ttl=quiet_s, timer=clock
        )

    def observe(self, guild_id: int, channel_id: int, flagged: bool, level: float) -> bool:
        """Count one checked message; True exactly when this message made the channel heated.

        ``level``: the guild's share of flagged messages (0-1) that makes a channel heated;
        0 turns temperature off (nothing is remembered).
        """
        if level <= 0:
            return False
        key = (guild_id, channel_id)
        channel = self._channels.get(key) or _Channel(deque(maxlen=self._window))
        self._channels[key] = channel  # (re)starts its quiet time
        channel.flags.append(flagged)
        share = channel.share
        if channel.heated:
            channel.heated = share > level / 2
            return False
        if len(channel.flags) >= self._min_checked and share >= level:
            channel.heated = True
            return True
        return False

    def share(self, guild_id: int, channel_id: int) -> float:
        """The flagged share of the channel's remembered checks (0 when none)."""
        channel = self._channels.get((guild_id, channel_id))
        return channel.share if channel is not None else 0.0

    def checked(self, guild_id: int, channel_id: int) -> int:
        """How many of the channel's checks it remembers."""
        channel = self._channels.get((guild_id, channel_id))
        return len(channel.flags) if channel is not None else 0

    def tracked(self) -> int:
        """How many channels it remembers now."""
        self._channels.expire()
        return len(self._channels)

    def forget_guild(self, guild_id: int) -> None:
        for key in [key for key in self._channels if key[0] == guild_id]:
            self._channels.pop(key, None)
