"""The logit lens: each layer's residual stream read through the model's own final norm and unembedding.

    table = logit_lens(pair, text, position)        # layer, model, rank, token, token_id, prob (both models)
    logp = lens_log_probs(model, resid)             # resid [layers + 1, d] -> [layers + 1, vocab] log-probs
    logits = lens_logits(model, resid)              # the same before the softmax

Layer l is the stream entering decoder layer l (hook point resid_pre.l, so layer 0 is the embedding); layer
n_layers is the final norm's input (resid_final), whose lens is the model's own output distribution. The reading is
`ModelView.final_norm` then `ModelView.logits` (the soft-cap included), never hand-written per architecture.

Positions here count from the text's first token (0 = the BOS token where the tokenizer adds one): a lens reads
one text at a time, without padding. Only the asked positions are unembedded, so a 262k-token vocabulary never
makes a [layers x positions x vocab] tensor."""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from .errors import InvalidInputError
from .interventions import FINAL, record
from .model_view import ModelView
from .tokens import encode

_ANGLE_TOKEN = re.compile(r"<[^<>]*>")  # <unused17>, <start_of_turn>, <mask>, ...


def lens_points(model: nn.Module) -> list[str]:
    """The hook points the lens reads: resid_pre.0 .. resid_pre.{L-1}, then the final norm's input."""
    return [f"resid_pre.{layer}" for layer in range(ModelView.of(model).n_layers)] + [FINAL]


def context_length(model: nn.Module) -> int | None:
    """The longest sequence the model's position encoding covers (None where the config does not say)."""
    value = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    return int(value) if value else None


def token_ids(tokenizer, text: str, models: Sequence[nn.Module]) -> torch.Tensor:
    """[1, seq] the text's token ids as the models will see them (one BOS, as `encode` gives it), checked: not
    empty, not longer than any model's context, no id outside any model's embedding or unembedding."""
    if not text or not text.strip():
        raise InvalidInputError("The text is empty: give at least one word.")
    ids = encode(tokenizer, [text])["input_ids"]
    check_ids(ids, models)
    return ids


def check_ids(ids: torch.Tensor, models: Sequence[nn.Module]) -> None:
    """Refuse token ids the models cannot read: a sequence past the context, or an id past a vocabulary."""
    for model in models:
        view, limit = ModelView.of(model), context_length(model)
        if limit is not None and ids.shape[-1] > limit:
            raise InvalidInputError(f"The text is {ids.shape[-1]} tokens long, longer than the model's context of "
                                    f"{limit} tokens: shorten it.")
        rows = min(view.embedding.weight.shape[0], view.unembedding.weight.shape[0])
        if int(ids.max()) >= rows:
            raise InvalidInputError(f"The text has token id {int(ids.max())}, but a model of the pair has only {rows} "
                                    "embedding rows: the tokenizer does not belong to these models.")


@torch.no_grad()
def lens_logits(model: nn.Module, resid: torch.Tensor) -> torch.Tensor:
    """[..., vocab] float32 logits of residual streams [..., d] read as if they were the last layer's: the final
    norm, then the unembedding with the model's soft-cap."""
    view = ModelView.of(model)
    norm_dtype = next(view.final_norm.parameters()).dtype
    hidden = view.final_norm(resid.to(device=view.device, dtype=norm_dtype))
    return view.logits(hidden.to(view.unembedding.weight.dtype)).float()


def lens_log_probs(model: nn.Module, resid: torch.Tensor) -> torch.Tensor:
    """[..., vocab] the log-softmax of `lens_logits`."""
    return torch.log_softmax(lens_logits(model, resid), dim=-1)


@torch.no_grad()
def stack_pass(model: nn.Module, ids: torch.Tensor, positions: Sequence[int] | str) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoder-stack pass over one text [1, seq] (no unembedding): [seq, d] its output (after the final norm)
    and [layers + 1, n_positions, d] the stream at every lens point; positions count from the text's start, or
    "all"."""
    view, seq = ModelView.of(model), ids.shape[-1]
    offsets = positions if isinstance(positions, str) else [p - seq for p in positions]  # record counts from the end
    points = lens_points(model)
    with record(model, points, positions=offsets) as rec:
        out = view.decoder_stack(input_ids=ids.to(view.device), attention_mask=torch.ones_like(ids).to(view.device),
                                 use_cache=False)
    return out.last_hidden_state[0], torch.stack([rec.get(point)[0] for point in points])


def residuals_at(model: nn.Module, ids: torch.Tensor, positions: Sequence[int] | str) -> torch.Tensor:
    """[layers + 1, n_positions, d]: `stack_pass`'s stream alone."""
    return stack_pass(model, ids, positions)[1]


