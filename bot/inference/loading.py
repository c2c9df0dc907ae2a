"""Loading models from a hub id, a local directory or a ``.gguf`` file."""

from __future__ import annotations

import gc
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.inference.device import DevicePlan

log = logging.getLogger(__name__)

# Held while a model is built (see load_model).
_LOADING = threading.Lock()


def settle_heap() -> None:
    """Collect once, then keep every object alive now out of later collections.

    A loaded model (and the libraries behind it) leaves some 400,000 long-lived Python objects.
    Every full collection walked them all holding the GIL, so the event loop stalled for
    100-450 ms every few seconds under traffic on a 2-core CPU; after this, under 10 ms
    (``python -m benchmarks.inference``, ``max_loop_lag_ms_engine``). Objects frozen here are
    still freed when their last reference goes; only the cycle collector skips them.
    """
    gc.collect()
    gc.freeze()


class ModelLoadError(Exception):
    """A model could not be loaded; ``reason`` is one short line for users and logs."""

    def __init__(self, model_id: str, reason: str) -> None:
        super().__init__(f"{model_id}: {reason}")
        self.model_id = model_id
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where a model's files are: a hub id or folder, plus a GGUF file inside it."""

    name_or_path: str
    gguf_file: str | None = None

    @classmethod
    def parse(cls, value: str) -> ModelSource:
        """Read a model setting: hub id, local directory, or path to a ``.gguf`` file."""
        if value.lower().endswith(".gguf"):
            path = Path(value).expanduser()
            return cls(str(path.parent), path.name)
        return cls(value)

    @property
    def is_local(self) -> bool:
        return Path(self.name_or_path).expanduser().is_dir()

    @property
    def display_name(self) -> str:
        return self.gguf_file or self.name_or_path

    def file_kwargs(self) -> dict[str, Any]:
        """``from_pretrained`` arguments naming the files."""
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def failure_reason(error: BaseException) -> str:
    """One short line saying why loading failed (never empty)."""
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    if isinstance(error, OSError) and os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        return f"not in the local cache and HF_HUB_OFFLINE is set ({first[:160]})"
    return first[:200]


def _check_exists(source: ModelSource) -> None:
    _quiet_transformers()
    if source.gguf_file:
        path = Path(source.name_or_path) / source.gguf_file
        if not path.is_file():
            raise ModelLoadError(source.display_name, f"GGUF file {path} does not exist")
    elif source.name_or_path.startswith((".", "/", "~")) and not source.is_local:
        raise ModelLoadError(source.display_name, "local model folder does not exist")


def _quiet_transformers() -> None:
    # Progress bars are for notebooks; a bot's log wants one line per model.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def load_tokenizer(source: ModelSource, **kwargs: Any) -> Any:
    """The model's own tokenizer."""
    from transformers import AutoTokenizer

    _check_exists(source)
    try:
        return AutoTokenizer.from_pretrained(source.name_or_path, **source.file_kwargs(), **kwargs)
    except Exception as error:
        raise ModelLoadError(source.display_name, failure_reason(error)) from error


def load_config(source: ModelSource) -> Any:
    """The model's config (decides seq2seq vs causal)."""
    from transformers import AutoConfig

    _check_exists(source)
    try:
        return AutoConfig.from_pretrained(source.name_or_path, **source.file_kwargs())
    except Exception as error:
        raise ModelLoadError(source.display_name, failure_reason(error)) from error


def load_model(auto_class: Any, source: ModelSource, plan: DevicePlan) -> Any:
    """Weights through ``auto_class.from_pretrained``, placed per the device plan, in eval mode.

    One load at a time in the process: while it builds a model, transformers swaps
    process-wide state (torch's init functions, the default dtype, the meta device). Two
    workers loading at once on their threads can leave it swapped for good, and every later
    load fails with "Cannot copy out of meta tensor".
    """
    _check_exists(source)
    kwargs = plan.load_kwargs()
    if source.gguf_file:
        # GGUF weights are dequantized on load; bitsandbytes cannot requantize them.
        kwargs.pop("quantization_config", None)
    with _LOADING:
        try:
            model = auto_class.from_pretrained(
                source.name_or_path, **source.file_kwargs(), **kwargs
            )
        except Exception as error:
            raise ModelLoadError(source.display_name, failure_reason(error)) from error
        if "device_map" not in kwargs:
            model.to(plan.device)
    model.eval()
    log.info(
        "loaded %s (%s, %.1f M parameters) on %s",
        source.display_name,
        type(model).__name__,
        sum(p.numel() for p in model.parameters()) / 1e6,
        plan.device,
    )
    return model


def context_limit(tokenizer: Any, config: Any, default: int = 512) -> int:
    """How many tokens the model can read at once."""
    candidates = [
        getattr(config, name, None)
        for name in ("max_position_embeddings", "n_positions", "max_seq_len")
    ]
    tokenizer_max = getattr(tokenizer, "model_max_length", None)
    # Tokenizers without a limit report a huge sentinel value.
    if isinstance(tokenizer_max, int) and tokenizer_max < 1_000_000:
        candidates.append(tokenizer_max)
    limits = [value for value in candidates if isinstance(value, int) and value > 0]
    return min(limits) if limits else default


def download_models(settings: Any) -> bool:
    """Fetch each configured hub model into the local cache; False if any failed."""
    from huggingface_hub import snapshot_download

    all_ok = True
    for setting in (
        "sentiment_model",
        "emotion_model",
        "moderation_model",
        "summarization_model",
        "chat_model",
    ):
        source = ModelSource.parse(getattr(settings, setting))
        if source.gguf_file or source.is_local:
            print(f"{setting.upper()}: local ({source.display_name})")
            continue
        try:
            path = snapshot_download(source.name_or_path)
        except Exception as error:
            all_ok = False
            print(f"{setting.upper()}: FAILED {source.name_or_path}: {failure_reason(error)}")
        else:
            print(f"{setting.upper()}: {source.name_or_path} -> {path}")
    return all_ok
