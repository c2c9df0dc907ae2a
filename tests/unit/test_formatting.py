from __future__ import annotations

import copy
import re
import time
import unicodedata
from datetime import UTC, date, datetime
from functools import partial

import discord
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.cogs.moderation.texts import alert_embed, settings_text, stats_text
from bot.cogs.sentiment import sentiment_embed
from bot.cogs.summarize import summary_embed
from bot.formatting import (
    EMBED_AUTHOR_LIMIT,
    EMBED_DESCRIPTION_LIMIT,
    EMBED_FIELD_COUNT_LIMIT,
    EMBED_FIELD_NAME_LIMIT,
    EMBED_FIELD_VALUE_LIMIT,
    EMBED_FOOTER_LIMIT,
    EMBED_TITLE_LIMIT,
    EMBED_TOTAL_LIMIT,
    FENCE_CLOSE,
    MESSAGE_LIMIT,
    bar,
    clip,
    fit_embed,
    join_within,
    plan_split,
    split_message,
    truncate,
)
from bot.inference.classify import LabelScore
from bot.services.moderation import ModerationStats
from bot.services.sentiment import Mood, SentimentResult
from bot.services.summaries import Bullet, ChannelSummary
from bot.storage.records import GuildSettings, ModerationAction, ModerationEvent
from tests.unit.deadline import within

REOPEN = re.compile(r"```[A-Za-z0-9_+\-.#]{0,16}\n")
GLUE = ("\u200d", "\U0001f3fb", "\U0001f3fd", "\u0301", "\ufe0f")
PROPERTY = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(PROPERTY, max_examples=60)

# --- strategies -------------------------------------------------------------------------

TOKENS = [
    "word",
    "a",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "`",
    "``",
    "```",
    "````",
    "```python\n",
    "```py\n",
    "\n```\n",
    "```c++\n",
    "```" + "x" * 40 + "\n",
    "```not a language\n",
    "\u200b",
    "\u200d",
    "e\u0301",
    "\U0001f600",
    "\U0001f44d\U0001f3fd",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001f1eb\U0001f1f7",
    "#",
    "**bold**",
    "<@123>",
]
RUN_CHARACTERS = ["x", " ", "\n", "`", "\u200b", "\u200d", "\U0001f600", "e\u0301", "ab "]

runs = st.builds(lambda s, n: s * n, st.sampled_from(RUN_CHARACTERS), st.integers(0, 700))
tokens = st.one_of(st.sampled_from(TOKENS), st.text(max_size=12), runs)
texts = st.lists(tokens, max_size=60).map("".join)
limits = st.one_of(st.integers(20, 120), st.integers(121, 2500), st.just(MESSAGE_LIMIT))


def fences(text: str) -> list[int]:
    """Fence positions as Discord pairs them: left to right, never overlapping."""
    found, position = [], text.find("```")
    while position != -1:
        found.append(position)
        position = text.find("```", position + 3)
    return found


def in_code(text: str) -> list[bool]:
    """For each character of ``text``, whether Discord shows it inside a code block."""
    markers, inside, flags = set(fences(text)), False, []
    for position in range(len(text)):
        inside ^= position in markers
        flags.append(inside)
    return flags


def split(text: str, limit: int) -> list[str]:
    """split_message, failing instead of hanging the test run."""
    return within(10, partial(split_message, text, limit))


