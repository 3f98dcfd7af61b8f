"""Reading a direction against a prompt: how much the prompt already points along it per layer, and an alpha
sweep that shows where behaviour changes before the text falls apart."""
from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .directions import Direction
from .extraction import collect_residuals
from .errors import InvalidInputError
from .generation import DecodingSettings, check_alpha
from .interventions import Positions, add
from .model_view import ModelView
from .tokens import encode


def alignment_per_layer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                        direction: Direction, position: int = -1) -> pd.DataFrame:
    """Cosine similarity between the residual stream at `position` and the direction, per layer (mean over texts)."""
    view = ModelView.of(model)
    direction.check_fits(view.n_layers, view.d_model)
    acts = collect_residuals(model, tokenizer, texts, positions=(position,))[:, :, 0]  # [n, layers, d]
    cos = torch.nn.functional.cosine_similarity(acts, direction.vectors.unsqueeze(0), dim=-1).mean(0)
    return pd.DataFrame({"layer": range(view.n_layers), "cosine": cos.tolist()})


@torch.no_grad()
def continuation_perplexity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                            continuations: Sequence[str]) -> list[float]:
    """Perplexity of each continuation given its prompt (nan for an empty continuation)."""
    view = ModelView.of(model)
    batch = encode(tokenizer, [p + c for p, c in zip(prompts, continuations)], view.device)
    prompt_lengths = encode(tokenizer, prompts, "cpu").attention_mask.sum(dim=1).tolist()
    logprobs = torch.log_softmax(model(**batch).logits[:, :-1].float(), dim=-1)
    token_lp = logprobs.gather(-1, batch.input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # [batch, seq-1]
    out = []
    for row, prompt_len in enumerate(prompt_lengths):
        n_cont = int(batch.attention_mask[row].sum()) - int(prompt_len)
        out.append(math.exp(-token_lp[row, -n_cont:].mean().item()) if n_cont > 0 else float("nan"))
    return out


def distinct_ngrams(text: str, n: int = 2) -> float:
    """Share of the text's word n-grams that are distinct (1 = no repeats; "siti siti siti" -> near 0): a coherence
    check repetition cannot fool, unlike perplexity, which a loop drives down. nan for fewer than n words."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


@torch.no_grad()
def alpha_sweep(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str, direction: Direction,
                alphas: Sequence[float], layers: Sequence[int], *, positions: Positions = "all",
                decoding: DecodingSettings = DecodingSettings()) -> pd.DataFrame:
    """Steered continuations of one formatted prompt for every (layer, alpha), in one batched generate call,
    each with the unsteered model's perplexity of it and its share of distinct word pairs (how coherent the text
    stayed: a loop has a low perplexity but few distinct pairs)."""
    view = ModelView.of(model)
    direction.check_fits(view.n_layers, view.d_model)
    if not alphas or not layers:
        raise InvalidInputError("Give at least one alpha and one layer.")
    alphas = [check_alpha(a, f"Sweep alpha {a}") for a in alphas]  # each one: max(alphas, key=abs) skips a NaN
    grid = [(layer, alpha) for layer in layers for alpha in alphas]
    batch = encode(tokenizer, [text] * len(grid), view.device)
    unit_vectors = direction.steering_vectors(list(layers), 1.0)  # alpha is per row below
    torch.manual_seed(decoding.seed)
    with ExitStack() as stack:
        for layer in layers:
            row_alphas = [alpha if row_layer == layer else 0.0 for row_layer, alpha in grid]
            stack.enter_context(add(model, {layer: unit_vectors[layer]}, row_alphas, positions=positions))
        out = model.generate(**batch, **decoding.generate_kwargs())
    texts = tokenizer.batch_decode(out[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
    perplexity = continuation_perplexity(model, tokenizer, [text] * len(grid), texts)
    return pd.DataFrame({"layer": [g[0] for g in grid], "alpha": [g[1] for g in grid], "text": texts,
                         "perplexity": perplexity, "distinct_2": [distinct_ngrams(t) for t in texts]})
