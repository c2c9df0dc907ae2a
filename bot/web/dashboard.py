"""The dashboard tab: a guild's moderation events, chart and settings, and channel memories.

Everything is read and changed through the services the bot uses, never by SQL here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import gradio as gr
import pandas as pd

from bot.errors import InvalidInputError
from bot.services.conversations import ConversationService
from bot.services.moderation import Decision, ModerationService
from bot.storage.records import UNDECIDED, GuildSettings, ModerationEvent, Turn
from bot.web.access import WEB_GUILD_ID, WEB_GUILD_NAME, parse_id
from bot.web.errors import friendly

ANY = "any"
DECISION_CHOICES = [ANY, UNDECIDED, *(decision.past for decision in Decision)]
MEMORY_TURNS = 200  # the newest turns shown for a channel
EVENT_COLUMNS = ["id", "when (UTC)", "channel", "author", "label", "score", "action", "decision"]
TURN_COLUMNS = ["turn", "when (UTC)", "author", "role", "text"]


def _guild_choice(guild_id: int) -> str:
    return f"{guild_id} ({WEB_GUILD_NAME} chat)" if guild_id == WEB_GUILD_ID else str(guild_id)


def _required(value: int | None, what: str) -> int:
    if value is None:
        raise InvalidInputError(f"Pick a {what} first.")
    return value


def events_table(events: list[ModerationEvent]) -> pd.DataFrame:
    """Moderation events as the dashboard's table (ids as text: browsers round big numbers)."""
    rows = [
        [
            str(e.id),
            e.created_at.strftime("%Y-%m-%d %H:%M"),
            str(e.channel_id),
            str(e.author_id),
            e.label,
            round(e.score, 3),
            f"{e.action.value} (dry run)" if e.dry_run else e.action.value,
            e.decision or UNDECIDED,
        ]
        for e in events
    ]
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


def turns_table(turns: list[Turn]) -> pd.DataFrame:
    """Remembered turns, newest last."""
    rows = [
        [str(t.id), t.created_at.strftime("%Y-%m-%d %H:%M"), t.author_name, t.role.value, t.content]
        for t in turns
    ]
    return pd.DataFrame(rows, columns=TURN_COLUMNS)


def settings_text(settings: GuildSettings) -> str:
    """A guild's moderation settings as a Markdown table."""
    exempt_roles = ", ".join(map(str, sorted(settings.exempt_role_ids))) or "none"
    exempt_channels = ", ".join(map(str, sorted(settings.exempt_channel_ids))) or "none"
    rows = [
        ("moderation", "on" if settings.moderation_enabled else "off"),
        ("threshold", f"{settings.threshold:g}"),
        ("action", settings.action.value + (" (dry run)" if settings.dry_run else "")),
        ("timeout", f"{settings.timeout_minutes} min"),
        ("log channel", str(settings.log_channel_id or "none")),
        ("emotions", "on" if settings.use_emotions else "off"),
        ("exempt roles", exempt_roles),
        ("exempt channels", exempt_channels),
    ]
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


