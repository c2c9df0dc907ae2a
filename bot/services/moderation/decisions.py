"""What a moderator can decide on an alert: one enum for its word, button, permission and record."""

from __future__ import annotations

from enum import Enum

from bot.storage.records import GuildSettings, ModerationAction

# How long the Timeout button times a member out.
BUTTON_TIMEOUT_MINUTES = 10


class Decision(Enum):
    """A moderator's decision on an alert.

    The value is the word in a button's custom id; ``label`` is the button's text,
    ``permission`` the Discord permission the clicking member needs and ``past`` the
    text stored on the event (and shown on the alert).
    """

    label: str
    permission: str
    past: str
    confirms: bool  # whether it says the flag was right (for reviews and tuning)

    def __new__(cls, key: str, label: str, permission: str, past: str, confirms: bool) -> Decision:
        member = object.__new__(cls)
        member._value_ = key
        member.label = label
        member.permission = permission
        member.past = past
        member.confirms = confirms
        return member

    DISMISS = ("dismiss", "Dismiss (false positive)", "manage_messages", "dismissed", False)
    DELETE = ("delete", "Delete message", "manage_messages", "deleted", True)
    TIMEOUT = (
        "timeout",
        f"Timeout {BUTTON_TIMEOUT_MINUTES} min",
        "moderate_members",
        "timed out",
        True,
    )

    @classmethod
    def from_key(cls, key: str) -> Decision:
        """The decision named ``key`` in a custom id (ValueError if none is)."""
        for decision in cls:
            if decision.value == key:
                return decision
        raise ValueError(f"unknown decision {key!r}")

    @classmethod
    def from_past(cls, past: str | None) -> Decision | None:
        """The decision stored as ``past`` (None when undecided or unknown)."""
        return next((decision for decision in cls if decision.past == past), None)


def action_verb(settings: GuildSettings) -> str:
    """What the configured action does, as a verb phrase ("delete it")."""
    return {
        ModerationAction.LOG: "log it",
        ModerationAction.REACT: "react",
        ModerationAction.DELETE: "delete it",
        ModerationAction.TIMEOUT: f"time the author out for {settings.timeout_minutes} min",
    }[settings.action]
