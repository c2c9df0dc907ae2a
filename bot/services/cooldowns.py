"""Rate limits per member: cooldowns on heavy commands, answers per minute in conversations."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable

from cachetools import TTLCache

from bot.errors import CooldownError

# Members remembered at once; the least recently active are forgotten first.
MAX_KEYS = 50_000


class RateLimit:
    """At most ``uses`` per key in any ``period_s`` (a sliding window); ``uses=0`` is no limit."""

    def __init__(
        self,
        uses: int,
        period_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.uses = uses
        self.period_s = period_s
        self._clock = clock
        # An entry expires one period after its last use: by then the window is empty anyway.
        self._recent: TTLCache[Hashable, deque[float]] = TTLCache(
            max_keys, ttl=period_s, timer=clock
        )
        self._refused: TTLCache[Hashable, None] = TTLCache(max_keys, ttl=period_s, timer=clock)

    def hit(self, key: Hashable) -> None:
        """Record a use, or raise CooldownError saying when the next one is allowed."""
        if self.uses <= 0 or self.period_s <= 0:
            return
        now = self._clock()
        recent = self._recent.get(key) or deque()
        while recent and now - recent[0] >= self.period_s:
            recent.popleft()
        if len(recent) >= self.uses:
            repeated = key in self._refused
            self._refused[key] = None
            raise CooldownError(self.period_s - (now - recent[0]), repeated=repeated)
        recent.append(now)
        self._recent[key] = recent  # re-set: the entry's expiry follows its last use
        self._refused.pop(key, None)
