"""Choosing how much recent chat history fits the model's window, without re-encoding per turn."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def longest_fitting_start(
    estimates: Sequence[int], measure: Callable[[int], int], budget: int
) -> int | None:
    """The smallest ``start`` with ``measure(start) <= budget``, or None if even the last fails.

    ``measure(start)`` is the exact length of the prompt made of turns ``start`` onwards; it
    must not grow as ``start`` grows (dropping old turns never lengthens a prompt).
    ``estimates[i]`` is turn ``i``'s approximate share of that length; the estimates only pick
    where to look first, the answer always comes from ``measure``. With exact estimates this
    measures two prompts; when they are off, the search gallops and then bisects, so it
    measures O(log n) prompts instead of one per turn.
    """
    count = len(estimates)
    if count == 0:
        return None
    last_length = measure(count - 1)
    if last_length > budget:
        return None
    fits: dict[int, bool] = {count - 1: True}

    def fitting(start: int) -> bool:
        if start not in fits:
            fits[start] = measure(start) <= budget
        return fits[start]

    guess = _estimated_start(estimates, last_length, budget)
    step = 1
    if fitting(guess):
        # Fits at ``guess``: gallop back to a start that does not, then bisect.
        fitting_at = guess
        while fitting_at > 0:
            probe = max(0, fitting_at - step)
            if not fitting(probe):
                return _bisect(probe, fitting_at, fitting)
            fitting_at, step = probe, step * 2
        return 0
    # Fails at ``guess``: gallop forward to a start that fits (the last one does), then bisect.
    failing_at = guess
    while True:
        probe = min(count - 1, failing_at + step)
        if fitting(probe):
            return _bisect(failing_at, probe, fitting)
        failing_at, step = probe, step * 2


def _estimated_start(estimates: Sequence[int], last_length: int, budget: int) -> int:
    """Where the estimates say the window starts (the newest turn alone is known to fit)."""
    total = last_length
    for start in range(len(estimates) - 2, -1, -1):
        total += estimates[start]
        if total > budget:
            return start + 1
    return 0


def _bisect(failing: int, fitting: int, fits: Callable[[int], bool]) -> int:
    """The smallest fitting start in (failing, fitting], given ``fits`` fails at ``failing``."""
    while fitting - failing > 1:
        middle = (failing + fitting) // 2
        if fits(middle):
            fitting = middle
        else:
            failing = middle
    return fitting
