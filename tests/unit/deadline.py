"""Fail a call that does not return, instead of hanging the test run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# After one call hangs (its thread spins on), later calls fail at once: hypothesis
# replays and shrinks failing examples, and each replay would leave another thread.
_hung: list[str] = []


def within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``, failing if it takes longer than ``seconds``."""
    assert not _hung, f"an earlier call never returned: {_hung[0]}"
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as error:  # handed to the test's thread below
            errors.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        _hung.append(repr(call)[:500])
        raise AssertionError(f"did not return within {seconds} s: {_hung[0]}")
    if errors:
        raise errors[0]
    return result[0]
