"""Moderation: which messages are hostile, what is done about them, and what moderators decide."""

from bot.services.moderation.decisions import BUTTON_TIMEOUT_MINUTES, Decision, action_verb
from bot.services.moderation.gate import (
    ALERT_GROUP_WINDOW_S,
    ALERTS_PER_MINUTE,
    Alert,
    AlertGate,
)
from bot.services.moderation.learning import LabelReview, Proposal
from bot.services.moderation.service import (
    MAX_CHECKED_CHARS,
    MAX_SLOWMODE_MINUTES,
    ActingFailedError,
    AlertKey,
    AlreadyDecidedError,
    CheckedMessage,
    ModerationActions,
    ModerationService,
    Verdict,
    is_retriable,
)
from bot.services.moderation.signals import (
    HOSTILE_EMOTIONS,
    SIGNALS,
    TOXICITY_LABELS,
    active_signals,
    parse_signals,
    score_texts,
)
from bot.services.moderation.stats import ModerationStats, render_chart

__all__ = [
    "ALERTS_PER_MINUTE",
    "ALERT_GROUP_WINDOW_S",
    "BUTTON_TIMEOUT_MINUTES",
    "HOSTILE_EMOTIONS",
    "MAX_CHECKED_CHARS",
    "MAX_SLOWMODE_MINUTES",
    "SIGNALS",
    "TOXICITY_LABELS",
    "ActingFailedError",
    "Alert",
    "AlertGate",
    "AlertKey",
    "AlreadyDecidedError",
    "CheckedMessage",
    "Decision",
    "LabelReview",
    "ModerationActions",
    "ModerationService",
    "ModerationStats",
    "Proposal",
    "Verdict",
    "action_verb",
    "active_signals",
    "is_retriable",
    "parse_signals",
    "render_chart",
    "score_texts",
]
