"""Which words drove a score: the text re-scored with each word left out, in one batch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

# Longer texts are explained by their first words only (each word is one more text to score).
MAX_EXPLAINED_WORDS = 48
WORDS_SHOWN = 3
# Smaller changes are noise, not a reason.
MIN_EFFECT = 0.01


@dataclass(frozen=True, slots=True)
class WordEffect:
    """How the score changes when ``word`` is left out (negative: the word pushed it up)."""

    word: str
    effect: float


def leave_one_out(text: str, max_words: int = MAX_EXPLAINED_WORDS) -> list[tuple[str, str]]:
    """(word, the text without it) for each of the first ``max_words`` words."""
    words = text.split()
    return [
        (word, " ".join(words[:i] + words[i + 1 :])) for i, word in enumerate(words[:max_words])
    ]


def strongest(effects: Sequence[WordEffect], count: int = WORDS_SHOWN) -> list[WordEffect]:
    """The words whose removal lowers the score the most (by at least MIN_EFFECT)."""
    return sorted((e for e in effects if e.effect <= -MIN_EFFECT), key=lambda e: e.effect)[:count]


async def word_effects(
    text: str, score: Callable[[list[str]], Awaitable[list[float]]]
) -> list[WordEffect]:
    """The effect of leaving out each word on ``score``, which scores a list of texts at once.

    The text and all its variants go to ``score`` together, so they share model batches.
    A variant with no words left scores 0.
    """
    variants = leave_one_out(text)
    if not variants:
        return []
    texts = [text] + [variant for _, variant in variants if variant]
    scores = iter(await score(texts))
    base = next(scores)
    return [
        WordEffect(word, (next(scores) if variant else 0.0) - base) for word, variant in variants
    ]


def effects_text(effects: Sequence[WordEffect]) -> str:
    """ "'idiot' (-0.62), 'shut' (-0.10)", or "" when no word stands out."""
    return ", ".join(f"'{e.word[:40]}' ({e.effect:+.2f})" for e in effects)
