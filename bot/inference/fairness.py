"""Fair waiting between guilds: each guild's oldest request in turn, never one guild's flood first.

Requests carry the guild they were made in through a context variable (set by the glue with
``on_behalf_of``), so the engine's signatures stay as they are. Where requests wait - the
worker queues of batched models, and the slots of continuous batching - they wait in lanes,
one per guild, served round-robin: a guild that sends a hundred requests gets one of them
served, then every other waiting guild gets one, and so on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

_tenant: ContextVar[Hashable | None] = ContextVar("fair_tenant", default=None)
_watch: ContextVar[WaitWatch | None] = ContextVar("fair_watch", default=None)


@dataclass(slots=True)
class WaitWatch:
    """Where a request waits, for the glue to show: ``(place, expected wait in s)`` or None."""

    probe: Callable[[], tuple[int, float] | None] | None = None

    def waiting(self) -> tuple[int, float] | None:
        """The place (1: next) and expected wait while the request waits; None once it runs."""
        return self.probe() if self.probe is not None else None


@contextlib.contextmanager
def on_behalf_of(tenant: Hashable | None, watch: WaitWatch | None = None) -> Iterator[None]:
    """Requests made inside wait in ``tenant``'s lane (a guild id); ``watch`` sees the wait."""
    tenant_token = _tenant.set(tenant)
    watch_token = _watch.set(watch)
    try:
        yield
    finally:
        _watch.reset(watch_token)
        _tenant.reset(tenant_token)


def current_tenant() -> Hashable | None:
    """The guild the request being made belongs to (None: none said)."""
    return _tenant.get()


def current_watch() -> WaitWatch | None:
    """The watch of the request being made, if the glue gave one."""
    return _watch.get()


def round_robin_position(lane_lengths: Sequence[int], lane: int, index: int) -> int:
    """1-based turn of item ``index`` of lane ``lane`` when lanes are served one item each in
    order, starting with lane 0, and empty lanes are skipped."""
    ahead = sum(min(length, index) for length in lane_lengths)  # earlier full rounds
    ahead += sum(1 for length in lane_lengths[:lane] if length > index)  # this round
    return ahead + 1


def expected_wait_s(place: int, servers: int, seconds_each: float) -> float:
    """About how long until the request at ``place`` (1: next) starts, with ``servers`` at work."""
    if place <= 0:
        return 0.0
    return math.ceil(place / max(1, servers)) * max(0.0, seconds_each)


@dataclass(slots=True, eq=False)
class Ticket(Generic[T]):
    item: T
    lane: Hashable
    arrival: int


class FairQueue(Generic[T]):
    """Items in one lane per tenant; ``pop`` takes the next lane's oldest, then moves on."""

    def __init__(self) -> None:
        self._lanes: OrderedDict[Hashable, deque[Ticket[T]]] = OrderedDict()
        self._arrivals = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, item: T, tenant: Hashable | None) -> Ticket[T]:
        """Queue ``item`` at the end of its tenant's lane."""
        ticket = Ticket(item, tenant, next(self._arrivals))
        self._lanes.setdefault(tenant, deque()).append(ticket)
        self._size += 1
        return ticket

    def pop(self) -> T:
        """The next item (IndexError when empty)."""
        if not self._lanes:
            raise IndexError("pop from an empty FairQueue")
        tenant, lane = next(iter(self._lanes.items()))
        ticket = lane.popleft()
        self._size -= 1
        if lane:
            self._lanes.move_to_end(tenant)  # its next item waits for every other lane
        else:
            del self._lanes[tenant]
        return ticket.item

    def remove(self, ticket: Ticket[T]) -> bool:
        """Take a ticket out (it gave up); whether it was still queued."""
        lane = self._lanes.get(ticket.lane)
        if lane is None or ticket not in lane:
            return False
        lane.remove(ticket)
        self._size -= 1
        if not lane:
            del self._lanes[ticket.lane]
        return True

    def position(self, ticket: Ticket[T]) -> int:
        """1-based turn of a queued ticket (0: not queued)."""
        lengths = [len(lane) for lane in self._lanes.values()]
        for number, (tenant, lane) in enumerate(self._lanes.items()):
            if tenant == ticket.lane:
                if ticket not in lane:
                    return 0
                return round_robin_position(lengths, number, lane.index(ticket))
        return 0

    def drain(self) -> list[T]:
        """Every queued item, oldest lanes first; the queue is empty after."""
        items: list[T] = []
        while self._lanes:
            items.append(self.pop())
        return items


