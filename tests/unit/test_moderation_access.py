"""Who may time out whom through an alert button, who may read what alerts quote, and how
decisions are written on alerts."""

from __future__ import annotations

from itertools import combinations

import discord
from hypothesis import given
from hypothesis import strategies as st

from bot.cogs.moderation.access import (
    ServerRoles,
    ViewOverwrites,
    some_roles_see_only_the_log,
    timeout_refusal,
)
from bot.cogs.moderation.alerts import DECISION_FIELD, with_decision

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


# --- who can read a channel, by any combination of roles ------------------------------

VIEW, ADMIN = discord.Permissions(view_channel=True).value, 8
ROLES = range(1, 6)
overwrite_values = st.sampled_from(["allow", "deny", None])


@st.composite
def channels(draw: st.DrawFn) -> tuple[ViewOverwrites, dict[int, str | None], str | None]:
    everyone = draw(overwrite_values)
    per_role = {role: draw(overwrite_values) for role in ROLES}
    rules = ViewOverwrites(
        everyone_allow=everyone == "allow",
        everyone_deny=everyone == "deny",
        allow=frozenset(r for r, v in per_role.items() if v == "allow"),
        deny=frozenset(r for r, v in per_role.items() if v == "deny"),
    )
    return rules, per_role, everyone


def discord_views(
    server: ServerRoles, per_role: dict[int, str | None], everyone: str | None, held: set[int]
) -> bool:
    """Discord's documented computation, on permission bits, for a member holding ``held``."""
    permissions = VIEW if server.everyone_views else 0
    for role in held:
        permissions |= (VIEW if role in server.viewers else 0) | (
            ADMIN if role in server.admins else 0
        )
    if permissions & ADMIN:
        return True
    if everyone == "deny":
        permissions &= ~VIEW
    if everyone == "allow":
        permissions |= VIEW
    allow = deny = 0
    for role in held:
        allow |= VIEW if per_role[role] == "allow" else 0
        deny |= VIEW if per_role[role] == "deny" else 0
    return bool((permissions & ~deny) | allow)


@given(
    log=channels(),
    source=channels(),
    everyone_views=st.booleans(),
    viewers=st.frozensets(st.sampled_from(ROLES)),
    admins=st.frozensets(st.sampled_from(ROLES), max_size=2),
)
def test_a_mix_of_roles_that_reads_the_log_only_is_always_found(
    log: tuple[ViewOverwrites, dict[int, str | None], str | None],
    source: tuple[ViewOverwrites, dict[int, str | None], str | None],
    everyone_views: bool,
    viewers: frozenset[int],
    admins: frozenset[int],
) -> None:
    server = ServerRoles(frozenset(ROLES), everyone_views, viewers, admins)
    mixes = [set(mix) for size in range(len(ROLES) + 1) for mix in combinations(ROLES, size)]
    leaks = [
        mix
        for mix in mixes
        if discord_views(server, log[1], log[2], mix)
        and not discord_views(server, source[1], source[2], mix)
    ]

    assert some_roles_see_only_the_log(log[0], source[0], server) == bool(leaks), leaks


def test_a_deny_on_the_source_counts_with_a_role_that_opens_the_log() -> None:
    helper, newbie = 1, 2
    server = ServerRoles(frozenset({helper, newbie}))  # @everyone views channels by default
    log = ViewOverwrites(everyone_deny=True, allow=frozenset({helper}))
    veterans = ViewOverwrites(deny=frozenset({newbie}))

    assert some_roles_see_only_the_log(log, veterans, server)  # a helper who is a newbie
    assert not some_roles_see_only_the_log(log, ViewOverwrites(), server)
