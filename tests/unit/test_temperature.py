"""Channel temperature: one alert per heated period, never on too few messages, bounded memory."""

from __future__ import annotations

from collections import deque

from hypothesis import given
from hypothesis import strategies as st

from bot.services.moderation.temperature import ChannelTemperature

levels = st.floats(min_value=0.05, max_value=1.0)
flag_runs = st.lists(st.booleans(), max_size=200)


@given(flags=flag_runs, level=levels)
def test_it_heats_up_only_over_enough_messages_at_the_level(
    flags: list[bool], level: float
) -> None:
    temperature = ChannelTemperature(window=20, min_checked=8)
    recent: deque[bool] = deque(maxlen=20)
    for flagged in flags:
        recent.append(flagged)
        if temperature.observe(1, 2, flagged, level):
            assert len(recent) >= 8 and sum(recent) / len(recent) >= level


@given(flags=flag_runs, level=levels)
def test_a_second_alert_comes_only_after_the_channel_cooled_down(
    flags: list[bool], level: float
) -> None:
    temperature = ChannelTemperature(window=20, min_checked=8)
    cooled_since_alert = True
    for flagged in flags:
        if temperature.observe(1, 2, flagged, level):
            assert cooled_since_alert
            cooled_since_alert = False
        elif temperature.share(1, 2) <= level / 2:
            cooled_since_alert = True


def test_a_channel_flagged_throughout_alerts_once() -> None:
    temperature = ChannelTemperature(window=20, min_checked=8)
    alerts = [temperature.observe(1, 2, True, 0.5) for _ in range(500)]
    assert alerts.index(True) == 7 and alerts.count(True) == 1


def test_a_quiet_channel_starts_again_and_may_alert_again() -> None:
    now = [0.0]
    temperature = ChannelTemperature(window=20, min_checked=8, quiet_s=60, clock=lambda: now[0])
    assert sum(temperature.observe(1, 2, True, 0.5) for _ in range(10)) == 1
    now[0] += 61
    assert temperature.checked(1, 2) == 0
    assert sum(temperature.observe(1, 2, True, 0.5) for _ in range(10)) == 1


@given(flags=flag_runs)
def test_a_level_of_zero_is_off_and_remembers_nothing(flags: list[bool]) -> None:
    temperature = ChannelTemperature()
    assert not any(temperature.observe(1, 2, flagged, 0.0) for flagged in flags)
    assert temperature.tracked() == 0


def test_memory_is_bounded_and_a_guild_can_be_forgotten() -> None:
    temperature = ChannelTemperature(memory=100)
    for channel in range(1000):
        temperature.observe(channel % 3, channel, True, 0.5)
    assert temperature.tracked() == 100
    temperature.forget_guild(0)
    assert temperature.tracked() == 100 - sum(1 for c in range(900, 1000) if c % 3 == 0)
