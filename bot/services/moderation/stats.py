"""What /moderation stats shows: counts and a chart of flagged messages per day."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from bot.errors import InvalidInputError


def check_days(days: int) -> None:
    if not 1 <= days <= 365:
        raise InvalidInputError("Pick between 1 and 365 days.")


def first_day(days: int) -> date:
    """The first UTC day of a period of ``days`` days that ends today."""
    return datetime.now(UTC).date() - timedelta(days=days - 1)


def day_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


@dataclass(frozen=True, slots=True)
class ModerationStats:
    days: int
    total: int
    by_action: dict[str, int]
    by_label: dict[str, int]
    top_channels: list[tuple[int, int]]
    per_day: list[tuple[date, int]]
    dismissed: int


def render_chart(stats: ModerationStats) -> bytes:
    """A PNG bar chart of flagged messages per day (slow: call it off the event loop)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 3), dpi=100)
    axes = figure.subplots()
    days = [day.strftime("%b %d") for day, _ in stats.per_day]
    axes.bar(days, [count for _, count in stats.per_day], color="#d9534f")
    axes.set_title(f"Flagged messages per day (last {stats.days} days)")
    axes.set_ylabel("messages")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if len(days) > 14:
        axes.set_xticks(days[:: len(days) // 14 + 1])
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
