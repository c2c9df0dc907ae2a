"""Loading models: several workers may load at once without breaking each other."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
)

from bot.inference.device import DevicePlan
from bot.inference.loading import ModelSource, load_model
from tests.conftest import TinyModels


def test_models_loaded_on_several_threads_at_once_all_load_and_later_loads_work(
    tiny_models: TinyModels,
) -> None:
    # Every worker loads on its own thread, and the first message of a guild with every
    # moderation signal on (or a chat answer plus its memory summary) loads several at once.
    # Before loads were serialised, about one round in two left transformers' process-wide
    # state swapped: the load failed, and so did every later load ("Cannot copy out of meta
    # tensor"), for the rest of the process.
    plan = DevicePlan(torch.device("cpu"), torch.float32)
    jobs = [
        (AutoModelForSequenceClassification, tiny_models.sentiment),
        (AutoModelForSequenceClassification, tiny_models.emotion),
        (AutoModelForCausalLM, tiny_models.chat),
        (AutoModelForSeq2SeqLM, tiny_models.summarization),
    ]
    with ThreadPoolExecutor(len(jobs)) as pool:
        for _ in range(4):
            loads = [
                pool.submit(load_model, auto, ModelSource.parse(path), plan) for auto, path in jobs
            ]
            assert all(load.result().training is False for load in loads)
    for auto, path in jobs:
        assert load_model(auto, ModelSource.parse(path), plan).training is False
