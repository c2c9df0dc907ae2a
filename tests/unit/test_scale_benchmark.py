"""The scale-out benchmark runs both setups, and every figure it prints is consistent.

Nothing here is timed: the checks are what any run on any machine must satisfy (every request
answered by both setups, ratios that follow from the printed figures).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from benchmarks.scale import QUICK, parse_args
from benchmarks.scale import main as scale_main
from benchmarks.serving import served_model_id
from tests.conftest import TinyModels

pytestmark = pytest.mark.timeout(600)

FIGURES = ("answers_per_s", "tokens_per_s", "ttft_p50_s", "ttft_max_s")
SETUPS = ("in_process", "served")


@pytest.fixture(scope="module")
def result(tiny_models: TinyModels) -> dict[str, Any]:
    """One quick run with the tiny chat model: a real transformers serve and two shards."""
    return asyncio.run(scale_main(parse_args(["--quick", "--model", tiny_models.chat])))


def test_both_setups_answer_every_request(result: dict[str, Any]) -> None:
    requests = QUICK["requests"]

    assert result["requests"] == requests and result["shards"] == 2
    for setup in SETUPS:
        assert result[f"answered_{setup}"] == requests, setup
        assert result[f"nonempty_answers_{setup}"] == requests, setup
    assert 0 < result["mean_answer_tokens"] <= QUICK["max_new_tokens"]
    # Greedy decoding of one model: the server's answers are the in-process ones.
    assert result["same_answers"] == requests


def test_figures_are_finite_and_ratios_follow_from_them(result: dict[str, Any]) -> None:
    for name, value in result.items():
        if isinstance(value, float):
            assert math.isfinite(value) and value > 0, name
    for setup in SETUPS:
        assert result[f"ttft_max_s_{setup}"] >= result[f"ttft_p50_s_{setup}"], setup
    for figure in FIGURES:
        served, in_process = result[f"{figure}_served"], result[f"{figure}_in_process"]
        ratio = result[f"{figure}_served_over_in_process"]
        assert ratio == pytest.approx(served / in_process, rel=0.02, abs=0.006), figure


def test_a_gguf_file_is_served_by_folder_and_file_name() -> None:
    assert served_model_id("/models/smol/SmolLM2.Q4_1.gguf") == "/models/smol:SmolLM2.Q4_1.gguf"
    assert served_model_id("/models/tiny-chat") == "/models/tiny-chat"
    assert served_model_id("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )


@pytest.mark.parametrize("arguments", [["--requests", "1"], ["--rounds", "0"]])
def test_a_run_too_small_to_split_is_refused(arguments: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(arguments)
