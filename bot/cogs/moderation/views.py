"""Alert buttons: custom ids carry the decision and the event, so they survive restarts."""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.services.moderation import Decision

COG_NAME = "Moderation"
_STYLES = {
    Decision.DISMISS: discord.ButtonStyle.secondary,
    Decision.DELETE: discord.ButtonStyle.danger,
    Decision.TIMEOUT: discord.ButtonStyle.danger,
}
_DECISIONS = "|".join(decision.value for decision in Decision)


def button_handler(interaction: discord.Interaction) -> Any:
    """The moderation cog, which answers its persistent buttons (``on_..._button``)."""
    cog = getattr(interaction.client, "get_cog", lambda _: None)(COG_NAME)
    assert cog is not None, "the moderation cog is not loaded"
    return cog


class AlertButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=rf"mod:(?P<decision>{_DECISIONS}):(?P<event_id>[0-9]+)",
):
    """An alert button for one decision on one event."""

    def __init__(self, decision: Decision, event_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=decision.label,
                style=_STYLES[decision],
                custom_id=f"mod:{decision.value}:{event_id}",
            )
        )
        self.decision = decision
        self.event_id = event_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[discord.ui.View],
        match: re.Match[str],
    ) -> AlertButton:
        return cls(Decision.from_key(match["decision"]), int(match["event_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        handler = button_handler(interaction)
        await handler.on_alert_button(interaction, self.decision, self.event_id)


def alert_view(event_id: int) -> discord.ui.View:
    """The buttons of a new alert, one per decision."""
    view = discord.ui.View(timeout=None)
    for decision in Decision:
        view.add_item(AlertButton(decision, event_id))
    return view
