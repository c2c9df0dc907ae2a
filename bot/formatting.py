"""Pure helpers that shape text for Discord's limits (no network, no state)."""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import NamedTuple

import discord

MESSAGE_LIMIT = 2000
MIN_SPLIT_LIMIT = 20
EMBED_TITLE_LIMIT = 256
EMBED_DESCRIPTION_LIMIT = 4096
EMBED_FIELD_NAME_LIMIT = 256
EMBED_FIELD_VALUE_LIMIT = 1024
EMBED_FIELD_COUNT_LIMIT = 25
EMBED_FOOTER_LIMIT = 2048
EMBED_AUTHOR_LIMIT = 256
EMBED_TOTAL_LIMIT = 6000

# A model's output (or a member's quoted text) must never ping anyone.
NO_MENTIONS = discord.AllowedMentions.none()

FENCE = "```"
FENCE_CLOSE = "\n" + FENCE
MAX_LANGUAGE_CHARS = 16
_LANGUAGE = re.compile(r"[A-Za-z0-9_+\-.#]+")
_FENCES = re.compile(re.escape(FENCE))  # left to right, never overlapping
_SPACE = re.compile(r"\s*")
_NEWLINES = re.compile(r"[\r\n]*")
_ZWJ = "\u200d"
_GLUE_LOOKBACK = 32  # a grapheme cluster longer than this is cut anyway
_EMPTY_FIELD = "\u200b"  # a zero-width space: shows nothing, yet is not blank


