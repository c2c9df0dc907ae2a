from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.settings import Settings, describe_validation_error, parse_shard_ids

REPO = Path(__file__).resolve().parents[2]


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def error_of(**values: object) -> str:
    with pytest.raises(ValidationError) as caught:
        settings(**values)
    return describe_validation_error(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", (0,)), ("0,1", (0, 1)), ("0-3", (0, 1, 2, 3)), (" 4 , 0-1 ", (0, 1, 4)), ("7-7", (7,))],
)
def test_shard_ids_are_read_from_lists_and_ranges(text: str, expected: tuple[int, ...]) -> None:
    assert parse_shard_ids(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "such as 0,1 or 0-3"),
        ("a", "such as 0,1 or 0-3"),
        ("1,,2", "such as 0,1 or 0-3"),
        ("-1", "such as 0,1 or 0-3"),
        ("0-", "such as 0,1 or 0-3"),
        ("1.5", "such as 0,1 or 0-3"),
        ("3-1", "runs backwards"),
        ("0-2,1", "lists shard 1 twice"),
        ("2,2", "lists shard 2 twice"),
    ],
)
def test_nonsense_shard_ids_are_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_shard_ids(text)


@given(st.sets(st.integers(0, 5000), min_size=1, max_size=30))
def test_any_list_of_shards_reads_back_sorted(ids: set[int]) -> None:
    assert parse_shard_ids(",".join(str(i) for i in ids)) == tuple(sorted(ids))


@given(st.integers(0, 5000), st.integers(0, 200))
def test_a_range_holds_both_ends(first: int, length: int) -> None:
    assert parse_shard_ids(f"{first}-{first + length}") == tuple(range(first, first + length + 1))


@given(st.text(max_size=40))
def test_any_text_is_read_or_refused_with_a_value_error(text: str) -> None:
    try:
        ids = parse_shard_ids(text)
    except ValueError:
        return
    assert ids and list(ids) == sorted(set(ids)) and all(i >= 0 for i in ids)


def test_shard_settings_go_together() -> None:
    assert settings().shard_count is None and settings().shard_ids is None
    assert settings().runs_shard_zero  # one process, every shard
    two = settings(shard_count=2, shard_ids="1")
    assert two.shard_ids == (1,) and not two.runs_shard_zero
    assert settings(shard_count=4, shard_ids="0-3").runs_shard_zero
    assert settings(shard_count=4).shard_ids is None  # the process runs all four
    assert settings(shard_count=4, shard_ids=" ").shard_ids is None  # blank is unset


def test_wrong_shard_settings_name_the_setting_and_the_rule() -> None:
    assert error_of(shard_ids="0,1") == (
        "setting SHARD_IDS: needs SHARD_COUNT, the number of shards of all processes "
        "together (got '0,1')"
    )
    assert "shard 2 does not exist with SHARD_COUNT=2" in error_of(shard_count=2, shard_ids="0,2")
    assert error_of(shard_count=2, shard_ids="x").startswith("setting SHARD_IDS: must list")
    # A wrong count is reported on its own, not also as a problem of SHARD_IDS.
    assert error_of(shard_count=0, shard_ids="0").startswith("setting SHARD_COUNT:")
    assert "SHARD_IDS" not in error_of(shard_count=0, shard_ids="0")


def test_the_program_stops_with_one_line_on_wrong_shards() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "SHARD_"))}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        env={**clean, "DISCORD_TOKEN": "x", "SHARD_COUNT": "2", "SHARD_IDS": "1-2"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: setting SHARD_IDS: shard 2 does not exist with SHARD_COUNT=2 "
        "(shards are numbered 0 to 1) (got '1-2')"
    )
