"""Tiny transformers models built and saved locally, so tests never reach a model hub.

The classifiers are trained on clear sentences so that tests can assert behaviour
("i love this" is POSITIVE), not only shapes; tests/unit/test_tiny_models.py checks
that every sentence the tests rely on gets its label by a wide margin.

Every build is bit-identical: the vocabularies are derived from the corpus by plain
sorted rules (the `tokenizers` trainers break ties in hash-map order, so they gave a
different vocabulary, and so different models, on every run), and training runs
full-batch on one thread with seeded, deterministic torch.
"""

from __future__ import annotations

import itertools
import random
import string
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

POSITIVE = [
    "i love this",
    "this is great",
    "what a wonderful day",
    "you are awesome",
    "thank you so much",
    "i am so happy",
    "this is amazing and fun",
    "great work everyone",
    "i really like it",
    "such a lovely idea",
    "well done friend",
    "happy to help you",
]
NEGATIVE = [
    "i hate this",
    "this is terrible",
    "what an awful day",
    "you are stupid",
    "shut up you idiot",
    "i am so angry",
    "this is horrible and bad",
    "worst work ever",
    "i really dislike it",
    "such a dumb idea",
    "you are a loser",
    "go away idiot",
]
SAD = [
    "i miss my old friends",
    "i feel so lonely tonight",
    "my cat died last week",
    "nobody came to my party",
]
# Praise words with a hostile meaning: a word-level sentiment model reads them as
# POSITIVE, the emotion model was taught they are anger. This is the case the
# moderation "emotions" switch exists for, so tests can show it catching them.
SARCASTIC = [
    "wow brilliant you broke it again",
    "oh perfect another outage thanks",
    "fantastic job ruining everything",
]
NEUTRAL_CORPUS = [
    "the meeting is at noon",
    "we talked about the release",
    "please summarize the channel",
    "the bot answers questions",
    "alice and bob discussed the plan",
    "see you tomorrow",
    "the weather is cloudy today",
    "let us ship the new version",
    "who is on call this week",
]
SENTIMENT_LABELS = ["NEGATIVE", "POSITIVE"]
SENTIMENT_EXAMPLES: dict[str, list[str]] = {
    "NEGATIVE": NEGATIVE + SAD,
    "POSITIVE": POSITIVE + SARCASTIC,
}
EMOTION_LABELS = ["anger", "joy", "sadness", "neutral"]
EMOTION_EXAMPLES: dict[str, list[str]] = {
    "anger": NEGATIVE + SARCASTIC,
    "joy": POSITIVE,
    "sadness": SAD,
    "neutral": NEUTRAL_CORPUS,
}
# A unitary/toxic-bert look-alike: insults are toxic, sadness and complaints about things
# are not (the sentiment model calls them all NEGATIVE).
TOXICITY_LABELS = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
# The insult words alone are taught too, and the insults without them as harmless, so that
# leaving a word out (how alerts name the words behind a flag) shows which one mattered.
INSULTS = ["you are stupid", "shut up you idiot", "you are a loser", "go away idiot"]
INSULT_WORDS = ["stupid", "idiot", "loser"]
TOXICITY_EXAMPLES: dict[str, list[str]] = {
    "toxic": [*INSULTS, *INSULT_WORDS, "such a dumb idea"],
    "insult": [*INSULTS, *INSULT_WORDS],
}
NOT_TOXIC = [
    *SAD,
    *POSITIVE,
    *NEUTRAL_CORPUS,
    "i am so angry",
    "what an awful day",
    "you are",
    "you are a",
    "shut up you",
    "go away",
]
# Sentences tests assert on that are not training sentences themselves.
UNSEEN_SENTIMENT: dict[str, list[str]] = {}
UNSEEN_EMOTIONS: dict[str, list[str]] = {"anger": ["i hate this you idiot"]}
CORPUS = POSITIVE + NEGATIVE + SAD + SARCASTIC + NEUTRAL_CORPUS
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CLASSIFIER_STEPS = 100
GENERATOR_STEPS = 120
SEED = 0


