"""Pure helpers that shape text for Discord's limits (no network, no state)."""

from __future__ import annotations

import discord

MESSAGE_LIMIT = 2000
EMBED_DESCRIPTION_LIMIT = 4096

# A model's output (or a member's quoted text) must never ping anyone.
NO_MENTIONS = discord.AllowedMentions.none()

_FENCE = "```"


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters.

    Cuts prefer paragraph, line, then word boundaries. A cut inside a code block
    closes the fence and reopens it (with its language) in the next piece.
    """
    if limit < 20:
        raise ValueError("limit too small to carry code fences")
    pieces: list[str] = []
    rest = text.strip()
    reopen = ""
    while rest:
        rest = reopen + rest
        if len(rest) <= limit:
            pieces.append(rest)
            break
        # Room for a closing fence if this piece ends inside a code block.
        window = rest[: limit - len(_FENCE) - 1]
        cut = _best_cut(window)
        piece = rest[:cut].rstrip()
        fence_language = _open_fence_language(piece)
        if fence_language is not None:
            piece += "\n" + _FENCE
            reopen = _FENCE + fence_language + "\n"
        else:
            reopen = ""
        pieces.append(piece)
        rest = rest[cut:].lstrip("\n ") if fence_language is None else rest[cut:].lstrip("\n")
    return [piece for piece in pieces if piece.strip()]


def _best_cut(window: str) -> int:
    for separator in ("\n\n", "\n", " "):
        position = window.rfind(separator)
        if position > len(window) // 2:
            return position
    return len(window)


def _open_fence_language(piece: str) -> str | None:
    """The language of a code block left open at the end of ``piece``, else None."""
    language = None
    for line in piece.split("\n"):
        stripped = line.strip()
        if stripped.startswith(_FENCE):
            language = None if language is not None else stripped[len(_FENCE) :].strip()
    return language


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (for excerpts, never for answers)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def bar(fraction: float, width: int = 12) -> str:
    """A text bar for a value between 0 and 1."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def jump_url(guild_id: int, channel_id: int, message_id: int) -> str:
    """Link to a message."""
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"
