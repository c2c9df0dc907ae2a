"""What a newcomer sees on the first start: models still to download, first-load notices."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from bot.cogs.first_use import is_loading_notice, loading_notice
from bot.inference.engine import EngineConfig, InferenceEngine
from bot.inference.footprint import (
    APPROX_DOWNLOAD_BYTES,
    Footprint,
    describe_bytes,
    describe_seconds,
    estimate_load_s,
    first_start_message,
    footprint,
    measured_load_rate,
)
from bot.settings import Settings
from tests.conftest import TinyModels

SST2 = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"


def defaults() -> list[tuple[str, str]]:
    """The default model settings of every role but chat (a GGUF file shipped locally)."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    return [
        ("sentiment", settings.sentiment_model),
        ("emotion", settings.emotion_model),
        ("summarization", settings.summarization_model),
    ]


def put_in_cache(cache: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """Lay files out as huggingface_hub's cache does (refs/main -> snapshots/<commit>/)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        (snapshot / name).write_bytes(content)


def test_defaults_not_in_the_cache_are_named_with_their_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    line = first_start_message(defaults(), cache_dir=tmp_path)

    assert line is not None and "\n" not in line
    assert f"sentiment {SST2} (about 268 MB)" in line
    assert "emotion SamLowe/roberta-base-go_emotions (about 499 MB)" in line
    assert "summarization facebook/bart-large-cnn (about 1.6 GB)" in line
    assert "about 2.4 GB in all" in line and "approximate" in line
    assert "on first use" in line and "models download" in line
    assert "HF_HUB_OFFLINE" not in line


def test_offline_and_warmup_are_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = first_start_message(defaults(), warmup=True, cache_dir=tmp_path)
    assert line is not None
    assert "at start (WARMUP)" in line
    assert "HF_HUB_OFFLINE is set" in line


def test_cached_models_are_not_named(tmp_path: Path) -> None:
    put_in_cache(tmp_path, SST2, {"config.json": b"{}", "model.safetensors": b"x" * 1000})

    line = first_start_message(defaults(), cache_dir=tmp_path)

    assert line is not None and SST2 not in line and "facebook/bart-large-cnn" in line
    found = footprint(SST2, tmp_path)
    assert found.is_hub and found.on_disk and found.size_bytes == 1000


def test_a_config_without_weights_is_not_downloaded(tmp_path: Path) -> None:
    put_in_cache(tmp_path, SST2, {"config.json": b"{}"})
    found = footprint(SST2, tmp_path)
    assert not found.on_disk
    assert found.size_bytes == APPROX_DOWNLOAD_BYTES[SST2]


def test_sharded_weights_count_when_every_shard_is_cached(tmp_path: Path) -> None:
    index = {"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}
    files = {
        "config.json": b"{}",
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-1.safetensors": b"x" * 300,
    }
    put_in_cache(tmp_path, "org/sharded", files)
    assert not footprint("org/sharded", tmp_path).on_disk

    put_in_cache(tmp_path / "full", "org/sharded", {**files, "model-2.safetensors": b"y" * 200})
    assert footprint("org/sharded", tmp_path / "full").size_bytes == 500


def test_nothing_to_download_when_everything_is_local(tiny_models: TinyModels) -> None:
    assert first_start_message(tiny_models.as_roles().items()) is None
    found = footprint(tiny_models.sentiment)
    assert not found.is_hub and found.on_disk and found.size_bytes


def test_unknown_hub_models_and_missing_folders(tmp_path: Path) -> None:
    line = first_start_message([("chat", "someone/unknown-model")], cache_dir=tmp_path)
    assert line is not None and "(size unknown)" in line
    missing = footprint(str(tmp_path / "nowhere"), tmp_path)
    assert not missing.is_hub and not missing.on_disk
    assert first_start_message([("chat", "./nowhere")], cache_dir=tmp_path) is None


def test_estimate_grows_with_size_download_and_gguf() -> None:
    def fp(size: int, *, on_disk: bool = True, fmt: str = "weights") -> Footprint:
        return Footprint("m", True, on_disk, size, fmt)

    small, big = estimate_load_s(fp(10_000_000)), estimate_load_s(fp(1_000_000_000))
    assert 1 <= small < big
    assert estimate_load_s(fp(10**9, on_disk=False)) > big  # the download comes first
    gguf = estimate_load_s(fp(93_000_000, fmt="gguf"))
    assert 10 < gguf < 40  # SmolLM2's 93 MB GGUF file took 17-25 s on 2 CPU cores
    assert estimate_load_s(fp(1_000_000_000), load_bytes_per_s=1e9) == pytest.approx(2.0)


def test_measured_rate_only_from_loads_the_weights_dominate() -> None:
    assert measured_load_rate(Footprint("m", True, True, 200_000_000, "weights"), 4.0) == 5e7
    assert measured_load_rate(Footprint("m", False, True, 40_000, "weights"), 0.5) is None
    assert measured_load_rate(Footprint("m", True, False, 200_000_000, "weights"), 4.0) is None


@pytest.mark.parametrize(
    ("size", "text"), [(268_000_000, "268 MB"), (1_630_000_000, "1.6 GB"), (40_000, "1 MB")]
)
def test_describe_bytes(size: int, text: str) -> None:
    assert describe_bytes(size) == text


@pytest.mark.parametrize(("seconds", "text"), [(0.2, "1 s"), (19.6, "20 s"), (95, "2 min")])
def test_describe_seconds(seconds: float, text: str) -> None:
    assert describe_seconds(seconds) == text


def test_loading_notice_reads_well_and_is_recognised() -> None:
    one = loading_notice(["chat"], 19.6)
    assert one == "Loading the chat model for the first time (about 20 s)…"
    two = loading_notice(["summarization", "sentiment"], 100)
    assert two.startswith("Loading the summarization and sentiment models for the first")
    assert is_loading_notice(one) and is_loading_notice(two)
    assert not is_loading_notice("Loading the dishwasher is my favourite chore")
    assert not is_loading_notice("Positive (99.0% confident)")


async def test_engine_says_what_is_loaded_and_how_long_a_load_takes(
    engine: InferenceEngine,
) -> None:
    assert not engine.is_loaded("sentiment")
    assert "sentiment" not in engine._workers  # asking did not start anything
    assert 1.0 <= engine.estimated_load_s("sentiment") < 3.0  # tiny local model

    await engine.ensure_loaded("sentiment")

    assert engine.is_loaded("sentiment") and not engine.is_loaded("emotion")
    assert engine.worker("sentiment").load_seconds is not None


async def test_warmup_logs_start_and_end_of_each_model(
    tiny_models: TinyModels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models = tiny_models.as_roles()
    models["summarization"] = str(tmp_path / "no-such-model")
    engine = InferenceEngine(EngineConfig(models=models, device="cpu"))
    caplog.set_level(logging.INFO, logger="bot.inference.engine")
    try:
        await asyncio.wait_for(engine.warmup(("sentiment", "summarization")), 120)
    finally:
        await engine.aclose()

    lines = [r.getMessage() for r in caplog.records if r.name == "bot.inference.engine"]
    assert f"warm-up: loading the sentiment model {tiny_models.sentiment}" in lines
    assert any(line.startswith("warm-up: the sentiment model is ready (") for line in lines)
    assert any(
        line.startswith("warm-up: the summarization model failed after ")
        and "does not exist" in line
        for line in lines
    )
    assert len(lines) == 4  # one line at the start and one at the end, per model
