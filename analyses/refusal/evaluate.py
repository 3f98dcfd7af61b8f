"""The refusal study on held-out prompts: every model x direction source x intervention, both refusal scores.

- ablation: the selected direction ablated, on harmful prompts: Config.ablation "affine" (default, ACE of
  Marshall et al. 2024: the component along it set to the steered model's harmless mean at every layer's input,
  at the post-instruction and generated tokens) or "project" (Arditi: projected out everywhere);
- addition: alpha * (the steered model's typical residual norm at that layer and position) * unit direction,
  added at the direction's selected layer at every token, on harmless prompts;
- the direction comes from the model itself, or from the other model of the pair: base->post is forward
  transfer, post->base backward transfer."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from steering.directions import Direction
from steering.generation import format_prompts
from steering.interventions import add

from ..common import Steps
from .scores import Intervention, generate_conditions, generate_scored, refusal_flags
from .selection import ablation_for, addition_vector

ROLE_ORDER = ("base", "post")
TRANSFER = {("base", "post"): "forward (base→post)", ("post", "base"): "backward (post→base)"}


@dataclass(frozen=True)
class SelectedDirection:
    """One model's selected refusal direction and that model's own residual statistics: as a source, its vector
    is `direction.at(layer)` read at `direction.info.position`; as the steered model, `norms` [n_layers,
    n_positions] scale the addition and `harmless_mean` [n_layers, d] is the affine ablation's reference."""

    direction: Direction  # the candidate of every layer at the selected position
    layer: int  # the selected layer
    norms: torch.Tensor  # [n_layers, n_positions] typical residual norm of this model
    harmless_mean: torch.Tensor | None = None  # [n_layers, d] mean harmless residual of this model

    @property
    def vector(self) -> torch.Tensor:
        return self.direction.at(self.layer)

    @property
    def position(self) -> int:
        return int(self.direction.info.position)


def transfer_label(source: str | None, target: str) -> str:
    if source is None:
        return "none"
    return "own" if source == target else TRANSFER.get((source, target), f"{source}→{target}")


def intervention_for(model: PreTrainedModel, mode: str, source: SelectedDirection | None,
                     target: SelectedDirection, positions: Sequence[int], alpha: float,
                     ablation: str = "affine", rows: Sequence[int] | None = None,
                     prompt_length: int | None = None) -> Intervention | None:
    """A context-manager factory that ablates or adds the source's direction on `model`; None for 'none'.
    `target` is the steered model's own entry (its norms for the addition scale, its harmless mean for the affine
    ablation's reference c_l = its harmless mean . source's unit). `rows`: only those batch rows (None: all);
    `prompt_length` as the interventions take it."""
    if mode == "none":
        return None
    vector = source.vector
    if mode == "ablate":
        return ablation_for(model, vector, target.harmless_mean, positions, ablation, rows, prompt_length)
    layer = source.layer
    norm = float(target.norms[layer, list(positions).index(source.position)])
    return lambda: add(model, {layer: addition_vector(vector, norm, alpha)}, rows=rows, prompt_length=prompt_length)


def conditions(sources: Sequence[str]) -> list[tuple[str, str | None, str]]:
    """(intervention, direction source, prompt set): baselines on both sets, then ablation on harmful and addition
    on harmless with every model's direction."""
    out = [("none", None, "harmful"), ("none", None, "harmless")]
    for source in sources:
        out += [("ablate", source, "harmful"), ("add", source, "harmless")]
    return out


def _row(role: str, mode: str, source: str | None, side: str, prompt: str, reply: str, refused: bool,
         score: float) -> dict:
    return {"model": role, "direction_from": source or "none", "transfer": transfer_label(source, role),
            "intervention": mode, "prompts": side, "prompt": prompt, "reply": reply, "refusal": refused,
            "refusal_score": score}


