"""Tiny causal LMs built for the generation tests (beside the trained ones in tests/tiny_models)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    FalconMambaConfig,
    FalconMambaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)


def build_endless_llama(path: Path, tokenizer_from: str) -> str:
    """An untrained Llama that never ends an answer early: answers are max_new_tokens long."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    tokenizer.save_pretrained(path)
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Special tokens score 0 while some ordinary token always scores higher.
        model.lm_head.weight[tokenizer.all_special_ids] = 0.0
    model.save_pretrained(path)
    return str(path)


def build_mamba(path: Path, tokenizer_from: str) -> str:
    """A causal LM continuous batching rejects (its layers are not attention layers)."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = FalconMambaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        state_size=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=False,
    )
    model = FalconMambaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight[tokenizer.all_special_ids] = 0.0  # answers are never empty
    model.save_pretrained(path)
    return str(path)
