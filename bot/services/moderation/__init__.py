"""Moderation: which messages are hostile, what is done about them, and what moderators decide."""

from bot.services.moderation.decisions import BUTTON_TIMEOUT_MINUTES, Decision, action_verb
from bot.services.moderation.gate import (
    ALERT_GROUP_WINDOW_S,
    ALERTS_PER_MINUTE,
    Alert,
    AlertGate,
)
from bot.services.moderation.service import (
    HOSTILE_EMOTIONS,
    MAX_CHECKED_CHARS,
    ActingFailedError,
    AlertKey,
    AlreadyDecidedError,
    CheckedMessage,
    ModerationActions,
    ModerationService,
    Verdict,
    is_retriable,
)
from bot.services.moderation.stats import ModerationStats, render_chart

__all__ = [
    "ALERTS_PER_MINUTE",
    "ALERT_GROUP_WINDOW_S",
    "BUTTON_TIMEOUT_MINUTES",
    "HOSTILE_EMOTIONS",
    "MAX_CHECKED_CHARS",
    "ActingFailedError",
    "Alert",
    "AlertGate",
    "AlertKey",
    "AlreadyDecidedError",
    "CheckedMessage",
    "Decision",
    "ModerationActions",
    "ModerationService",
    "ModerationStats",
    "Verdict",
    "action_verb",
    "is_retriable",
    "render_chart",
]