def check_split(text: str, limit: int) -> list[str]:
    """Every promise of split_message/plan_split on one input; returns the pieces."""
    plan = within(10, partial(plan_split, text, limit))
    pieces = split(text, limit)
    assert pieces == [p.reopen + text[p.start : p.end] + p.close for p in plan]
    if not text.strip():
        assert pieces == []
        return pieces
    if len(text.strip()) <= limit:
        assert pieces == [text.strip()]  # what fits is never touched
    markers = fences(text)
    text_in_code = in_code(text)
    position = 0
    for index, (piece, part) in enumerate(zip(pieces, plan, strict=True)):
        assert 0 < len(piece) <= limit
        assert text[part.start : part.end].strip(), "a piece with no text of its own"
        assert part.close in ("", FENCE_CLOSE)
        # Only whitespace is left out between pieces, or a closing fence replaced by `close`.
        gap = text[position : part.start].strip()
        previous = plan[index - 1] if index else None
        assert gap == "" or (gap == "```" and previous is not None and previous.close)
        if previous is not None and previous.close and gap == "":
            assert REOPEN.fullmatch(part.reopen), part.reopen
            opening = markers[sum(1 for m in markers if m < previous.end) - 1]
            language = part.reopen[3:-1]
            assert not language or text.startswith(language + "\n", opening + 3)
        else:
            assert part.reopen == ""
        if len(pieces) > 1:
            assert piece.count("```") % 2 == 0, piece
            # Every character is shown as code exactly when it was code in the whole text.
            shown_as_code = in_code(piece)[len(part.reopen) :]
            for offset, was_code in enumerate(text_in_code[part.start : part.end]):
                if text[part.start + offset] not in "` \n":
                    assert shown_as_code[offset] == was_code, (piece, offset)
        position = part.end
    # What follows the last piece: whitespace, or its closing fence replaced by `close`.
    assert text[position:].strip() in ("", "```" if plan[-1].close else "")
    return pieces


# --- split_message ----------------------------------------------------------------------


def test_short_text_is_one_piece() -> None:
    assert split_message("hello") == ["hello"]
    assert split_message("  \n ") == []


