"""What /moderation review, tune and replay say, and the button that applies a tuning."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord

from bot.cogs.errors import report, send_ephemeral
from bot.formatting import MESSAGE_LIMIT, NO_MENTIONS, clip
from bot.services.moderation import LabelReview, ModerationService, Proposal

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT_S = 600.0


def review_text(reviews: Sequence[LabelReview], days: int) -> str:
    if not reviews:
        return f"No flag of the last {days} days was reviewed yet (Dismiss, Delete or Timeout)."
    lines = [f"**Reviewed flags, last {days} days** (confirmed = deleted or timed out):"]
    for r in reviews:
        precision = f" - precision {r.precision:.0%}" if r.precision is not None else ""
        lines.append(f"`{r.label}`: {r.confirmed} confirmed, {r.dismissed} dismissed{precision}")
    return clip("\n".join(lines), MESSAGE_LIMIT)


def proposals_text(proposals: Sequence[Proposal], target: float) -> str:
    if not proposals:
        return (
            f"Not enough reviewed flags to reach a precision of {target:.0%} on any label "
            "(each label needs a few confirmed and dismissed flags). Nothing to apply."
        )
    lines = [f"**Proposed thresholds** for a precision of at least {target:.0%}:"]
    for p in proposals:
        lines.append(
            f"`{p.label}` -> {p.threshold:.2f} (precision {p.precision:.0%}: keeps {p.kept} "
            f"confirmed, avoids {p.avoided} dismissed)"
        )
    lines.append("Nothing changes until you press **Apply**.")
    return clip("\n".join(lines), MESSAGE_LIMIT)


def replay_text(flagged: int, checked: int, threshold: float, label: str | None, days: int) -> str:
    on = f"`{label}`" if label else "any label"
    return (
        f"A threshold of {threshold:.2f} on {on} would have flagged **{flagged}** of the "
        f"{checked} messages checked in the last {days} days (scores are kept "
        "for a limited time; see the README's privacy notes)."
    )


class ConfirmTuning(discord.ui.View):
    """Apply / Cancel under a tuning proposal; only the moderator who asked may press them."""

    def __init__(
        self,
        service: ModerationService,
        guild_id: int,
        moderator_id: int,
        proposals: Sequence[Proposal],
    ) -> None:
        super().__init__(timeout=CONFIRM_TIMEOUT_S)
        self._service = service
        self._guild_id = guild_id
        self._moderator_id = moderator_id
        self._proposals = list(proposals)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self._moderator_id:
            await send_ephemeral(interaction, "Only the moderator who asked can apply this.")
            return False
        return True

    @discord.ui.button(label="Apply", style=discord.ButtonStyle.success)
    async def apply(
        self, interaction: discord.Interaction, button: discord.ui.Button[ConfirmTuning]
    ) -> None:
        try:
            await self._service.apply_thresholds(self._guild_id, self._proposals)
        except Exception as error:
            await send_ephemeral(interaction, report(error, "applying tuned thresholds"))
            return
        applied = ", ".join(f"{p.label} {p.threshold:.2f}" for p in self._proposals)
        self.stop()
        await interaction.response.edit_message(
            content=clip(f"Applied thresholds: {applied}.", MESSAGE_LIMIT),
            view=None,
            allowed_mentions=NO_MENTIONS,
        )

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(
        self, interaction: discord.Interaction, button: discord.ui.Button[ConfirmTuning]
    ) -> None:
        self.stop()
        await interaction.response.edit_message(content="Nothing was changed.", view=None)
