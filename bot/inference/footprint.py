"""How big a model is, whether it is on this disk, and about how long its first load takes.

Used for what a newcomer sees on the first start: which hub models the bot will still
download, and the "loading the model for the first time" notice of the first request.
Everything here is read from the disk (the Hugging Face cache); nothing goes online.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.inference.loading import ModelSource

# Approximate download sizes of the default hub models: the weights from_pretrained fetches
# (model.safetensors, float32 for the classifiers and BART, bfloat16 for SmolLM2) plus the
# tokenizer and config files. Parameter counts x bytes per parameter, rounded.
APPROX_DOWNLOAD_BYTES: dict[str, int] = {
    "distilbert/distilbert-base-uncased-finetuned-sst-2-english": 268_000_000,
    "SamLowe/roberta-base-go_emotions": 499_000_000,
    "unitary/toxic-bert": 438_000_000,
    "facebook/bart-large-cnn": 1_630_000_000,
    "HuggingFaceTB/SmolLM2-135M-Instruct": 270_000_000,
}
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_LOCAL_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.gguf")

# Rough rates for the estimate (a 2-core CPU machine; a GPU host loads faster). GGUF weights
# are dequantized on load: the 93 MB SmolLM2 file took 17-25 s there.
ASSUMED_DOWNLOAD_BYTES_PER_S = 20e6
ASSUMED_LOAD_BYTES_PER_S = {"gguf": 5e6, "weights": 150e6}
LOAD_OVERHEAD_S = 1.0
UNKNOWN_SIZE_BYTES = 500_000_000  # for the estimate of a hub model of unknown size
# A measured load refines the rate only when the weights dominate its time.
MIN_MEASURED_BYTES = 50_000_000


@dataclass(frozen=True, slots=True)
class Footprint:
    """A model setting as found on this disk."""

    model: str
    is_hub: bool  # a hub id (not a local folder or GGUF file)
    on_disk: bool  # local, or already in the Hugging Face cache
    size_bytes: int | None  # on disk when it is there, else the approximate download size
    weights_format: str  # "gguf" or "weights"

    @property
    def download_bytes(self) -> int | None:
        """What the first load still downloads (0: nothing, None: unknown)."""
        return 0 if self.on_disk else self.size_bytes


def _cached_file(repo_id: str, filename: str, cache_dir: Path | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
    except Exception:  # not a valid repo id: it is not in the cache either
        return None
    return Path(found) if isinstance(found, str) else None


def _cached_weights_bytes(repo_id: str, cache_dir: Path | None) -> int | None:
    """Size of the cached weights of a hub model, or None when they are not cached."""
    if _cached_file(repo_id, "config.json", cache_dir) is None:
        return None
    for name in _WEIGHT_FILES:
        path = _cached_file(repo_id, name, cache_dir)
        if path is None:
            continue
        if not name.endswith(".index.json"):
            return path.stat().st_size
        shards = sorted(set(json.loads(path.read_text()).get("weight_map", {}).values()))
        paths = [_cached_file(repo_id, shard, cache_dir) for shard in shards]
        if shards and all(p is not None for p in paths):
            return sum(p.stat().st_size for p in paths if p is not None)
    return None


def _local_bytes(source: ModelSource) -> int | None:
    if source.gguf_file:
        path = Path(source.name_or_path).expanduser() / source.gguf_file
        return path.stat().st_size if path.is_file() else None
    folder = Path(source.name_or_path).expanduser()
    files = {p for pattern in _LOCAL_WEIGHT_PATTERNS for p in folder.glob(pattern)}
    return sum(p.stat().st_size for p in files)


def footprint(model: str, cache_dir: Path | None = None) -> Footprint:
    """Where a model setting's weights are and how big they are (offline)."""
    source = ModelSource.parse(model)
    weights_format = "gguf" if source.gguf_file else "weights"
    if source.gguf_file or source.is_local:
        size = _local_bytes(source)
        return Footprint(model, False, size is not None, size, weights_format)
    if source.name_or_path.startswith((".", "/", "~")):  # a local folder that is missing
        return Footprint(model, False, False, None, weights_format)
    cached = _cached_weights_bytes(source.name_or_path, cache_dir)
    if cached is not None:
        return Footprint(model, True, True, cached, weights_format)
    return Footprint(
        model, True, False, APPROX_DOWNLOAD_BYTES.get(source.name_or_path), weights_format
    )


def estimate_load_s(found: Footprint, load_bytes_per_s: float | None = None) -> float:
    """About how many seconds the first load takes, download included."""
    size = found.size_bytes if found.size_bytes is not None else UNKNOWN_SIZE_BYTES
    rate = load_bytes_per_s or ASSUMED_LOAD_BYTES_PER_S[found.weights_format]
    seconds = LOAD_OVERHEAD_S + size / rate
    if not found.on_disk:
        seconds += size / ASSUMED_DOWNLOAD_BYTES_PER_S
    return seconds


def measured_load_rate(loaded: Footprint, seconds: float) -> float | None:
    """Bytes per second of a finished load, when its weights were big enough to tell."""
    size = loaded.size_bytes or 0
    if not loaded.on_disk or size < MIN_MEASURED_BYTES or seconds <= 0:
        return None
    return size / seconds


def describe_bytes(size: int) -> str:
    """``268 MB``, ``1.6 GB``."""
    if size >= 1_000_000_000:
        return f"{size / 1e9:.1f} GB"
    return f"{max(1, round(size / 1e6))} MB"


def describe_seconds(seconds: float) -> str:
    """``8 s``, ``2 min``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"


def hub_models_to_download(
    models: Iterable[tuple[str, str]], cache_dir: Path | None = None
) -> list[tuple[str, Footprint]]:
    """The (role, footprint) of each (role, model setting) whose hub model is not cached yet."""
    missing: list[tuple[str, Footprint]] = []
    seen: set[str] = set()
    for role, model in models:
        found = footprint(model, cache_dir)
        if found.is_hub and not found.on_disk and model not in seen:
            seen.add(model)
            missing.append((role, found))
    return missing


def first_start_message(
    models: Iterable[tuple[str, str]], *, warmup: bool = False, cache_dir: Path | None = None
) -> str | None:
    """One line naming the hub models still to download and their sizes (None: none)."""
    missing = hub_models_to_download(models, cache_dir)
    if not missing:
        return None
    parts = [
        f"{role} {found.model} ("
        + (f"about {describe_bytes(found.size_bytes)}" if found.size_bytes else "size unknown")
        + ")"
        for role, found in missing
    ]
    total = describe_bytes(sum(found.size_bytes or 0 for _, found in missing))
    unknown = any(found.size_bytes is None for _, found in missing)
    when = "at start (WARMUP) or on first use" if warmup else "on first use"
    line = (
        f"not downloaded yet, fetched from the Hugging Face hub {when}: {', '.join(parts)}; "
        f"about {total} in all{' plus the unknown' if unknown else ''} (sizes approximate). "
        "`python -m bot models download` fetches them now."
    )
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        line += " HF_HUB_OFFLINE is set: they cannot be fetched and will fail to load."
    return line
