"""A bounded in-memory cache for settings the bot reads on every message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Entries kept per settings cache; the least recently used go first (a guild's or
# channel's settings are read again from the database when next needed).
SETTINGS_CACHE_SIZE = 10_000


class SettingsCache(Generic[K, V]):
    """Settings read on every message, kept in memory; the bot is their only writer.

    A read that overlapped a write (or a forget) is returned but not kept, so a slow
    read of the old row can never replace what the write stored.
    """

    def __init__(self, maxsize: int = SETTINGS_CACHE_SIZE) -> None:
        self._values: LRUCache[K, V] = LRUCache(maxsize)
        self._writes = 0

    def __len__(self) -> int:
        return len(self._values)

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            return self._values[key]  # also marks it as recently used
        except KeyError:
            pass
        writes = self._writes
        value = await load()
        if writes == self._writes:
            self._values[key] = value
        return value

    def put(self, key: K, value: V) -> V:
        self._writes += 1
        self._values[key] = value
        return value

    def forget(self, matches: Callable[[K], bool]) -> int:
        """Drop every entry whose key ``matches``; returns how many."""
        self._writes += 1
        keys = [key for key in self._values if matches(key)]
        for key in keys:
            del self._values[key]
        return len(keys)
