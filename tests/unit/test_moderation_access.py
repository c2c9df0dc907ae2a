"""Who may time out whom through an alert button, and how decisions are written on alerts."""

from __future__ import annotations

import discord
from hypothesis import given
from hypothesis import strategies as st

from bot.cogs.moderation_access import timeout_refusal
from bot.cogs.moderation_alerts import DECISION_FIELD, with_decision

OWNER = 1
ranks = st.integers(min_value=0, max_value=20)
members = st.integers(min_value=1, max_value=4)  # 1 is the owner


def _refusal(
    target: int, target_rank: int, clicker: int, clicker_rank: int, bot: int
) -> str | None:
    return timeout_refusal(
        target_id=target,
        target_rank=target_rank,
        clicker_id=clicker,
        clicker_rank=clicker_rank,
        bot_rank=bot,
        owner_id=OWNER,
    )


@given(members, ranks, members, ranks, ranks)
def test_never_the_owner_nor_anyone_at_or_above_the_bot(
    target: int, target_rank: int, clicker: int, clicker_rank: int, bot: int
) -> None:
    allowed = _refusal(target, target_rank, clicker, clicker_rank, bot) is None
    if target == OWNER or target_rank >= bot:
        assert not allowed


@given(members, ranks, members, ranks, ranks)
def test_a_member_only_times_out_members_ranked_below_them_unless_they_own_the_server(
    target: int, target_rank: int, clicker: int, clicker_rank: int, bot: int
) -> None:
    allowed = _refusal(target, target_rank, clicker, clicker_rank, bot) is None
    if allowed and clicker != OWNER:
        assert target_rank < clicker_rank
    if clicker == OWNER and target != OWNER and target_rank < bot:
        assert allowed  # the owner may time out anyone the bot can


@given(members, ranks, members, ranks, ranks, st.integers(min_value=0, max_value=5))
def test_a_higher_rank_never_loses_a_permission(
    target: int, target_rank: int, clicker: int, clicker_rank: int, bot: int, raise_by: int
) -> None:
    if _refusal(target, target_rank, clicker, clicker_rank, bot) is None:
        assert _refusal(target, target_rank, clicker, clicker_rank + raise_by, bot) is None


def test_roles_compare_as_discord_orders_them() -> None:
    # The function is used with discord.py roles: position first, then id.
    assert _refusal(2, 3, 3, 4, 5) is None
    assert "below yours" in (_refusal(2, 4, 3, 4, 5) or "")
    assert "at or above mine" in (_refusal(2, 5, OWNER, 0, 5) or "")
    assert "owner" in (_refusal(OWNER, 0, 3, 4, 5) or "")


@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=4))
def test_a_decision_is_written_once_and_the_rest_of_the_alert_is_kept(decisions: list[str]) -> None:
    alert = discord.Embed(title="Flagged message", description="text")
    alert.add_field(name="Author", value="<@1>").set_footer(text="event #1 · +2 more")

    embed = alert
    for decision in decisions:
        embed = with_decision(embed, decision)

    assert [f.name for f in embed.fields] == ["Author", DECISION_FIELD]
    assert embed.fields[-1].value == decisions[-1]
    assert (embed.title, embed.description, embed.footer.text) == (
        "Flagged message",
        "text",
        "event #1 · +2 more",
    )
    assert [f.name for f in alert.fields] == ["Author"]  # the original is left alone