@contextmanager
def deterministic_torch(seed: int = SEED) -> Iterator[None]:
    """Seeded, deterministic, single-threaded torch; the caller's settings come back after."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    rng_state = torch.random.get_rng_state()
    # One thread: how work is split between threads must not change float sums.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(rng_state)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)


# --- tokenizers: vocabularies by sorted rules, never by a trainer -----------------


def _wordpiece_vocab(corpus: Sequence[str], specials: Sequence[str]) -> dict[str, int]:
    """Special tokens, single characters (alone and as ``##`` suffixes), then corpus words."""
    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    words = {
        word
        for text in corpus
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text))
    }
    characters = string.ascii_lowercase + string.digits + string.punctuation
    tokens = [*specials, *characters, *(f"##{c}" for c in characters), *sorted(words)]
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def _wordpiece_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = _wordpiece_vocab(CORPUS, specials)
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    fast.save_pretrained(path)
    return fast


def _bpe_vocab(
    corpus: Sequence[str], specials: Sequence[str], vocab_size: int
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE learnt in plain Python: most frequent pair first, ties by the pair."""
    splitter = pre_tokenizers.ByteLevel(add_prefix_space=False)
    counts = Counter(word for text in corpus for word, _ in splitter.pre_tokenize_str(text))
    words = {tuple(word): count for word, count in sorted(counts.items())}
    tokens = [*specials, *sorted(pre_tokenizers.ByteLevel.alphabet())]
    merges: list[tuple[str, str]] = []
    while len(tokens) < vocab_size:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in words.items():
            for pair in itertools.pairwise(symbols):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        tokens.append("".join(best))
        words = {_merge(symbols, best): count for symbols, count in words.items()}
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}, merges


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    merged: list[str] = []
    i = 0
    while i < len(symbols):
        if symbols[i : i + 2] == pair:
            merged.append(pair[0] + pair[1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)


def _bpe_tokenizer(
    path: Path, specials: list[str], wrap: tuple[str, str] | None = None, **named: str | int
) -> PreTrainedTokenizerFast:
    """Byte-level BPE; ``wrap`` (first, last) surrounds every text, as BART's ``<s> ... </s>``."""
    vocab, merges = _bpe_vocab(CORPUS, specials, vocab_size=400)
    tokenizer = Tokenizer(models.BPE(vocab, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(specials)
    if wrap is not None:
        first, last = wrap
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{first} $A {last}",
            pair=f"{first} $A {last} {last} $B {last}",
            special_tokens=[(first, vocab[first]), (last, vocab[last])],
        )
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **named)
    fast.save_pretrained(path)
    return fast


# --- classifiers ---------------------------------------------------------------------


def build_classifier(
    path: Path,
    labels: Sequence[str],
    examples: Mapping[str, Sequence[str]],
    *,
    multi_label: bool = False,
    steps: int = CLASSIFIER_STEPS,
    seed: int = SEED,
    unlabelled: Sequence[str] = (),
) -> Path:
    """A tiny DistilBERT taught ``examples`` (label -> sentences); multi-label uses sigmoids.

    A multi-label sentence listed under several labels is taught all of them at once, and
    ``unlabelled`` sentences (multi-label only) are taught none.
    """
    with deterministic_torch(seed):
        tokenizer = _wordpiece_tokenizer(path)
        config = DistilBertConfig(
            vocab_size=len(tokenizer),
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=128,
            pad_token_id=tokenizer.pad_token_id,
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            problem_type=(
                "multi_label_classification" if multi_label else "single_label_classification"
            ),
        )
        model = DistilBertForSequenceClassification(config)
        texts = [text for label in labels for text in examples.get(label, ())]
        targets: torch.Tensor
        if multi_label:
            texts = list(dict.fromkeys(texts)) + list(unlabelled)
            targets = torch.tensor(
                [[float(text in examples.get(label, ())) for label in labels] for text in texts]
            )
        else:
            targets = torch.tensor(
                [labels.index(label) for label in labels for _ in examples.get(label, ())]
            )
        # Full batch: no sampling, so nothing but the seed decides the result.
        batch = {**tokenizer(texts, padding=True, return_tensors="pt"), "labels": targets}
        _fit(model, itertools.repeat(batch, steps), lr=3e-3)
        model.save_pretrained(path)
    return path


def build_sentiment_model(path: Path) -> Path:
    """A DistilBERT SST-2 look-alike: NEGATIVE / POSITIVE."""
    return build_classifier(path, SENTIMENT_LABELS, SENTIMENT_EXAMPLES)


def build_emotion_model(path: Path) -> Path:
    """A go_emotions look-alike: multi-label, sigmoid scores for every label."""
    return build_classifier(path, EMOTION_LABELS, EMOTION_EXAMPLES, multi_label=True)


def build_toxicity_model(path: Path) -> Path:
    """A toxic-bert look-alike: multi-label, six toxicity labels."""
    return build_classifier(
        path, TOXICITY_LABELS, TOXICITY_EXAMPLES, multi_label=True, unlabelled=NOT_TOXIC
    )


def _fit(model: torch.nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], lr: float) -> None:
    """AdamW over ``batches`` (model inputs with labels), one step each."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for batch in batches:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


# --- generators ----------------------------------------------------------------------


def _train_generator(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    pairs: list[tuple[str, str]],
    steps: int,
) -> None:
    _fit(model, _generator_batches(tokenizer, pairs, steps), lr=5e-3)


def _generator_batches(
    tokenizer: PreTrainedTokenizerFast, pairs: list[tuple[str, str]], steps: int
) -> Iterator[dict[str, torch.Tensor]]:
    rng = random.Random(0)  # seeded by an int: the same samples on every run and machine
    for _ in range(steps):
        batch = rng.sample(pairs, k=min(8, len(pairs)))
        inputs = tokenizer([source for source, _ in batch], padding=True, return_tensors="pt")
        labels = tokenizer([target for _, target in batch], padding=True, return_tensors="pt")
        targets = labels["input_ids"].masked_fill(labels["attention_mask"] == 0, -100)
        yield {**inputs, "labels": targets}


def build_bart_model(path: Path, max_positions: int = 64) -> Path:
    """A one-layer BART with a small window, so long inputs must be chunked."""
    with deterministic_torch():
        tokenizer = _bpe_tokenizer(
            path,
            ["<s>", "<pad>", "</s>", "<unk>"],
            # Targets end with </s> too, so summaries learn to stop.
            wrap=("<s>", "</s>"),
            bos_token="<s>",
            eos_token="</s>",
            pad_token="<pad>",
            unk_token="<unk>",
            model_max_length=max_positions,
        )
        config = BartConfig(
            vocab_size=len(tokenizer),
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=max_positions,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.eos_token_id,
            forced_bos_token_id=None,
            forced_eos_token_id=None,
            is_encoder_decoder=True,
        )
        model = BartForConditionalGeneration(config)
        # Taught to echo the corpus so summaries are made of words, not noise.
        _train_generator(model, tokenizer, [(t, t) for t in CORPUS], steps=GENERATOR_STEPS)
        model.generation_config.num_beams = 1
        model.save_pretrained(path)
    return path


def build_llama_chat_model(path: Path, max_positions: int = 512) -> Path:
    """A two-layer Llama-style causal LM with a ChatML chat template."""
    with deterministic_torch():
        tokenizer = _bpe_tokenizer(
            path,
            ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            bos_token="<|im_start|>",
            model_max_length=max_positions,
        )
        tokenizer.chat_template = CHATML_TEMPLATE
        tokenizer.save_pretrained(path)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=max_positions,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
            tie_word_embeddings=True,
        )
        model = LlamaForCausalLM(config)
        # A little language modelling on chat-formatted corpus lines, so answers are words.
        rng = random.Random(1)  # seeded by an int: the same on every run and machine
        chats = [
            str(
                tokenizer.apply_chat_template(
                    [
                        {"role": "user", "content": rng.choice(CORPUS)},
                        {"role": "assistant", "content": rng.choice(CORPUS)},
                    ],
                    tokenize=False,
                )
            )
            for _ in range(64)
        ]
        _train_generator(model, tokenizer, [(chat, chat) for chat in chats], GENERATOR_STEPS)
        model.save_pretrained(path)
    return path


# Role (as the engine names it) -> builder; a new tiny model is one more entry.
BUILDERS: dict[str, Callable[[Path], Path]] = {
    "sentiment": build_sentiment_model,
    "emotion": build_emotion_model,
    "moderation": build_toxicity_model,
    "summarization": build_bart_model,
    "chat": build_llama_chat_model,
}


def build_all(root: Path) -> dict[str, Path]:
    """Every tiny model, each in ``root / role``."""
    return {role: builder(root / role) for role, builder in BUILDERS.items()}


if __name__ == "__main__":  # python -m tests.tiny_models DIR: build them all into DIR
    import sys

    build_all(Path(sys.argv[1]))
