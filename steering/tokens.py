"""Turning text into model inputs the same way everywhere: left padding, one BOS, chat template or raw."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase

from .errors import InvalidInputError


def chat_prompt(tokenizer: PreTrainedTokenizerBase, instruction: str) -> str:
    """One user turn in the tokenizer's chat template, ending where the model's answer starts."""
    if not tokenizer.chat_template:
        raise InvalidInputError("This tokenizer has no chat template; send raw text instead.")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
    )


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], device: torch.device | str = "cpu") -> BatchEncoding:
    """Left-padded batch. Texts that already start with the BOS token (chat-formatted) get no second one."""
    texts = list(texts)
    if not texts:
        raise InvalidInputError("No text to encode.")
    bos = tokenizer.bos_token
    has_bos = bool(bos) and all(t.startswith(bos) for t in texts)
    return tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                     add_special_tokens=not has_bos).to(device)


def dataset_hash(*parts: Sequence[str]) -> str:
    """A short, stable hash of one or more lists of texts (order matters)."""
    import hashlib

    digest = hashlib.sha256()
    for texts in parts:
        for text in texts:
            digest.update(text.encode("utf-8") + b"\x00")
        digest.update(b"\x01")
    return digest.hexdigest()[:16]