class Dashboard:
    """Handlers of the dashboard tab."""

    def __init__(self, moderation: ModerationService, conversations: ConversationService) -> None:
        self._moderation = moderation
        self._conversations = conversations

    async def guilds(self) -> dict[str, Any]:
        """The guild picker's choices: guilds with settings, events or memory, and web chat."""
        known = set(await self._moderation.guild_ids()) | await self._conversations.guild_ids()
        known.add(WEB_GUILD_ID)
        return gr.update(choices=[_guild_choice(g) for g in sorted(known)])

    async def moderation(
        self, guild: str, label: str, decision: str, channel: str, days: float
    ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
        """Filtered events, flags per day and the settings of a guild."""
        guild_id = _required(parse_id(guild, "guild"), "guild")
        events = await self._moderation.events(
            guild_id,
            int(days),
            label=label.strip() or None,
            decision=None if decision in ("", ANY) else decision,
            channel_id=parse_id(channel, "channel"),
        )
        stats = await self._moderation.stats(guild_id, int(days))
        per_day = pd.DataFrame(
            {
                "day": [day.strftime("%b %d") for day, _ in stats.per_day],
                "flagged": [count for _, count in stats.per_day],
            }
        )
        settings = await self._moderation.settings(guild_id)
        return events_table(events), per_day, settings_text(settings)

    async def channels(self, guild: str) -> dict[str, Any]:
        """The memory picker's choices: the guild's channels with remembered turns."""
        guild_id = _required(parse_id(guild, "guild"), "guild")
        found = await self._conversations.channels(guild_id)
        choices = [f"{c.channel_id} ({c.turns} turns)" for c in found]
        return gr.update(choices=choices, value=choices[0] if choices else None)

    async def memory(self, guild: str, channel: str) -> pd.DataFrame:
        """What the bot remembers of a channel."""
        guild_id = _required(parse_id(guild, "guild"), "guild")
        channel_id = _required(parse_id(channel, "channel"), "channel")
        return turns_table(await self._conversations.history(guild_id, channel_id, MEMORY_TURNS))

    async def delete_turn(self, guild: str, channel: str, turn: str) -> tuple[str, pd.DataFrame]:
        """Forget one turn of a channel."""
        guild_id = _required(parse_id(guild, "guild"), "guild")
        channel_id = _required(parse_id(channel, "channel"), "channel")
        turn_id = _required(parse_id(turn, "turn"), "turn (click a row)")
        deleted = await self._conversations.delete_turn(guild_id, channel_id, turn_id)
        status = f"Forgot turn {turn_id}." if deleted else f"Turn {turn_id} is already gone."
        return status, await self.memory(guild, channel)

    async def forget_channel(self, guild: str, channel: str) -> tuple[str, pd.DataFrame]:
        """Forget a channel's whole conversation (answers under way there stop)."""
        guild_id = _required(parse_id(guild, "guild"), "guild")
        channel_id = _required(parse_id(channel, "channel"), "channel")
        removed = await self._conversations.reset(guild_id, channel_id)
        return f"Forgot {removed} turns of channel {channel_id}.", await self.memory(guild, channel)


def picked_turn(table: pd.DataFrame, selected: gr.SelectData) -> str:
    """The turn id of the clicked row."""
    row = selected.index[0] if isinstance(selected.index, list | tuple) else selected.index
    return str(table.iloc[int(row)]["turn"]) if 0 <= int(row) < len(table) else ""


def dashboard_tab(
    moderation: ModerationService, conversations: ConversationService, *, protected: bool
) -> tuple[gr.Dropdown, Callable[[], Awaitable[dict[str, Any]]]]:
    """The dashboard tab's components and events (call inside a gr.Blocks); returns the guild
    picker and what fills its choices (when the page loads)."""
    board = Dashboard(moderation, conversations)
    if not protected:
        gr.Markdown(
            "WEB_PASSWORD is not set: anyone who can open this page on this machine sees the "
            "dashboard. Set it to require a login."
        )
    with gr.Row():
        guild = gr.Dropdown(label="Guild", allow_custom_value=True, elem_id="dashboard-guild")
        refresh = gr.Button("Reload guilds", size="sm")
    with gr.Tab("Moderation"):
        with gr.Row():
            label = gr.Textbox(label="Label", placeholder="any (e.g. negative, anger)")
            decision = gr.Dropdown(DECISION_CHOICES, value=ANY, label="Decision")
            channel = gr.Textbox(label="Channel id", placeholder="any")
            days = gr.Slider(1, 365, value=7, step=1, label="Days")
        show = gr.Button("Show", variant="primary", elem_id="dashboard-show")
        per_day = gr.BarPlot(x="day", y="flagged", title="Flagged messages per day", height=240)
        events = gr.Dataframe(headers=EVENT_COLUMNS, label="Events", interactive=False)
        settings = gr.Markdown(elem_id="dashboard-settings")
    with gr.Tab("Conversation memory"):
        with gr.Row():
            memory_channel = gr.Dropdown(label="Channel", allow_custom_value=True)
            load = gr.Button("Show memory", size="sm")
        turns = gr.Dataframe(headers=TURN_COLUMNS, label="Remembered turns", interactive=False)
        with gr.Row():
            turn = gr.Textbox(label="Turn (click a row)", max_length=20)
            delete = gr.Button("Delete turn", variant="stop", size="sm")
            forget = gr.Button("Forget the whole channel", variant="stop", size="sm")
        status = gr.Markdown()

    refresh.click(friendly(board.guilds), None, [guild], api_name="guilds")
    show.click(
        friendly(board.moderation),
        [guild, label, decision, channel, days],
        [events, per_day, settings],
        api_name="moderation_events",
    )
    guild.change(friendly(board.channels), [guild], [memory_channel], api_visibility="private")
    load.click(friendly(board.memory), [guild, memory_channel], [turns], api_name="memory")
    turns.select(picked_turn, [turns], [turn], api_visibility="private")
    delete.click(
        friendly(board.delete_turn),
        [guild, memory_channel, turn],
        [status, turns],
        api_name="delete_turn",
    )
    forget.click(
        friendly(board.forget_channel),
        [guild, memory_channel],
        [status, turns],
        api_name="forget_channel",
    )
    return guild, friendly(board.guilds)
