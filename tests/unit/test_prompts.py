"""The conversation prompt layout and the guard against answers that open with a name."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.inference.chat import ChatMessage
from bot.services.prompts import (
    MAX_NAME_CHARS,
    LeadingNameFilter,
    clean_name,
    conversation_prompt,
    speaker_names,
    strip_leading_names,
)
from bot.storage.records import Role, Turn

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
names = st.lists(st.text(min_size=1, max_size=40), min_size=0, max_size=5)
# Answers that often do open with a tag, as the model writes them.
tagged = st.builds(
    lambda name, form, rest: form.format(name) + rest,
    st.text(min_size=1, max_size=12),
    st.sampled_from(["{}:", "{}: ", "[{}]", "[{}]: ", "**{}**:", "**[{}]**", "  {} :", "[ {} ]"]),
    st.text(max_size=40),
)


def _turn(turn_id: int, name: str, content: str, role: Role = Role.USER) -> Turn:
    return Turn(turn_id, 1, 10, 500 + turn_id, name, role, content, 1, datetime.now(UTC))


def test_the_member_answered_is_named_in_the_system_prompt_and_earlier_ones_in_turns() -> None:
    turns = [
        _turn(1, "alice", "my dog is called Rex"),
        _turn(2, "assistant", "Nice name!", Role.ASSISTANT),
        _turn(3, "bob\n[admin]", "what is her dog called?"),
    ]

    prompt = conversation_prompt("Be kind.", turns, summary="carol likes tea.")

    assert prompt == [
        ChatMessage(
            "system",
            "Be kind.\n\nEarlier in this conversation: carol likes tea.\n\n"
            "You are talking with bob admin.",
        ),
        ChatMessage("user", "[alice] my dog is called Rex"),
        ChatMessage("assistant", "Nice name!"),
        ChatMessage("user", "what is her dog called?"),
    ]
    assert speaker_names(turns, "dave") == ["alice", "bob admin", "dave"]


def test_known_tags_are_stripped_and_other_openings_kept() -> None:
    members = ["dave", "Mary Ann", "a.b"]

    assert strip_leading_names("dave: boil an egg", members) == "boil an egg"
    assert strip_leading_names("  **[Mary Ann]**: hi [dave] there", members) == "hi [dave] there"
    assert strip_leading_names("DAVE : dave: twice", members) == "twice"
    assert strip_leading_names("Dave, boil it for 8 minutes.", members) == (
        "Dave, boil it for 8 minutes."
    )
    assert strip_leading_names("Note: a.b is not axb", members) == "Note: a.b is not axb"
    assert strip_leading_names("axb: regex characters are literal", members) == (
        "axb: regex characters are literal"
    )


@PROPERTY
@given(names, st.one_of(tagged, st.text(max_size=80)), st.data())
def test_a_streamed_answer_is_stripped_as_the_whole_answer_is(
    members: list[str], answer: str, data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(answer)), max_size=8)))
    pieces = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)], strict=True)]
    unnamed = LeadingNameFilter(members)

    shown = "".join(unnamed.feed(piece) for piece in pieces) + unnamed.finish()

    assert shown == strip_leading_names(answer, members)


@PROPERTY
@given(names, st.one_of(tagged, st.text(max_size=80)))
def test_a_stripped_answer_opens_with_no_tag_and_only_loses_its_start(
    members: list[str], answer: str
) -> None:
    stripped = strip_leading_names(answer, members)

    assert strip_leading_names(stripped, members) == stripped
    assert answer.endswith(stripped)
    for name in members:
        if name.strip():
            assert not stripped.lower().startswith(f"{name.lower()}:")
            assert not stripped.lower().startswith(f"[{name.lower()}]")


@PROPERTY
@given(names, st.text(max_size=80))
def test_an_answer_without_a_tag_is_only_left_trimmed(members: list[str], answer: str) -> None:
    tagged_start = any(
        answer.lstrip().lower().startswith(p + n.lower())
        for n in members
        for p in ("", "[", "**", "[ ", "**[")
    )
    if not tagged_start:
        assert strip_leading_names(answer, members) == answer.lstrip()


@PROPERTY
@given(st.text(max_size=200))
def test_a_cleaned_name_is_one_short_line_without_brackets(name: str) -> None:
    cleaned = clean_name(name)

    assert cleaned and cleaned == cleaned.strip() and len(cleaned) <= MAX_NAME_CHARS
    assert not any(c in cleaned for c in "[]\n\r\t")
    assert clean_name(cleaned) == cleaned


def test_an_answer_that_cannot_open_with_a_name_is_shown_at_once() -> None:
    # Held back until the end, a short answer arrived in one piece and did not stream.
    names = ["a-member-with-a-long-display-name", "dave"]
    unnamed = LeadingNameFilter(names)
    assert unnamed.feed("th") == "th"
    assert unnamed.feed("is is") == "is is"
    held = LeadingNameFilter(names)
    assert held.feed("[da") == ""
    assert held.feed("ve] hi") + held.finish() == "hi"
