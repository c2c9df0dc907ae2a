"""How a channel's conversation is laid out for the chat model, and what its answers may open with.

The member being answered is named in the system prompt and their message goes in as they
wrote it; earlier members' messages start with their name in square brackets, so the model
can still tell people apart. With every message sent as ``name: text`` the default model
(SmolLM2-135M-Instruct) often answered as if it were that member ("dave: boil an egg...");
see ``benchmarks/speakers.py`` for the measurement.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from bot.inference.chat import ChatMessage
from bot.storage.records import Role, Turn

# Discord display names are at most 32 characters.
MAX_NAME_CHARS = 32
SUMMARY_HEADING = "Earlier in this conversation:"
_UNSAFE_NAME = re.compile(r"[\[\]\r\n\t\x00-\x1f]+")


def clean_name(name: str) -> str:
    """A member's name as it may appear in a prompt: one line, no brackets, at most 32 chars."""
    cleaned = " ".join(_UNSAFE_NAME.sub(" ", name).split())[:MAX_NAME_CHARS].strip()
    return cleaned or "someone"


def system_prompt(persona: str, speaker: str | None, summary: str | None = None) -> str:
    """The persona, then the summary of older turns, then who is being answered."""
    parts = [persona.strip()]
    if summary and summary.strip():
        parts.append(f"{SUMMARY_HEADING} {summary.strip()}")
    if speaker is not None:
        parts.append(f"You are talking with {clean_name(speaker)}.")
    return "\n\n".join(parts)


def conversation_prompt(
    persona: str, turns: Sequence[Turn], summary: str | None = None
) -> list[ChatMessage]:
    """The chat messages for answering the last turn of ``turns`` (oldest first)."""
    last = turns[-1] if turns else None
    speaker = last.author_name if last is not None and last.role is Role.USER else None
    messages = [ChatMessage("system", system_prompt(persona, speaker, summary))]
    for turn in turns:
        if turn.role is not Role.USER:
            messages.append(ChatMessage(turn.role.value, turn.content))
        elif turn is last:
            messages.append(ChatMessage("user", turn.content))
        else:
            messages.append(ChatMessage("user", f"[{clean_name(turn.author_name)}] {turn.content}"))
    return messages


def speaker_names(turns: Iterable[Turn], *others: str) -> list[str]:
    """The names an answer must not open with: the members in ``turns`` and ``others``."""
    names = {clean_name(t.author_name) for t in turns if t.role is Role.USER}
    names.update(clean_name(name) for name in others if name.strip())
    return sorted(names)


def _leading_name_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    choices = sorted({n for n in names if n.strip()}, key=len, reverse=True)
    if not choices:
        return None
    name = "|".join(re.escape(n) for n in choices)
    # "dave:", "[dave]", "[dave]:", "**dave**:", "**[dave]**" - nothing longer than the name
    # plus a few characters, so that a streamed answer can be decided early.
    return re.compile(
        rf"(?:\*\*)?(?:\[ ?(?:{name}) ?\](?:\*\*)? ?:?|(?:{name})(?:\*\*)? ?:)", re.IGNORECASE
    )


def _may_open_with_name(text: str, names: Sequence[str]) -> bool:
    """Whether ``text``, with more added, could still open with one of the tags above.

    "this is" cannot open with "dave:", so a short answer need not be held back to its end.
    """
    rest = text.lower()
    if "**".startswith(rest):
        return True
    rest = rest.removeprefix("**")
    if rest.startswith("["):
        rest = rest[1:].removeprefix(" ")
    return any(name.lower().startswith(rest[: len(name)]) for name in names)


def _pattern_room(names: Iterable[str]) -> int:
    """Characters of an answer's start that decide whether it opens with a name."""
    return max((len(n) for n in names), default=0) + 10


def strip_leading_names(text: str, names: Iterable[str]) -> str:
    """``text`` without leading whitespace and without the speaker tags it opens with."""
    pattern = _leading_name_pattern(names)
    text = text.lstrip()
    while pattern is not None and (found := pattern.match(text)) and found.end() > 0:
        text = text[found.end() :].lstrip()
    return text


class LeadingNameFilter:
    """``strip_leading_names`` for an answer that arrives in pieces.

    The first characters are held back until they show whether the answer opens with a
    name; after that every piece passes through unchanged.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._names = [n for n in names if n.strip()]
        self._pattern = _leading_name_pattern(self._names)
        self._room = _pattern_room(self._names) if self._names else 1
        self._held = ""
        self._decided = False

    def feed(self, piece: str) -> str:
        """What of the answer so far can be shown now."""
        if self._decided:
            return piece
        self._held += piece
        while True:
            self._held = self._held.lstrip()
            if len(self._held) < self._room and _may_open_with_name(self._held, self._names):
                return ""
            # A tag is never longer than the room held back: the match is already final.
            found = self._pattern.match(self._held) if self._pattern else None
            if found is None:
                self._decided = True
                shown, self._held = self._held, ""
                return shown
            self._held = self._held[found.end() :]

    def finish(self) -> str:
        """The rest of a finished answer."""
        if self._decided:
            return ""
        self._decided = True
        rest, self._held = strip_leading_names(self._held, self._names), ""
        return rest
