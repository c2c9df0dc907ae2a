"""When a command was received, acknowledged and answered, and how it ended (for metrics)."""

from __future__ import annotations

import time
from typing import Any

import discord

from bot.metrics import Metrics


class TimedResponse(discord.InteractionResponse[Any]):
    """An interaction's response that notes when the interaction was first acknowledged.

    Every way a command acknowledges (deferring, replying, a modal) goes through it, so the
    cogs need not time anything themselves.
    """

    __slots__ = ("acknowledged_at", "outcome", "received_at")

    def __init__(self, parent: discord.Interaction[Any]) -> None:
        super().__init__(parent)
        self.received_at = time.perf_counter()
        self.acknowledged_at: float | None = None
        self.outcome = "ok"

    def _acknowledged(self) -> None:
        if self.acknowledged_at is None:
            self.acknowledged_at = time.perf_counter()

    async def defer(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().defer(*args, **kwargs)
        self._acknowledged()
        return result

    async def send_message(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().send_message(*args, **kwargs)
        self._acknowledged()
        return result

    async def edit_message(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().edit_message(*args, **kwargs)
        self._acknowledged()
        return result

    async def send_modal(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().send_modal(*args, **kwargs)
        self._acknowledged()
        return result


def start_timing(interaction: discord.Interaction[Any]) -> TimedResponse:
    """Give a just-received interaction a response that times it."""
    response = TimedResponse(interaction)
    # Interaction.response is a cached slot; discord.py's tree pre-fills its slots the same way.
    interaction._cs_response = response  # type: ignore[attr-defined]
    return response


def timing_of(interaction: discord.Interaction[Any]) -> TimedResponse | None:
    """The interaction's timing, if ``start_timing`` was called on it."""
    response = interaction.response
    return response if isinstance(response, TimedResponse) else None


def finish_timing(interaction: discord.Interaction[Any], metrics: Metrics) -> None:
    """Count the command with its outcome, time to acknowledge and time to answer."""
    timing = timing_of(interaction)
    if timing is None:
        return
    now = time.perf_counter()
    # A command's own name, never what the member sent (the label set stays bounded).
    command = interaction.command.qualified_name if interaction.command is not None else "unknown"
    acknowledged = timing.acknowledged_at
    metrics.command_finished(
        command,
        timing.outcome,
        now - timing.received_at,
        acknowledged - timing.received_at if acknowledged is not None else None,
    )
