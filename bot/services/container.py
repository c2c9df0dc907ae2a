"""The services the bot is built with (assembled in ``bot.app``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.inference.engine import InferenceEngine
from bot.metrics import Metrics
from bot.services.budgets import BudgetService
from bot.services.conversations import ConversationService
from bot.services.cooldowns import RateLimit
from bot.services.moderation import ModerationService
from bot.services.sentiment import SentimentService
from bot.services.summaries import SummaryService


@dataclass(frozen=True, slots=True)
class Services:
    engine: InferenceEngine
    sentiment: SentimentService
    summaries: SummaryService
    conversations: ConversationService
    cooldowns: RateLimit
    moderation: ModerationService
    budgets: BudgetService
    metrics: Metrics = field(default_factory=Metrics)
