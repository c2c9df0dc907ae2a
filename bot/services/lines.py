"""Members' messages in a channel, answered one at a time in the order they arrived."""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

from bot.errors import UserFacingError


class ChannelBusyError(UserFacingError):
    """Too many answers are already waiting in this channel."""

    def __init__(self, waiting: int, *, repeated: bool = False) -> None:
        super().__init__(
            f"I'm already answering {waiting} messages in this channel - "
            "please wait for those and try again."
        )
        self.repeated = repeated


RESET = "This channel's conversation was reset, so I stopped answering that."
SHUTTING_DOWN = "The bot is restarting, so I stopped answering that - please ask again soon."


class AnswerDroppedError(UserFacingError):
    """The conversation was reset (or the bot is stopping) while this answer waited or ran."""


class Place:
    """One message's place in its channel's line; leave it (``with``) when done."""

    def __init__(self, line: ChannelLine, channel_id: int) -> None:
        self._line = line
        self.channel_id = channel_id
        self._wake = asyncio.Event()  # set when it is this place's turn, or it was dropped
        self.dropped: str | None = None  # why, once dropped

    @property
    def ahead(self) -> int:
        """How many places are in front of this one (0: its turn)."""
        return self._line.ahead_of(self)

    async def wait_turn(self) -> None:
        """Wait until every earlier place has left; raises AnswerDroppedError if dropped."""
        await self._wake.wait()
        self.raise_if_dropped()

    def raise_if_dropped(self) -> None:
        """Raise AnswerDroppedError once the place was dropped."""
        if self.dropped is not None:
            raise AnswerDroppedError(self.dropped)

    def leave(self) -> None:
        """Give up the place (idempotent); the next one gets its turn."""
        self._line.leave(self)

    def __enter__(self) -> Place:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.leave()


class ChannelLine:
    """Per-channel first-come-first-served lines; a channel's entry goes once its line is empty.

    Joining is synchronous, so a handler that joins before its first ``await`` keeps the
    order in which Discord delivered the messages.
    """

    def __init__(self) -> None:
        self._lines: dict[int, deque[Place]] = {}

    def join(self, channel_id: int) -> Place:
        """A place at the end of the channel's line."""
        line = self._lines.setdefault(channel_id, deque())
        place = Place(self, channel_id)
        line.append(place)
        if len(line) == 1:
            self._give_turn(place)
        return place

    def ahead_of(self, place: Place) -> int:
        line = self._lines.get(place.channel_id, deque())
        return line.index(place) if place in line else 0

    def waiting(self, channel_id: int) -> int:
        """How many places the channel's line holds."""
        return len(self._lines.get(channel_id, ()))

    def leave(self, place: Place) -> None:
        line = self._lines.get(place.channel_id)
        if line is None or place not in line:
            return
        was_first = line[0] is place
        line.remove(place)
        if not line:
            del self._lines[place.channel_id]
        elif was_first:
            self._give_turn(line[0])

    def drop(self, channel_id: int, reason: str = RESET) -> int:
        """Stop every place in the channel's line (they raise AnswerDroppedError); how many."""
        line = self._lines.get(channel_id, deque())
        for place in line:
            place.dropped = reason
            place._wake.set()
        return len(line)

    def drop_all(self, reason: str = SHUTTING_DOWN) -> None:
        """Stop every line (shutdown)."""
        for channel_id in list(self._lines):
            self.drop(channel_id, reason)

    @staticmethod
    def _give_turn(place: Place) -> None:
        place._wake.set()
