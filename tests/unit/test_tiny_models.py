"""The tiny test models are reproducible, and label what tests assert on by a wide margin."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import torch
from transformers import pipeline

from bot.inference.engine import ModelRole
from tests import tiny_models
from tests.conftest import TinyModels

REPO = Path(__file__).resolve().parents[2]
# Right label's score minus the best other label's score, for every sentence tests rely on.
MARGIN = 0.5


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_a_build_in_another_process_is_bit_identical(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    # Another hash seed and thread setting than this process: neither may leak into a model.
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    env = os.environ | {"PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "3"}
    subprocess.run(
        [sys.executable, "-m", "tests.tiny_models", str(tmp_path)],
        cwd=REPO,
        env=env,
        check=True,
        timeout=300,
    )

    here = _file_hashes(Path(tiny_models.sentiment).parent)
    there = _file_hashes(tmp_path)

    assert here == there
    for role in tiny_models.as_roles():
        assert {f"{role}/model.safetensors", f"{role}/tokenizer.json"} <= here.keys()


def test_the_builder_gives_back_torch_as_it_found_it() -> None:
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    before = torch.random.get_rng_state()

    with tiny_models.deterministic_torch():
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        torch.rand(100)

    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.random.get_rng_state(), before)


def test_vocabularies_do_not_depend_on_corpus_order() -> None:
    corpus = tiny_models.CORPUS
    specials = ["<pad>"]

    assert tiny_models._wordpiece_vocab(corpus, specials) == tiny_models._wordpiece_vocab(
        corpus[::-1], specials
    )
    assert tiny_models._bpe_vocab(corpus, specials, 400) == tiny_models._bpe_vocab(
        corpus[::-1], specials, 400
    )


def _labelled(*groups: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    return [(text, label) for group in groups for label, texts in group.items() for text in texts]


@pytest.mark.parametrize(
    ("role", "labelled"),
    [
        (
            "sentiment",
            _labelled(tiny_models.SENTIMENT_EXAMPLES, tiny_models.UNSEEN_SENTIMENT),
        ),
        ("emotion", _labelled(tiny_models.EMOTION_EXAMPLES, tiny_models.UNSEEN_EMOTIONS)),
    ],
)
def test_classifiers_give_every_tested_sentence_its_label_by_a_wide_margin(
    tiny_models: TinyModels, role: ModelRole, labelled: list[tuple[str, str]]
) -> None:
    classify = pipeline("text-classification", model=tiny_models.as_roles()[role], top_k=None)

    results = classify([text for text, _ in labelled])

    narrow = []
    for (text, label), scores in zip(labelled, results, strict=True):
        by_label = {score["label"]: score["score"] for score in scores}
        margin = by_label.pop(label) - max(by_label.values())
        if margin <= MARGIN:
            narrow.append(f"{text!r} as {label}: margin {margin:.3f}")
    assert narrow == []