class PriorityFairQueue(Generic[T]):
    """An asyncio queue: lower priority numbers first, guilds round-robin within a priority."""

    def __init__(self) -> None:
        self._levels: dict[int, FairQueue[T]] = {}
        self._ready = asyncio.Event()

    def qsize(self) -> int:
        return sum(len(level) for level in self._levels.values())

    def empty(self) -> bool:
        return self.qsize() == 0

    def put_nowait(self, item: T, priority: int, tenant: Hashable | None) -> Ticket[T]:
        ticket = self._levels.setdefault(priority, FairQueue()).push(item, tenant)
        self._ready.set()
        return ticket

    def get_nowait(self) -> T:
        for priority in sorted(self._levels):
            level = self._levels[priority]
            if len(level):
                item = level.pop()
                if self.empty():
                    self._ready.clear()
                return item
        raise asyncio.QueueEmpty

    async def get(self) -> T:
        while self.empty():
            await self._ready.wait()
        return self.get_nowait()

    def position(self, ticket: Ticket[T], priority: int) -> int:
        """1-based turn of a queued ticket (0: no longer queued)."""
        level = self._levels.get(priority)
        place = level.position(ticket) if level is not None else 0
        if place == 0:
            return 0
        return place + sum(len(q) for p, q in self._levels.items() if p < priority)


@dataclass(slots=True)
class _Waiter:
    granted: asyncio.Future[None]


@dataclass(slots=True)
class FairGate:
    """At most ``slots`` holders at once; waiters are let in guild by guild, round-robin."""

    slots: int
    held: int = 0
    seconds_per_hold: float = 1.0  # a moving average, for expected waits
    _waiting: FairQueue[_Waiter] = field(default_factory=FairQueue)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def slot(self, tenant: Hashable | None = None) -> AsyncIterator[None]:
        """Hold one slot for the block; waits fairly while every slot is held."""
        if self.held < self.slots and not len(self._waiting):
            self.held += 1
        else:
            await self._wait(tenant)
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds_per_hold = 0.8 * self.seconds_per_hold + 0.2 * (time.monotonic() - started)
            self._release()

    async def _wait(self, tenant: Hashable | None) -> None:
        waiter = _Waiter(asyncio.get_running_loop().create_future())
        ticket = self._waiting.push(waiter, tenant)
        watch = current_watch()
        if watch is not None:
            watch.probe = lambda: self._place(ticket)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if not self._waiting.remove(ticket) and waiter.granted.done():
                self._release()  # granted just as it gave up: pass the slot on
            raise
        finally:
            if watch is not None:
                watch.probe = None

    def close(self, error: Exception) -> None:
        """Fail every waiter with ``error`` (shutdown); holders keep their slots."""
        for waiter in self._waiting.drain():
            if not waiter.granted.done():
                waiter.granted.set_exception(error)

    def _place(self, ticket: Ticket[_Waiter]) -> tuple[int, float] | None:
        place = self._waiting.position(ticket)
        if place == 0:
            return None
        return place, expected_wait_s(place, self.slots, self.seconds_per_hold)

    def _release(self) -> None:
        while len(self._waiting):
            waiter = self._waiting.pop()
            if not waiter.granted.done():
                waiter.granted.set_result(None)  # the slot passes on: ``held`` stays
                return
        self.held -= 1
