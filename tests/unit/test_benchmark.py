"""The benchmark script runs, and every figure it prints is there, finite and consistent.

The figures are for people to read, not for tests to time: the bounds here are what any run
on any machine must satisfy, and the ratios must follow from the measured numbers.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from benchmarks.inference import main, messages, parse_args
from tests.conftest import TinyModels

pytestmark = pytest.mark.timeout(900)

CLASSIFY_RATIOS = {
    "engine_vs_naive": ("texts_per_s_engine", "texts_per_s_naive"),
    "engine_vs_raw": ("texts_per_s_engine", "texts_per_s_raw"),
    "engine_vs_raw_sorted": ("texts_per_s_engine", "texts_per_s_raw_sorted"),
}
CHAT_RATIOS = {
    "chat_batch_speedup": ("chat_tokens_per_s_concurrent", "chat_tokens_per_s_one_at_a_time"),
    "chat_engine_vs_raw": ("chat_tokens_per_s_concurrent", "chat_tokens_per_s_raw"),
    "chat_ttft_p50_over_alone": ("chat_ttft_p50_s", "chat_ttft_alone_s"),
    "chat_ttft_max_over_alone": ("chat_ttft_max_s", "chat_ttft_alone_s"),
    "chat_prefix_shared_over_unshared": (
        "chat_ttft_prefix_shared_s",
        "chat_ttft_prefix_unshared_s",
    ),
}
LAGS = ("max_loop_lag_ms_naive", "max_loop_lag_ms_engine")


def check_ratios(result: dict[str, Any], ratios: dict[str, tuple[str, str]]) -> None:
    for ratio, (top, bottom) in ratios.items():
        assert result[bottom] > 0 and result[top] > 0, ratio
        # Printed rounded: the ratio of the rounded figures, within rounding.
        expected = result[top] / result[bottom]
        assert result[ratio] == pytest.approx(expected, rel=0.05, abs=0.02), ratio
        assert 0.01 < result[ratio] < 100, ratio


def check_all_finite(result: dict[str, Any]) -> None:
    for name, value in result.items():
        if isinstance(value, float):
            assert math.isfinite(value), name


async def test_classification_figures_are_present_finite_and_consistent() -> None:
    result = await main(parse_args(["--messages", "12", "--rounds", "1", "--skip-chat"]))

    assert result["same_labels"] is True
    assert result["messages"] == 12
    check_all_finite(result)
    check_ratios(result, CLASSIFY_RATIOS)
    for lag in LAGS:
        assert 0 <= result[lag] < 60_000, lag
    assert not any(name.startswith("chat_") for name in result)


STAGGER_S = 0.05  # short enough that the tiny model's answers overlap


@pytest.fixture(scope="module")
def chat_result(tiny_models: TinyModels) -> dict[str, Any]:
    """One whole run with the tiny chat model, for the chat tests to read."""
    arguments = ["--messages", "8", "--rounds", "2", "--stagger-s", str(STAGGER_S)]
    return asyncio.run(main(parse_args([*arguments, "--chat-model", tiny_models.chat])))


def test_chat_figures_are_present_finite_and_consistent(chat_result: dict[str, Any]) -> None:
    result = chat_result

    check_all_finite(result)
    check_ratios(result, CLASSIFY_RATIOS | CHAT_RATIOS)
    assert result["chat_continuous_batching"] is True
    assert result["chat_conversations"] == 8 and result["chat_max_new_tokens"] == 64
    # Greedy answers of the engine are those of one raw generate() of the same prompts.
    assert result["chat_same_answers_as_raw"] == 8
    assert 0 < result["chat_mean_answer_tokens"] <= 64
    assert 0 <= result["max_loop_lag_ms_chat"] < 60_000


def test_the_staggered_run_staggers_arrivals(chat_result: dict[str, Any]) -> None:
    result, stagger_s = chat_result, STAGGER_S

    arrivals = result["chat_staggered_arrivals_s"]
    assert len(arrivals) == result["chat_staggered_requests"] == 6
    for index, asked in enumerate(arrivals):  # each asked when due, before the next is due
        assert index * stagger_s - 0.002 <= asked < (index + 1) * stagger_s, arrivals
    # Later requests arrived while earlier ones were still being answered.
    assert 2 <= result["chat_staggered_most_running"] <= 6
    # None sees its first piece before a lone request does, by more than scheduling noise;
    # the worst is at least the median.
    assert result["chat_ttft_p50_over_alone"] > 0.3
    assert result["chat_ttft_max_over_alone"] >= result["chat_ttft_p50_over_alone"]
    # Prefix sharing changes no answer, over a history that grew for several messages.
    assert result["chat_prefix_turns"] >= 2
    assert result["chat_prefix_same_answers"] == result["chat_prefix_turns"]
    assert result["chat_prefix_last_prompt_tokens"] > 100


def test_benchmark_messages_are_varied_and_deterministic() -> None:
    texts = messages(256)

    assert texts == messages(256)
    assert len(set(texts)) == 256
    assert {len(t.split()) for t in texts} >= {6, 40}
