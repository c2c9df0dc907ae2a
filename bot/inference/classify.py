"""Text classification (sentiment, emotions) through transformers' own pipeline."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.inference.device import DevicePlan
from bot.inference.loading import ModelSource, load_model, load_tokenizer


@dataclass(frozen=True, slots=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class ClassifyRequest:
    texts: tuple[str, ...]
    top_k: int | None = 1  # None: every label (multi-label models such as go_emotions)


class TextClassificationTask:
    """Batches of texts -> labels with scores, best first."""

    def __init__(self, source: ModelSource, plan: DevicePlan, max_batch_size: int) -> None:
        self.source = source
        self.model_id = source.display_name
        self._plan = plan
        self._batch_size = max_batch_size
        self._pipeline: Any = None

    def load(self) -> None:
        from transformers import AutoModelForSequenceClassification, pipeline

        tokenizer = load_tokenizer(self.source)
        model = load_model(AutoModelForSequenceClassification, self.source, self._plan)
        self._pipeline = pipeline("text-classification", model=model, tokenizer=tokenizer)

    def batch_key(self, payload: ClassifyRequest) -> Hashable:
        return payload.top_k

    def size(self, payload: ClassifyRequest) -> int:
        return len(payload.texts)

    def run_batch(
        self, payloads: Sequence[ClassifyRequest]
    ) -> list[list[list[LabelScore]] | BaseException]:
        texts = [text for payload in payloads for text in payload.texts]
        # Model batches of similar lengths waste little on padding: run them sorted.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        # Texts past the model's window are cut: a sentiment label reads the opening,
        # and callers that need all of a long text split it first.
        outputs = self._pipeline(
            [texts[index] for index in order],
            top_k=payloads[0].top_k,
            batch_size=self._batch_size,
            truncation=True,
        )
        labelled: list[list[LabelScore]] = [[] for _ in texts]
        for index, out in zip(order, outputs, strict=True):
            labelled[index] = [LabelScore(item["label"], float(item["score"])) for item in out]
        results: list[list[list[LabelScore]] | BaseException] = []
        start = 0
        for payload in payloads:
            results.append(labelled[start : start + len(payload.texts)])
            start += len(payload.texts)
        return results