def top_rows(log_probs: torch.Tensor, tokenizer, top_n: int) -> list[dict]:
    """One row per (layer, rank) of a lens [layers + 1, vocab]: the top_n tokens at each layer with their prob."""
    probs, ids = log_probs.exp().topk(top_n, dim=-1)
    return [{"layer": layer, "rank": rank + 1, "token": tokenizer.decode([int(ids[layer, rank])]),
             "token_id": int(ids[layer, rank]), "prob": float(probs[layer, rank])}
            for layer in range(ids.shape[0]) for rank in range(ids.shape[1])]


def first_layer_in_top(log_probs: torch.Tensor, k: int = 5) -> int:
    """The first layer at which the final answer (the last layer's top token) is among the lens's top k."""
    answer = int(log_probs[-1].argmax())
    inside = (log_probs.topk(k, dim=-1).indices == answer).any(-1)
    return int(inside.nonzero()[0])


def logit_lens(pair, text: str, position: int, top_n: int = 10) -> pd.DataFrame:
    """Both models' lens at one position of a text (as the models see it: apply the chat template first):
    layer, model, rank, token, token_id, prob. One decoder-stack pass per model, one position unembedded per layer."""
    models = pair.models()
    ids = token_ids(pair.tokenizer, text, list(models.values()))
    position = check_position(position, ids.shape[-1])
    frames = [pd.DataFrame(top_rows(lens_log_probs(model, residuals_at(model, ids, [position])[:, 0]),
                                    pair.tokenizer, top_n)).assign(model=role) for role, model in models.items()]
    return pd.concat(frames, ignore_index=True)[["layer", "model", "rank", "token", "token_id", "prob"]]


def check_position(position: int, seq: int) -> int:
    """A token position from the start (negative counts from the end: -1 is the last token), checked."""
    absolute = position + seq if position < 0 else position
    if not 0 <= absolute < seq:
        raise InvalidInputError(f"Position {position} is outside the text, which has {seq} tokens (0..{seq - 1}).")
    return absolute


# ---- tokens text can produce ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _vocabulary_facts(tokenizer) -> tuple[int, frozenset[int]]:
    """The tokenizer's size, and its special tokens with the added tokens it marks special (once per tokenizer:
    `len(tokenizer)` alone costs a millisecond)."""
    added = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    return len(tokenizer), frozenset(tokenizer.all_special_ids) | added


def is_text_token(tokenizer, token_id: int) -> bool:
    """Whether ordinary text can produce this token: not a special or control token, not of the form <…> (Gemma's
    never-trained <unused…> tokens among them), inside the tokenizer's vocabulary, and not decoding to nothing."""
    size, control = _vocabulary_facts(tokenizer)
    if not 0 <= token_id < size or token_id in control:
        return False
    piece = tokenizer.convert_ids_to_tokens(token_id)
    return not (piece is None or _ANGLE_TOKEN.fullmatch(piece)) and tokenizer.decode([token_id]) != ""


def top_text_tokens(scores: torch.Tensor, tokenizer, n: int, largest: bool = True) -> list[tuple[int, float]]:
    """The n (token id, score) pairs of a [vocab] score vector with the largest (or smallest) scores among the
    tokens text can produce (`is_text_token`), best first."""
    fetch = min(scores.shape[-1], 4 * n + 64)
    while True:
        values, ids = scores.float().topk(fetch, largest=largest)
        kept = [(int(i), float(v)) for i, v in zip(ids, values) if is_text_token(tokenizer, int(i))]
        if len(kept) >= n or fetch == scores.shape[-1]:
            return kept[:n]
        fetch = min(scores.shape[-1], fetch * 4)