def test_long_prose_splits_on_words_within_the_limit() -> None:
    text = " ".join(f"word{i}" for i in range(1500))

    pieces = split_message(text)

    assert len(pieces) > 1
    assert all(len(p) <= MESSAGE_LIMIT for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_code_block_cut_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print({i})" for i in range(400))
    text = f"Here you go:\n```python\n{code}\n```\nDone."

    pieces = check_split(text, MESSAGE_LIMIT)

    assert len(pieces) > 1
    for piece in pieces:
        assert len(piece) <= MESSAGE_LIMIT
        assert piece.count("```") % 2 == 0, piece[-50:]
    assert pieces[1].startswith("```python\n")
    rejoined = "\n".join(pieces)
    assert all(f"print({i})" in rejoined for i in range(400))


def test_a_word_longer_than_the_limit_is_still_split() -> None:
    pieces = split_message("x" * 4500)
    assert [len(p) for p in pieces] == [1996, 1996, 508]


def test_tiny_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_message("abc", limit=5)


def test_a_fence_line_of_prose_returns_and_is_not_reopened_as_a_language() -> None:
    text = "```" + "word " * 400  # used to loop forever: the line was reopened every time

    pieces = within(5, lambda: check_split(text, MESSAGE_LIMIT))

    assert len(pieces) == 2
    assert pieces[1].startswith("```\n")
    assert "".join(pieces).count("word") == 400


def test_only_a_short_language_is_reopened() -> None:
    long_language = "```" + "a" * 17 + "\n" + "b\n" * 30
    odd_language = "```py!\n" + "b\n" * 30

    assert split_message(long_language, 40)[1].startswith("```\n")
    assert split_message(odd_language, 40)[1].startswith("```\n")
    assert split_message("```c#\n" + "b\n" * 30, 40)[1].startswith("```c#\n")


def test_a_piece_never_ends_on_an_opening_fence_line() -> None:
    text = "intro " * 5 + "```python\n" + "code\n" * 20 + "```"

    pieces = check_split(text, 40)

    assert pieces[0] == ("intro " * 5).strip()
    assert pieces[1].startswith("```python\ncode")


def test_a_block_closing_at_a_cut_is_not_reopened_empty() -> None:
    for limit in range(20, 60):
        text = "```py\n" + "ab\n" * 12 + "```\nafter the code"
        pieces = check_split(text, limit)
        assert not any(re.match(r"```\w*\n```", piece) for piece in pieces), (limit, pieces)


def test_code_keeps_its_indentation_across_a_cut() -> None:
    text = "```py\n" + "".join(f"    line{i}\n" for i in range(40)) + "```"

    pieces = check_split(text, 100)

    assert all(piece.startswith("```py\n    line") for piece in pieces[1:])


def test_joined_characters_stay_together_in_a_long_word() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    for cluster in ("e\u0301", "\U0001f44d\U0001f3fd", family, "a\ufe0f"):
        for limit in range(20, 40):
            for piece in check_split(cluster * 300, limit):
                assert piece[0] not in GLUE and piece[-1] != "\u200d", (cluster, limit)


def test_two_hundred_kilobytes_split_in_linear_time() -> None:
    shapes = {
        "prose": "lorem ipsum dolor " * 11_200,
        "one word": "x" * 200_000,
        "newlines": "\n" * 100_000 + "a" + "\n" * 100_000 + "b",
        "backticks": "`" * 200_000,
        "fence line": "```" + "word " * 40_000,
        "code": ("```py\n" + "print('x')\n" * 180 + "```\n") * 100,
        "emoji": "\U0001f600\u200d" * 100_000,
    }
    for name, text in shapes.items():
        for limit in (20, MESSAGE_LIMIT):
            started = time.perf_counter()
            pieces = within(30, partial(split_message, text, limit))
            elapsed = time.perf_counter() - started
            assert elapsed < 3.0, (name, limit, elapsed)  # about 0.1-0.3 s when idle
            assert all(0 < len(p) <= limit for p in pieces)


@PROPERTY
@given(text=texts, limit=limits)
def test_split_keeps_every_promise(text: str, limit: int) -> None:
    check_split(text, limit)


@PROPERTY
@given(text=st.text(max_size=3000), limit=st.integers(20, 200))
def test_split_keeps_every_promise_on_any_text(text: str, limit: int) -> None:
    check_split(text, limit)


@PROPERTY
@given(text=texts, limit=limits, data=st.data())
def test_a_longer_text_keeps_the_earlier_pieces(text: str, limit: int, data: st.DataObject) -> None:
    # Streaming re-splits the growing answer and edits only what changed.
    prefix = text[: data.draw(st.integers(0, len(text)), label="prefix length")]

    before = split(prefix, limit)
    after = split(text, limit)

    assert after[: max(0, len(before) - 1)] == before[:-1]
    assert len(after) >= len(before)


@PROPERTY
@given(parts=st.lists(tokens, max_size=40), limit=st.integers(20, 80))
def test_a_text_growing_part_by_part_keeps_its_finished_pieces(
    parts: list[str], limit: int
) -> None:
    text, shown = "", []
    for part in parts:
        text += part
        pieces = split(text, limit)
        assert pieces[: max(0, len(shown) - 1)] == shown[:-1]
        shown = pieces


@PROPERTY
@given(
    clusters=st.lists(
        st.sampled_from(["a", "e\u0301", "\U0001f44d\U0001f3fd", "\U0001f600", "x\u200dy"]),
        min_size=1,
        max_size=400,
    ),
    limit=st.integers(20, 80),
)
def test_a_long_word_is_cut_between_characters(clusters: list[str], limit: int) -> None:
    for piece in check_split("".join(clusters), limit):
        assert unicodedata.category(piece[0]) not in ("Mn", "Mc", "Me")
        assert piece[0] not in ("\u200d", "\U0001f3fd") and piece[-1] != "\u200d"


# --- clip, join_within, fit_embed -------------------------------------------------------


@PROPERTY
@given(text=texts, limit=st.integers(0, 300))
def test_clip_keeps_a_prefix_within_the_limit(text: str, limit: int) -> None:
    clipped = clip(text, limit)

    assert len(clipped) <= limit
    if len(text) <= limit:
        assert clipped == text
    else:
        assert clipped == "" or (clipped.endswith("…") and text.startswith(clipped[:-1]))


items = st.lists(
    st.one_of(
        st.text(max_size=30).filter(lambda s: "…" not in s),
        st.integers(10**17, 10**19).map(lambda i: f"<@&{i}>"),
    ),
    max_size=120,
)


@FEW
@given(items=items, budget=st.integers(0, 2500), separator=st.sampled_from([", ", "\n", " "]))
def test_join_within_shows_what_fits_and_counts_the_rest(
    items: list[str], budget: int, separator: str
) -> None:
    joined = join_within(items, budget, separator)

    assert len(joined) <= budget
    if len(separator.join(items)) <= budget:
        assert joined == separator.join(items)
        return
    match = re.fullmatch(r"(.*)… and (\d+) more", joined, re.DOTALL)
    if match is None:  # not even "… and N more" fits
        assert joined in ("", "…") and budget < len(f"… and {len(items)} more")
        return
    hidden = int(match[2])
    shown = len(items) - hidden
    assert 0 < hidden <= len(items)
    assert match[1] == "".join(item + separator for item in items[:shown])
    # One more item would not have fitted.
    longer = "".join(item + separator for item in items[: shown + 1]) + f"… and {hidden - 1} more"
    assert hidden == 1 or len(longer) > budget


def test_join_within_examples() -> None:
    roles = [f"<@&{i}>" for i in range(10)]

    assert join_within(roles, 100) == ", ".join(roles)
    assert join_within(roles, 30) == "<@&0>, <@&1>, … and 8 more"
    assert join_within(["first line", "second line", "third line"], 30, "\n") == (
        "first line\n… and 2 more"
    )
    assert join_within(roles, 14) == "… and 10 more"
    assert join_within(roles, 3) == "…"
    assert join_within([], 0) == ""


big = st.builds(
    lambda s, n: s * n, st.sampled_from(["a", "é", "\U0001f600", " ", "\n"]), st.integers(0, 7000)
)
embed_text = st.one_of(st.text(max_size=40), big)


@st.composite
def embeds(draw: st.DrawFn) -> discord.Embed:
    embed = discord.Embed(title=draw(embed_text) or None, description=draw(embed_text) or None)
    for _ in range(draw(st.integers(0, 40))):
        embed.add_field(name=draw(embed_text), value=draw(embed_text), inline=draw(st.booleans()))
    if draw(st.booleans()):
        embed.set_footer(text=draw(embed_text))
    if draw(st.booleans()):
        embed.set_author(name=draw(embed_text), url="https://example.org")
    return embed


def assert_within_discord_limits(embed: discord.Embed) -> None:
    assert len(embed.title or "") <= EMBED_TITLE_LIMIT
    assert len(embed.description or "") <= EMBED_DESCRIPTION_LIMIT
    assert len(embed.fields) <= EMBED_FIELD_COUNT_LIMIT
    for field in embed.fields:
        assert (field.name or "").strip() and len(field.name or "") <= EMBED_FIELD_NAME_LIMIT
        assert (field.value or "").strip() and len(field.value or "") <= EMBED_FIELD_VALUE_LIMIT
    assert len(embed.footer.text or "") <= EMBED_FOOTER_LIMIT
    assert len(embed.author.name or "") <= EMBED_AUTHOR_LIMIT
    assert len(embed) <= EMBED_TOTAL_LIMIT


def kept(original: str | None, now: str | None) -> bool:
    """Whether ``now`` is ``original`` or a clipped prefix of it."""
    original, now = original or "", now or ""
    return now == original or now == "" or original.startswith(now.removesuffix("…"))


@FEW
@given(embed=embeds())
def test_fit_embed_respects_every_limit_and_keeps_prefixes(embed: discord.Embed) -> None:
    before = copy.deepcopy(embed)  # Embed.copy() shares the list of fields

    fitted = fit_embed(embed)

    assert_within_discord_limits(fitted)
    assert fitted.to_dict()  # still a valid embed
    assert kept(before.title, fitted.title)
    assert kept(before.description, fitted.description)
    assert kept(before.footer.text, fitted.footer.text)
    for old, new in zip(before.fields, fitted.fields, strict=False):
        assert kept(old.name, new.name) or (new.name == "\u200b" and not (old.name or "").strip())
        assert kept(old.value, new.value) or (
            new.value == "\u200b" and not (old.value or "").strip()
        )
        assert old.inline == new.inline
    if already_fits(before):
        assert fitted.to_dict() == before.to_dict()  # nothing to change


def already_fits(embed: discord.Embed) -> bool:
    parts = [
        (embed.title, EMBED_TITLE_LIMIT),
        (embed.description, EMBED_DESCRIPTION_LIMIT),
        (embed.footer.text, EMBED_FOOTER_LIMIT),
        (embed.author.name, EMBED_AUTHOR_LIMIT),
    ]
    for field in embed.fields:
        parts += [(field.name, EMBED_FIELD_NAME_LIMIT), (field.value, EMBED_FIELD_VALUE_LIMIT)]
    return (
        len(embed) <= EMBED_TOTAL_LIMIT
        and len(embed.fields) <= EMBED_FIELD_COUNT_LIMIT
        and all(len(text or "") <= limit for text, limit in parts)
        and all(
            (field.name or "").strip() and (field.value or "").strip() for field in embed.fields
        )
    )


def test_embeds_of_the_cogs_stay_within_discord_limits() -> None:
    long = "word " * 2000
    summary = ChannelSummary(
        bullets=tuple(Bullet(long, 10**18 + i) for i in range(40)),
        mood=Mood(positive=3, negative=1, average_positive=0.7),
        messages_used=500,
        skipped_bots=2,
        skipped_no_text=1,
    )
    embed = summary_embed(summary, 10**18, 10**18)
    assert_within_discord_limits(embed)
    assert (embed.description or "").endswith("more")
    assert (embed.description or "").count("[→]") == (embed.description or "").count("\n")

    result = SentimentResult("x" * 1000, 0.5, tuple(LabelScore("y" * 500, 0.1) for _ in range(30)))
    assert_within_discord_limits(sentiment_embed(result, long))
    assert_within_discord_limits(sentiment_embed(SentimentResult("positive", 0.9), ""))

    event = ModerationEvent(
        id=1,
        guild_id=1,
        channel_id=2,
        message_id=3,
        author_id=4,
        label="z" * 3000,
        score=0.99,
        action=ModerationAction.LOG,
        dry_run=False,
        action_succeeded=True,
        decision=None,
        decided_by=None,
        created_at=datetime.now(UTC),
    )
    assert_within_discord_limits(alert_embed(event, long, "o" * 3000))


# --- lists in replies -------------------------------------------------------------------


def test_settings_with_many_exemptions_fit_in_one_message() -> None:
    roles = frozenset(10**18 + i for i in range(80))
    channels = frozenset(2 * 10**18 + i for i in range(80))
    settings = GuildSettings(
        guild_id=1,
        log_channel_id=3 * 10**18,
        exempt_role_ids=roles,
        exempt_channel_ids=channels,
        action=ModerationAction.TIMEOUT,
        dry_run=True,
    )

    text = settings_text(settings)

    assert len(text) <= MESSAGE_LIMIT
    assert f"Exempt roles: <@&{min(roles)}>" in text
    assert re.search(r"<@&\d+>, … and \d+ more - exempt channels: <#\d+>", text)
    assert re.search(r"<#\d+>, … and \d+ more$", text)
    shown = len(re.findall(r"<@&\d+>", text)) + len(re.findall(r"<#\d+>", text)) - 1
    hidden = sum(int(n) for n in re.findall(r"and (\d+) more", text))
    assert shown + hidden == 160


def test_settings_with_few_exemptions_list_them_all() -> None:
    text = settings_text(GuildSettings(guild_id=1, exempt_role_ids=frozenset({5})))

    assert text.endswith("Exempt roles: <@&5> - exempt channels: none")


def test_stats_with_many_channels_fit_in_one_message() -> None:
    stats = ModerationStats(
        days=7,
        total=900,
        by_action={"log": 900},
        by_label={"negative": 900},
        top_channels=[(10**18 + i, 900 - i) for i in range(200)],
        per_day=[(date(2024, 1, 1), 900)],
        dismissed=0,
    )

    text = stats_text(stats, "g" * 100)

    assert len(text) <= MESSAGE_LIMIT
    assert "Top channels: <#1000000000000000000> 900, " in text
    assert re.search(r"… and \d+ more\nDismissed", text)


# --- small helpers ----------------------------------------------------------------------


def test_truncate_and_bar() -> None:
    assert truncate("a  b\nc", 10) == "a b c"
    assert truncate("abcdefghijkl", 5) == "abcd…"
    assert bar(0.5, width=4) == "██░░"
    assert bar(2.0, width=2) == "██"
