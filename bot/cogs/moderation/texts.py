"""What the moderation commands and alerts say: pure functions of records."""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bot.formatting import MESSAGE_LIMIT, clip, fit_embed, join_within, truncate
from bot.services.explain import WordEffect, effects_text
from bot.services.moderation import ModerationStats, active_signals
from bot.storage.records import GuildSettings, ModerationEvent

SCORES_SHOWN = 8


def jump_url(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def reasons_line(reasons: Sequence[WordEffect]) -> str:
    """ "flagged mainly for 'idiot' (-0.62)", Markdown in the words escaped."""
    escaped = [WordEffect(discord.utils.escape_markdown(r.word), r.effect) for r in reasons]
    return f"flagged mainly for {effects_text(escaped)}" if reasons else ""


def alert_embed(
    event: ModerationEvent, excerpt: str, outcome: str, reasons: Sequence[WordEffect] = ()
) -> discord.Embed:
    embed = discord.Embed(
        title="Flagged message" + (" (dry run)" if event.dry_run else ""),
        description=truncate(excerpt, 300),
        url=jump_url(event.guild_id, event.channel_id, event.message_id),
        colour=discord.Colour.red(),
    )
    embed.add_field(name="Author", value=f"<@{event.author_id}>")
    embed.add_field(name="Channel", value=f"<#{event.channel_id}>")
    embed.add_field(name="Score", value=f"{event.label} {event.score:.2f}")
    if reasons:
        embed.add_field(name="Why", value=reasons_line(reasons), inline=False)
    if event.scores:
        top = sorted(event.scores.items(), key=lambda item: -item[1])[:SCORES_SHOWN]
        embed.add_field(
            name="All scores", value=", ".join(f"{k} {v:.2f}" for k, v in top), inline=False
        )
    embed.add_field(name="Action", value=outcome, inline=False)
    embed.set_footer(text=f"event #{event.id}")
    return fit_embed(embed)


def stats_text(stats: ModerationStats, guild_name: str) -> str:
    lines = [f"**Moderation in {guild_name}, last {stats.days} days**: {stats.total} flagged"]
    if stats.total:
        lines.append("By action: " + ", ".join(f"{k} {v}" for k, v in stats.by_action.items()))
        lines.append("By label: " + ", ".join(f"{k} {v}" for k, v in stats.by_label.items()))
        lines.append(f"Dismissed as false positives: {stats.dismissed}")
        budget = MESSAGE_LIMIT - len("\n".join(lines)) - len("\nTop channels: ")
        channels = join_within([f"<#{c}> {n}" for c, n in stats.top_channels], budget)
        lines.insert(3, "Top channels: " + channels)
    return clip("\n".join(lines), MESSAGE_LIMIT)


def settings_text(settings: GuildSettings, extra: str = "") -> str:
    """The settings, then ``extra``; long lists of exemptions are cut so that all fits."""
    log_channel = f"<#{settings.log_channel_id}>" if settings.log_channel_id else "none set"
    lines = [
        f"Moderation checks are **{'on' if settings.moderation_enabled else 'off'}**.",
        f"Threshold: {settings.threshold:.2f} - action: {settings.action.value}"
        + (f" ({settings.timeout_minutes} min)" if settings.action == "timeout" else "")
        + (" - **dry run**" if settings.dry_run else ""),
        "Signals: " + ", ".join(sorted(active_signals(settings))),
        "Label thresholds: "
        + (
            ", ".join(f"{k} {v:.2f}" for k, v in sorted(settings.label_thresholds.items())[:20])
            or "none (every label uses the threshold)"
        ),
        "Channel temperature: "
        + (
            f"alert at {settings.temperature_level:.0%} flagged, slowmode button lasts "
            f"{settings.slowmode_minutes} min"
            if settings.temperature_level > 0
            else "off"
        ),
        f"Log channel: {log_channel}",
    ]
    exempt = "\nExempt roles: {} - exempt channels: {}"
    room = MESSAGE_LIMIT - len("\n".join(lines)) - len(exempt.format("", "")) - len(extra)
    roles = join_within([f"<@&{r}>" for r in sorted(settings.exempt_role_ids)], room // 2)
    roles = roles or "none"
    channels = join_within(
        [f"<#{c}>" for c in sorted(settings.exempt_channel_ids)], room - len(roles)
    )
    return "\n".join(lines) + exempt.format(roles, channels or "none") + extra
