"""Per-member cooldowns on heavy commands."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.errors import CooldownError


class Cooldowns:
    """Remembers when each member last used each heavy command."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._last_use: dict[tuple[int, str], float] = {}

    def hit(self, user_id: int, command: str) -> None:
        """Record a use, or raise CooldownError if the last one was too recent."""
        if self.seconds <= 0:
            return
        now = self._clock()
        last = self._last_use.get((user_id, command))
        if last is not None and now - last < self.seconds:
            raise CooldownError(self.seconds - (now - last))
        self._last_use[(user_id, command)] = now
        if len(self._last_use) > 10_000:  # forget members who have long cooled down
            self._last_use = {k: t for k, t in self._last_use.items() if now - t < self.seconds}
