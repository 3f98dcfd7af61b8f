"""Scoring a statement's truth as the paper does: a few-shot prompt of labelled statements, then the statement and
" This statement is:", scored by P(TRUE) - P(FALSE) at the next token (Marks & Tegmark's Geometry of Truth).

Used by the truthfulness study (interventions) and the knowledge study (patching between paired statements).

    prefix = few_shot_prefix(statement_set("cities"))
    scores = truth_scores(model, tokenizer, truth_prompts(["The city of Paris is in France."], prefix))
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import pandas as pd
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from steering.errors import InvalidInputError
from steering.model_view import ModelView
from steering.tokens import encode

SUFFIX = " This statement is:"
ANSWERS = ("TRUE", "FALSE")
# a context manager for the rows [start, end) of the prompts being scored (an intervention, or nothing)
Steer = Callable[[int, int], AbstractContextManager]


def few_shot_lines(frame: pd.DataFrame, n_shots: int = 4, seed: int = 0,
                   answers: tuple[str, str] = ANSWERS) -> list[str]:
    """`n_shots` labelled lines from the set's train split, half true and half false, from different facts, in the
    order drawn (true, false, true, ...)."""
    return _draw_lines(frame, n_shots, random.Random(seed), answers)


def _draw_lines(frame: pd.DataFrame, n_shots: int, rng: random.Random, answers: tuple[str, str]) -> list[str]:
    train = frame[frame["split"] == "train"] if "split" in frame else frame
    lines, used = [], set()
    for i in range(n_shots):
        label = 1 - i % 2
        pool = train[(train["label"] == label) & ~train["fact"].isin(used)]
        if pool.empty:
            raise InvalidInputError(f"Not enough training statements for {n_shots} few-shot examples.")
        row = pool.iloc[rng.randrange(len(pool))]
        used.add(row["fact"])
        lines.append(f"{row['statement']}{SUFFIX} {answers[0] if label else answers[1]}\n")
    return lines


def few_shot_prefix(frame: pd.DataFrame, n_shots: int = 4, seed: int = 0, answers: tuple[str, str] = ANSWERS) -> str:
    """The lines of `few_shot_lines` in one seeded shuffle (the same rng continues after drawing them)."""
    rng = random.Random(seed)
    lines = _draw_lines(frame, n_shots, rng, answers)
    rng.shuffle(lines)
    return "".join(lines)


def shuffled_orders(n_lines: int, n_prompts: int, seed: int = 0) -> list[tuple[int, ...]]:
    """One seeded shuffle of the few-shot lines per prompt, in turn (the paper reshuffles its examples for each
    statement): order[i] lists the line indices of prompt i."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_prompts):
        order = list(range(n_lines))
        rng.shuffle(order)
        out.append(tuple(order))
    return out


def prefix_of(lines: Sequence[str], order: Sequence[int]) -> str:
    return "".join(lines[i] for i in order)


def shot_facts(prefix: str, frame: pd.DataFrame) -> set:
    """The facts whose statements appear in the prefix: leave them out of what is scored."""
    return {f for s, f in zip(frame["statement"], frame["fact"]) if f"{s}{SUFFIX}" in prefix}


def truth_prompts(statements: Sequence[str], prefix: str | Sequence[str] = "") -> list[str]:
    """Each statement after the few-shot prefix (one for all, or one per statement) and before the suffix."""
    prefixes = [prefix] * len(statements) if isinstance(prefix, str) else list(prefix)
    if len(prefixes) != len(statements):
        raise InvalidInputError(f"{len(prefixes)} prefixes for {len(statements)} statements.")
    return [f"{p}{s}{SUFFIX}" for p, s in zip(prefixes, statements)]


def answer_token_ids(tokenizer: PreTrainedTokenizerBase, answers: tuple[str, str] = ANSWERS) -> tuple[int, int]:
    """The first token of ' TRUE' and of ' FALSE' (each one token on Gemma, Llama and most BPE vocabularies)."""
    ids = []
    for word in answers:
        tokens = tokenizer(" " + word, add_special_tokens=False).input_ids
        if not tokens or tokens[0] == tokenizer.unk_token_id:
            raise InvalidInputError(f"The tokenizer has no token for the answer '{word}'.")
        ids.append(tokens[0])
    if ids[0] == ids[1]:
        raise InvalidInputError(f"The answers {answers} start with the same token; choose other answer words.")
    return ids[0], ids[1]


def statement_offsets(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """Offsets from the prompt's end of the statement's last token and of its closing period (-1 is the ':')."""
    without = tokenizer("It is so.", add_special_tokens=False).input_ids
    with_suffix = tokenizer("It is so." + SUFFIX, add_special_tokens=False).input_ids
    n_suffix = len(with_suffix) - len(without)
    return -(n_suffix + 2), -(n_suffix + 1)


@torch.no_grad()
def next_token_probs(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    token_ids: Sequence[int],
    *,
    batch_size: int = 16,
    steer: Steer | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """[n_prompts, len(token_ids)] probabilities of the given tokens after each prompt. Only the last position is
    unembedded; `steer(start, end)` wraps each batch's forward pass (an intervention on those rows)."""
    view = ModelView.of(model)
    out = []
    for start in range(0, len(prompts), batch_size):
        end = min(start + batch_size, len(prompts))
        batch = encode(tokenizer, prompts[start:end], view.device)
        with steer(start, end) if steer else nullcontext():
            hidden = view.decoder_stack(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                        use_cache=False).last_hidden_state[:, -1]
        probs = torch.softmax(view.logits(hidden).float(), dim=-1)
        out.append(probs[:, list(token_ids)].cpu())
        if progress:
            progress(end, len(prompts))
    return torch.cat(out)


def truth_scores(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    answers: tuple[str, str] = ANSWERS,
    batch_size: int = 16,
    steer: Steer | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """[n_prompts] P(TRUE) - P(FALSE) at the token after each prompt (built with truth_prompts)."""
    if not prompts:
        raise InvalidInputError("No statements to score.")
    probs = next_token_probs(model, tokenizer, prompts, answer_token_ids(tokenizer, answers),
                             batch_size=batch_size, steer=steer, progress=progress)
    return probs[:, 0] - probs[:, 1]
