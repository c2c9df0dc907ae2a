"""The services the bot and the web app are built with, and the one place they are assembled."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.inference.engine import EngineConfig, InferenceEngine
from bot.metrics import Metrics
from bot.services.budgets import BudgetLimits, BudgetService
from bot.services.conversations import ConversationService
from bot.services.cooldowns import RateLimit
from bot.services.moderation import ModerationService
from bot.services.retention import RetentionService
from bot.services.sentiment import SentimentService
from bot.services.summaries import SummaryService
from bot.settings import Settings
from bot.storage.budgets import GuildBudgetStore, TokenUsageStore
from bot.storage.engine import SessionFactory
from bot.storage.repositories import (
    ChannelSettingsStore,
    ConversationStore,
    GuildSettingsStore,
    ModerationEventStore,
)
from bot.storage.scores import ModerationHistory


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


def build_services(settings: Settings, sessions: SessionFactory, metrics: Metrics) -> Services:
    """Every service over one database and one inference engine (its models load on use)."""
    engine = InferenceEngine(EngineConfig.from_settings(settings), metrics)
    sentiment = SentimentService(engine)
    return Services(
        engine=engine,
        sentiment=sentiment,
        summaries=SummaryService(engine, sentiment),
        conversations=ConversationService(
            engine,
            ConversationStore(sessions),
            ChannelSettingsStore(sessions),
            max_new_tokens=settings.chat_max_new_tokens,
            answers_per_minute=settings.chat_answers_per_minute,
            queue_limit=settings.chat_queue_limit,
            memory=settings.conversation_memory,
            summary_tokens=settings.conversation_summary_tokens,
        ),
        cooldowns=RateLimit(1, settings.command_cooldown_s),
        moderation=ModerationService(
            engine,
            GuildSettingsStore(sessions),
            ModerationEventStore(sessions),
            metrics=metrics,
            history=ModerationHistory(sessions),
        ),
        budgets=BudgetService(
            TokenUsageStore(sessions),
            GuildBudgetStore(sessions),
            BudgetLimits(settings.member_daily_tokens, settings.guild_daily_tokens),
            count=engine.count_tokens,
        ),
        metrics=metrics,
    )


def build_retention(
    settings: Settings, sessions: SessionFactory, services: Services
) -> RetentionService:
    """The hourly deletion of what is older than the retention settings."""
    return RetentionService(
        services.conversations,
        ModerationEventStore(sessions),
        conversation_days=settings.conversation_retention_days,
        moderation_days=settings.moderation_retention_days,
        scores=ModerationHistory(sessions),
        scores_days=settings.moderation_scores_retention_days,
    )
