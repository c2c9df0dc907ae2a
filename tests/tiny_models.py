"""Tiny transformers models built and saved locally, so tests never reach a model hub.

The classifiers are trained for a few hundred steps on clear sentences so that
tests can assert behaviour ("i love this" is POSITIVE), not only shapes.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
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
EMOTION_LABELS = ["anger", "joy", "sadness", "neutral"]
CORPUS = POSITIVE + NEGATIVE + NEUTRAL_CORPUS
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _wordpiece_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(
        CORPUS * 3, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials)
    )
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer.decoder = decoders.WordPiece()
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


def _train_classifier(
    model: DistilBertForSequenceClassification,
    tokenizer: PreTrainedTokenizerFast,
    examples: list[tuple[str, list[float]]],
    steps: int,
) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    model.train()
    for _ in range(steps):
        batch = rng.sample(examples, k=min(16, len(examples)))
        encoded = tokenizer([text for text, _ in batch], padding=True, return_tensors="pt")
        targets = torch.tensor([target for _, target in batch])
        if model.config.problem_type != "multi_label_classification":
            targets = targets.argmax(dim=-1)
        loss = model(**encoded, labels=targets).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def _distilbert(
    tokenizer: PreTrainedTokenizerFast, labels: list[str], **extra: object
) -> DistilBertForSequenceClassification:
    torch.manual_seed(0)
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
        **extra,
    )
    return DistilBertForSequenceClassification(config)


def build_sentiment_model(path: Path) -> Path:
    """A DistilBERT SST-2 look-alike: NEGATIVE / POSITIVE."""
    tokenizer = _wordpiece_tokenizer(path)
    model = _distilbert(tokenizer, ["NEGATIVE", "POSITIVE"])
    examples = [(t, [0.0, 1.0]) for t in POSITIVE] + [(t, [1.0, 0.0]) for t in NEGATIVE]
    _train_classifier(model, tokenizer, examples, steps=150)
    model.save_pretrained(path)
    return path


def build_emotion_model(path: Path) -> Path:
    """A go_emotions look-alike: multi-label, sigmoid scores for every label."""
    tokenizer = _wordpiece_tokenizer(path)
    model = _distilbert(tokenizer, EMOTION_LABELS, problem_type="multi_label_classification")
    examples = (
        [(t, [0.0, 1.0, 0.0, 0.0]) for t in POSITIVE]
        + [(t, [1.0, 0.0, 0.0, 0.0]) for t in NEGATIVE]
        + [(t, [0.0, 0.0, 0.0, 1.0]) for t in NEUTRAL_CORPUS]
    )
    _train_classifier(model, tokenizer, examples, steps=150)
    model.save_pretrained(path)
    return path


def _train_generator(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    pairs: list[tuple[str, str]],
    steps: int,
) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    rng = random.Random(0)
    model.train()
    for _ in range(steps):
        batch = rng.sample(pairs, k=min(8, len(pairs)))
        inputs = tokenizer([source for source, _ in batch], padding=True, return_tensors="pt")
        labels = tokenizer([target for _, target in batch], padding=True, return_tensors="pt")
        targets = labels["input_ids"].masked_fill(labels["attention_mask"] == 0, -100)
        loss = model(**inputs, labels=targets).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def _bpe_tokenizer(path: Path, specials: list[str], **named: str) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **named)
    fast.save_pretrained(path)
    return fast


def build_bart_model(path: Path, max_positions: int = 64) -> Path:
    """A one-layer BART with a small window, so long inputs must be chunked."""
    tokenizer = _bpe_tokenizer(
        path,
        ["<s>", "<pad>", "</s>", "<unk>"],
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=max_positions,
    )
    torch.manual_seed(0)
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
    _train_generator(model, tokenizer, [(t, t) for t in CORPUS], steps=120)
    model.generation_config.num_beams = 1
    model.save_pretrained(path)
    return path


def build_llama_chat_model(path: Path, max_positions: int = 512) -> Path:
    """A two-layer Llama-style causal LM with a ChatML chat template."""
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
    torch.manual_seed(0)
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
    rng = random.Random(1)
    chats = [
        tokenizer.apply_chat_template(
            [
                {"role": "user", "content": rng.choice(CORPUS)},
                {"role": "assistant", "content": rng.choice(CORPUS)},
            ],
            tokenize=False,
        )
        for _ in range(64)
    ]
    _train_generator(model, tokenizer, [(chat, chat) for chat in chats], steps=120)
    model.save_pretrained(path)
    return path
