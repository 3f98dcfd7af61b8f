"""Run a batch's prompts up to their last k tokens once, then only those k tokens for each variant.

An intervention confined to the last k tokens of a prompt (an addition at the statement's last tokens, an affine
ablation at the post-instruction tokens) leaves every earlier token's states as they are: causal attention
never looks forward. So the prefix runs once with a KV cache, and each variant runs only the k-token suffix
against it, as many variants at once as rows allow (`repeats`: each prompt's rows are adjacent, as
`repeat_interleave` lays them out).

    prefix = run_prefix(model, batch.input_ids, batch.attention_mask, k=6)
    with add(model, vectors, alpha=per_row_alphas, positions=[-6, -5], prompt_length=prefix.length):
        hidden = run_suffix(model, prefix, repeats=4)          # [batch * 4, 6, d_model], final norm applied

Positions: the hooks' offsets need the full prompt's length (`prompt_length=prefix.length`), since the suffix pass
starts with a cache. Position encodings continue from the cache's length, exactly as in the full pass. Left
padding is the prefix's: the attention mask covers prefix and suffix."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .errors import InvalidInputError
from .model_view import ModelView


@dataclass
class Prefix:
    """A batch run up to its last k tokens: the KV cache of the prefix, and what the suffix pass needs."""

    cache: object  # transformers Cache of the prefix's tokens, never changed by run_suffix
    suffix_ids: torch.Tensor  # [batch, k]
    attention_mask: torch.Tensor  # [batch, seq]: prefix and suffix
    length: int  # seq: the full prompt's length (the hooks' prompt_length)


@torch.no_grad()
def run_prefix(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, k: int) -> Prefix:
    """The decoder stack on every token but the last k, keeping its KV cache (no final norm is read)."""
    seq = input_ids.shape[1]
    if not 1 <= k < seq:
        raise InvalidInputError(f"run_prefix: the suffix must be 1..{seq - 1} tokens of these {seq}, not {k}.")
    view = ModelView.of(model)
    out = view.decoder_stack(input_ids=input_ids[:, :seq - k], attention_mask=attention_mask[:, :seq - k],
                             use_cache=True)
    cache = getattr(out, "cache", None) or out.past_key_values
    return Prefix(cache, input_ids[:, seq - k:], attention_mask, seq)


def run_suffix(model: nn.Module, prefix: Prefix, repeats: int = 1) -> torch.Tensor:
    """[batch * repeats, k, d_model] the decoder stack's output (final norm applied) at the last k tokens, each
    prompt repeated `repeats` times in adjacent rows; hooks around the call see only these k tokens."""
    cache = copy.deepcopy(prefix.cache)
    if repeats > 1:
        cache.batch_repeat_interleave(repeats)
    view = ModelView.of(model)
    out = view.decoder_stack(input_ids=prefix.suffix_ids.repeat_interleave(repeats, 0),
                             attention_mask=prefix.attention_mask.repeat_interleave(repeats, 0),
                             cache=cache, use_cache=True)
    return out.last_hidden_state
