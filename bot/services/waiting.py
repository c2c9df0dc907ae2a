"""What a waiting member is told: their place in line and about how long until their turn."""

from __future__ import annotations

import math

from bot.inference.fairness import WaitWatch

# Until the first answer was timed, an answer is assumed to take this long.
FIRST_GUESS_S = 10.0


def describe_wait(place: int, seconds: float) -> str:
    """``#3 in line, about 12 s`` (``about 2 min`` past two minutes)."""
    place = max(1, place)
    seconds = max(1, math.ceil(seconds)) if math.isfinite(seconds) else 3600
    if seconds >= 120:
        return f"#{place} in line, about {math.ceil(seconds / 60)} min"
    return f"#{place} in line, about {seconds} s"


class AnswerTimer:
    """A moving average of how long answers take, for the expected wait in a channel's line."""

    def __init__(self, first_guess_s: float = FIRST_GUESS_S) -> None:
        self.seconds = first_guess_s

    def record(self, seconds: float) -> None:
        if math.isfinite(seconds) and seconds >= 0:
            self.seconds = 0.7 * self.seconds + 0.3 * seconds


def place_in_line(ahead_in_channel: int, watch: WaitWatch, timer: AnswerTimer) -> str | None:
    """The notice for a member waiting behind ``ahead_in_channel`` answers in their channel,
    or in the model's queue (``watch``); None once their answer is being made."""
    if ahead_in_channel > 0:
        return describe_wait(ahead_in_channel + 1, ahead_in_channel * timer.seconds)
    waiting = watch.waiting()
    if waiting is None:
        return None
    place, seconds = waiting
    return describe_wait(place, seconds)
