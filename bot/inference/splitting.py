"""Cutting a long text into parts that each fit a model's window, at sentence ends."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")


def sentences(text: str) -> list[str]:
    """The text's sentences (and lines), stripped, without empty ones."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]


def pack(pieces: Iterable[str], count: Callable[[str], int], limit: int) -> list[str]:
    """Consecutive pieces joined into parts of at most ``limit`` tokens each (a piece longer
    than ``limit`` stays a part of its own: callers cut those first)."""
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for piece in pieces:
        tokens = count(piece) + 1  # and the space joining it
        if current and used + tokens > limit:
            parts.append(" ".join(current))
            current, used = [], 0
        current.append(piece)
        used += tokens
    if current:
        parts.append(" ".join(current))
    return parts