def _tabulate(gen_rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    gens = pd.DataFrame(gen_rows)
    keys = ["model", "direction_from", "transfer", "intervention", "prompts"]
    scores = (gens.groupby(keys, sort=False)
              .agg(n=("refusal", "size"), refusal_score=("refusal_score", "mean"), refusal_rate=("refusal", "mean"))
              .reset_index())
    return scores, gens


def evaluate_test(models: dict[str, PreTrainedModel], tok: PreTrainedTokenizerBase, texts: dict[str, list[str]],
                  raw: dict[str, list[str]], directions: dict[str, SelectedDirection], token_ids: Sequence[int],
                  positions: Sequence[int], config, steps: Steps) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores: one row per model x source x intervention, generations: one row per reply). `texts` are the
    formatted test prompts per side, `raw` the same instructions as typed. Every condition on one prompt set
    (none, then each source's ablation or addition) shares a generate call, a block of batch rows each; the
    table is evaluate_test_reference's (one call per condition). On the harmful prompts the affine ablation acts
    only from min(positions) on, so the prompt before that runs once, clean, for every condition."""
    phrases, gen_rows = config.phrases or None, []
    todo = conditions([s for s in ROLE_ORDER if s in directions])
    for role, model in models.items():
        report = steps.stage(f"test {role}", f"{role}: interventions on the test split")
        found, done, total = {}, 0, sum(len(texts[side]) for _, _, side in todo)
        for side in ("harmful", "harmless"):
            here = [(mode, source) for mode, source, s in todo if s == side]
            hooks = [_rows_hook(model, mode, directions.get(source), directions[role], positions, config)
                     for mode, source in here]
            outs = generate_conditions(
                model, tok, texts[side], token_ids, hooks, max_new_tokens=config.max_new_tokens,
                batch_size=config.batch_size, shared_suffix=shared_suffix(side, positions, config),
                progress=lambda d, t, at=done, n=len(here): report(at + d * n, total))
            done += len(here) * len(texts[side])
            found.update({(mode, source, side): out for (mode, source), out in zip(here, outs)})
        for mode, source, side in todo:
            replies, scores = found[mode, source, side]
            gen_rows += [_row(role, mode, source, side, *row) for row in
                         zip(raw[side], replies, refusal_flags(replies, phrases), scores)]
    return _tabulate(gen_rows)


def shared_suffix(side: str, positions: Sequence[int], config) -> int:
    """How many last prompt tokens the conditions on a prompt set can change (0: all, nothing to share): the affine
    ablation (harmful prompts) acts from min(positions) on; the addition (harmless) and projection everywhere."""
    return -min(positions) if side == "harmful" and config.ablation == "affine" else 0


def _rows_hook(model, mode: str, source: SelectedDirection | None, target: SelectedDirection, positions, config):
    """(rows, prompt length) -> a context manager applying the condition to those batch rows only (None: none)."""
    if mode == "none":
        return None
    return lambda rows, length: intervention_for(model, mode, source, target, positions, config.alpha,
                                                 config.ablation, rows, length)()


def evaluate_test_reference(models: dict[str, PreTrainedModel], tok: PreTrainedTokenizerBase,
                            texts: dict[str, list[str]], raw: dict[str, list[str]],
                            directions: dict[str, SelectedDirection], token_ids: Sequence[int],
                            positions: Sequence[int], config, steps: Steps) -> tuple[pd.DataFrame, pd.DataFrame]:
    """evaluate_test, one generate call per condition and batch (the slow reference it is tested against)."""
    phrases, gen_rows = config.phrases or None, []
    for role, model in models.items():
        report = steps.stage(f"test {role}", f"{role}: interventions on the test split")
        todo = conditions([s for s in ROLE_ORDER if s in directions])
        for i, (mode, source, side) in enumerate(todo):
            prompts = texts[side]
            hook = intervention_for(model, mode, directions.get(source), directions[role], positions,
                                    config.alpha, config.ablation)
            replies, scores = generate_scored(model, tok, prompts, token_ids, intervention=hook,
                                              max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                                              progress=lambda d, t, i=i: report(i * t + d, len(todo) * t))
            gen_rows += [_row(role, mode, source, side, *row) for row in
                         zip(raw[side], replies, refusal_flags(replies, phrases), scores)]
    return _tabulate(gen_rows)


def live_generation(model: PreTrainedModel, tok: PreTrainedTokenizerBase, prompt: str, mode: str,
                    source: SelectedDirection, target: SelectedDirection, positions: Sequence[int], alpha: float,
                    max_new_tokens: int = 48, ablation: str = "affine") -> tuple[str, str]:
    """(unsteered, steered) greedy replies to one instruction through the chat template; `target` is the steered
    model's entry of `steering_of(result)` (its norms and harmless mean)."""
    text = format_prompts(tok, [prompt])
    hook = intervention_for(model, mode, source, target, positions, alpha, ablation)
    plain, _ = generate_scored(model, tok, text, [0], max_new_tokens=max_new_tokens)
    steered, _ = generate_scored(model, tok, text, [0], intervention=hook, max_new_tokens=max_new_tokens)
    return plain[0], steered[0]
