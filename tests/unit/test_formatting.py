from __future__ import annotations

import pytest

from bot.formatting import MESSAGE_LIMIT, bar, split_message, truncate


def test_short_text_is_one_piece() -> None:
    assert split_message("hello") == ["hello"]


def test_long_prose_splits_on_words_within_the_limit() -> None:
    text = " ".join(f"word{i}" for i in range(1500))

    pieces = split_message(text)

    assert len(pieces) > 1
    assert all(len(p) <= MESSAGE_LIMIT for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_code_block_cut_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print({i})" for i in range(400))
    text = f"Here you go:\n```python\n{code}\n```\nDone."

    pieces = split_message(text)

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


def test_truncate_and_bar() -> None:
    assert truncate("a  b\nc", 10) == "a b c"
    assert truncate("abcdefghijkl", 5) == "abcd…"
    assert bar(0.5, width=4) == "██░░"
    assert bar(2.0, width=2) == "██"