class Piece(NamedTuple):
    """One message of a split text: ``reopen + text[start:end] + close``."""

    reopen: str  # fence line added to continue a code block cut in the previous piece
    start: int
    end: int
    close: str  # fence added to close a code block this piece ends inside


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split ``text`` into non-empty pieces of at most ``limit`` characters.

    Cuts prefer paragraph, line, then word boundaries. A cut inside a code block
    closes the fence and reopens it (with its language) in the next piece.
    """
    return [
        piece.reopen + text[piece.start : piece.end] + piece.close
        for piece in plan_split(text, limit)
    ]


def plan_split(text: str, limit: int = MESSAGE_LIMIT) -> list[Piece]:
    """Where :func:`split_message` cuts ``text``; linear in ``len(text)``.

    Between two pieces (and before the first, after the last) only whitespace of
    ``text`` is left out, plus a fence of ``text`` that closed a code block right at
    a cut (the previous piece's added ``close`` stands in for it). A text that fits
    comes back whole; otherwise every piece closes the code blocks it opens.
    Deciding a piece reads only ``limit`` characters past its start, so a longer
    text never changes the pieces but the last of a shorter prefix (streaming).
    """
    if limit < MIN_SPLIT_LIMIT:
        raise ValueError(f"limit too small to carry code fences (at least {MIN_SPLIT_LIMIT})")
    end = len(text.rstrip())
    start = len(text) - len(text.lstrip())
    if end - start <= limit:
        return [Piece("", start, end, "")] if start < end else []
    markers = _fence_markers(text)
    max_language = min(MAX_LANGUAGE_CHARS, (limit - 12) // 2)
    pieces: list[Piece] = []
    reopen = ""
    while start < end:
        if reopen and _is_marker(markers, _skip_space(text, start, end)):
            # The block ends right at the cut: the previous piece's close stands in for it.
            start = _skip_space(text, _skip_space(text, start, end) + len(FENCE), end)
            reopen = ""
            continue
        window = limit - len(reopen) - len(FENCE_CLOSE)
        if end - start <= window:
            close = FENCE_CLOSE if _is_open(markers, end) else ""
            pieces.append(Piece(reopen, start, end, close))
            break
        cut = _choose_cut(text, start, start + window, markers)
        body_end = len(text[start:cut].rstrip()) + start
        if body_end == start:  # only whitespace (indentation in a code block) up to the cut
            start = _skip_space(text, start, end)
            continue
        if _is_open(markers, cut):
            pieces.append(Piece(reopen, start, body_end, FENCE_CLOSE))
            reopen = FENCE + _language(text, markers, cut, max_language) + "\n"
            start = _skip_newlines(text, cut, end)  # keeps the indentation of code
        else:
            pieces.append(Piece(reopen, start, body_end, ""))
            reopen = ""
            start = _skip_space(text, cut, end)
    return pieces


def _fence_markers(text: str) -> list[int]:
    """Where each fence starts; they alternate opening and closing, as Discord pairs them."""
    return [match.start() for match in _FENCES.finditer(text)]


def _is_open(markers: list[int], position: int) -> bool:
    """Whether ``position`` lies inside a code block."""
    return bisect_left(markers, position) % 2 == 1


def _is_marker(markers: list[int], position: int) -> bool:
    index = bisect_left(markers, position)
    return index < len(markers) and markers[index] == position


def _skip_space(text: str, position: int, end: int) -> int:
    match = _SPACE.match(text, position, end)
    return match.end() if match else position


def _skip_newlines(text: str, position: int, end: int) -> int:
    match = _NEWLINES.match(text, position, end)
    return match.end() if match else position


def _choose_cut(text: str, start: int, last: int, markers: list[int]) -> int:
    """The cut (an index in ``(start, last]``) for a piece starting at ``start``."""
    lowest = start + (last - start) // 2
    cut = -1
    for separator in ("\n\n", "\n", " "):
        cut = text.rfind(separator, lowest, last + 1)
        if cut > start:
            break
    if cut <= start:
        cut = _hard_cut(text, start, last, markers)
    opening = bisect_left(markers, cut) - 1
    if opening % 2 == 0 and markers[opening] > start:
        # A piece ending on an opening fence line would carry only half of it.
        fence_line_end = text.find("\n", markers[opening], cut)
        if fence_line_end == -1:
            cut = markers[opening]
    return cut


def _hard_cut(text: str, start: int, last: int, markers: list[int]) -> int:
    """A cut inside a word: never inside a fence, nor before a joining character if avoidable."""
    cut = last
    lowest = max(start + 1, last - _GLUE_LOOKBACK)
    while cut > lowest and _is_glued(text, cut):
        cut -= 1
    if _is_glued(text, cut):
        cut = last
    if text[cut - 1] == "`" and text[cut] == "`":
        run_start = start + len(text[start:cut].rstrip("`"))
        if run_start > start:
            cut = run_start
        else:  # a window of backticks: cut after its last whole fence
            index = bisect_right(markers, last - len(FENCE)) - 1
            if index >= 0 and markers[index] + len(FENCE) > start:
                cut = markers[index] + len(FENCE)
    return cut


def _is_glued(text: str, position: int) -> bool:
    """Whether cutting before ``text[position]`` would split a character from its marks."""
    following = text[position]
    return (
        text[position - 1] == _ZWJ
        or following == _ZWJ
        or unicodedata.category(following) in ("Mn", "Mc", "Me")
        or "\U0001f3fb" <= following <= "\U0001f3ff"  # skin tone modifiers
    )


def _language(text: str, markers: list[int], cut: int, max_chars: int) -> str:
    """The language of the code block open at ``cut``, when its fence line is short and whole."""
    opening = markers[bisect_left(markers, cut) - 1] + len(FENCE)
    line_end = text.find("\n", opening, min(cut, opening + max_chars + 1))
    if line_end == -1:
        return ""
    language = text[opening:line_end]
    return language if _LANGUAGE.fullmatch(language) else ""


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    cut = limit - 1
    lowest = max(1, cut - _GLUE_LOOKBACK)
    while cut > lowest and _is_glued(text, cut):
        cut -= 1
    return text[:cut].rstrip() + "…"


def join_within(items: Sequence[str], budget: int, separator: str = ", ") -> str:
    """As many ``items`` as fit in ``budget`` characters, then "… and N more" for the rest."""
    joined = separator.join(items)
    if len(joined) <= budget:
        return joined
    best = -1  # how many items to show; -1: not even the bare "… and N more" fits
    length = 0  # of the first ``shown`` items joined
    for shown in range(len(items)):
        if shown:
            length += len(items[shown - 1]) + (len(separator) if shown > 1 else 0)
            if length > budget:
                break
        more = len(f"… and {len(items) - shown} more") + (len(separator) if shown else 0)
        if length + more <= budget:
            best = shown
    if best < 0:
        return "…" if budget >= 1 else ""
    return "".join(item + separator for item in items[:best]) + f"… and {len(items) - best} more"


def truncate(text: str, limit: int) -> str:
    """``text`` on one line cut to ``limit`` characters (for excerpts, never for answers)."""
    return clip(" ".join(text.split()), limit)


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Clip ``embed`` in place to Discord's limits on each part and in total; returns it."""
    if embed.title:
        embed.title = clip(embed.title, EMBED_TITLE_LIMIT)
    if embed.description:
        embed.description = clip(embed.description, EMBED_DESCRIPTION_LIMIT)
    while len(embed.fields) > EMBED_FIELD_COUNT_LIMIT:
        embed.remove_field(EMBED_FIELD_COUNT_LIMIT)
    for index, field in enumerate(embed.fields):
        name = clip(_or_blank_mark(field.name), EMBED_FIELD_NAME_LIMIT)
        value = clip(_or_blank_mark(field.value), EMBED_FIELD_VALUE_LIMIT)
        if (name, value) != (field.name, field.value):
            embed.set_field_at(index, name=name, value=value, inline=bool(field.inline))
    if embed.footer.text:
        embed.set_footer(
            text=clip(embed.footer.text, EMBED_FOOTER_LIMIT), icon_url=embed.footer.icon_url
        )
    if embed.author.name:
        embed.set_author(
            name=clip(embed.author.name, EMBED_AUTHOR_LIMIT),
            url=embed.author.url,
            icon_url=embed.author.icon_url,
        )
    _fit_total(embed)
    return embed


def _or_blank_mark(text: str | None) -> str:
    """Discord refuses field names and values that are empty once trimmed."""
    return text if text and text.strip() else _EMPTY_FIELD


def _fit_total(embed: discord.Embed) -> None:
    """Shorten the longest-winded parts first until the whole embed is within its limit."""
    excess = len(embed) - EMBED_TOTAL_LIMIT
    if excess > 0 and embed.description:
        description = clip(embed.description, len(embed.description) - excess)
        embed.description = description or None
        excess = len(embed) - EMBED_TOTAL_LIMIT
    index = len(embed.fields) - 1
    while excess > 0 and index >= 0:
        field = embed.fields[index]
        value = str(field.value)
        value = clip(value, max(1, len(value) - excess))
        embed.set_field_at(index, name=str(field.name), value=value, inline=bool(field.inline))
        excess = len(embed) - EMBED_TOTAL_LIMIT
        index -= 1
    while excess > 0 and embed.fields:
        embed.remove_field(len(embed.fields) - 1)
        excess = len(embed) - EMBED_TOTAL_LIMIT
    if excess > 0 and embed.footer.text:
        footer = clip(embed.footer.text, len(embed.footer.text) - excess)
        embed.set_footer(text=footer or None, icon_url=embed.footer.icon_url)
        excess = len(embed) - EMBED_TOTAL_LIMIT
    if excess > 0 and embed.title:
        embed.title = clip(embed.title, len(embed.title) - excess) or None


def bar(fraction: float, width: int = 12) -> str:
    """A text bar for a value between 0 and 1."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def jump_url(guild_id: int, channel_id: int, message_id: int) -> str:
    """Link to a message."""
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"
