"""Candidate refusal directions and their selection on the validation split (Arditi et al. 2024, section 2.3).

A candidate is the difference in means (harmful minus harmless) of the residual stream entering layer l at one
post-instruction token position p. Each candidate is scored on validation prompts:
- ablation score: mean refusal log-odds on harmful prompts with the direction ablated (lower = the direction
  matters more for refusing). Config.ablation picks how: "affine" (default; Marshall, Scherlis & Belrose 2024,
  ACE) sets the component along u at the input of every layer l to the harmless mean c_l, at the post-instruction
  and generated tokens only; "project" (Arditi) projects u out at every layer, component and position. On the
  demo (Gemma 3 270M) projection breaks the model (harmless KL 10-40 nats for every candidate: the direction is
  dominated by one large residual dimension), so no candidate passes the KL filter;
- addition score: mean refusal log-odds on harmless prompts with alpha * (typical residual norm) * unit added at
  layer l (higher = adding it induces refusal);
- KL: mean KL divergence of the next-token distribution on harmless prompts under ablation (how much else it breaks).
Filters (Config fields): drop layers in the last `prune_layer_fraction` of the model, KL above `max_kl`, addition
score not above `min_addition_score`; then pick the lowest ablation score (fallback: see `select`)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from steering.extraction import collect_residuals
from steering.errors import InvalidInputError
from steering.interventions import ablate, add, affine_ablate

from .config import ABLATIONS
from .scores import BatchProgress, Intervention, kl_divergence, last_logits, refusal_log_odds

Ablation = Literal["affine", "project"]


def ablation_for(model: PreTrainedModel, vector: torch.Tensor, harmless_mean: torch.Tensor,
                 positions: Sequence[int], method: str) -> Intervention:
    """A context-manager factory ablating `vector` on `model`. "project": Arditi's projection at every layer,
    component and position. "affine": ACE at resid_pre of every layer, at offsets >= min(positions) (the
    post-instruction tokens and every generated token), with c_l = harmless_mean[l] . u; `harmless_mean` is the
    STEERED model's own mean harmless residual [n_layers, d] over the post-instruction positions (for transfer:
    the steered model's mean projected on the other model's direction)."""
    if method == "project":
        return lambda: ablate(model, vector)
    if method != "affine":
        raise InvalidInputError(f"Unknown ablation '{method}': use one of {', '.join(ABLATIONS)}.")
    unit = vector / vector.norm()
    reference = {layer: float(harmless_mean[layer] @ unit) for layer in range(harmless_mean.shape[0])}
    where = range(min(positions), 10_000)
    return lambda: affine_ablate(model, vector, reference, positions=where)


def candidate_directions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, harmful: Sequence[str],
                         harmless: Sequence[str], positions: Sequence[int], *, batch_size: int = 16,
                         progress: BatchProgress | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(diff [n_layers, n_positions, d] harmful minus harmless means, norms [n_layers, n_positions] mean residual
    norm over both sets, harmless_mean [n_layers, d] mean harmless residual over the positions: the affine
    ablation's reference) of the residual stream entering every layer at the given offsets."""
    total = len(harmful) + len(harmless)

    def acts(prompts: Sequence[str], offset: int) -> torch.Tensor:
        report = (lambda done, _: progress(offset + done, total)) if progress else None
        return collect_residuals(model, tokenizer, prompts, positions=tuple(positions), batch_size=batch_size,
                                 progress=report)

    pos, neg = acts(harmful, 0), acts(harmless, len(harmful))
    return pos.mean(0) - neg.mean(0), torch.cat([pos, neg]).norm(dim=-1).mean(0), neg.mean(dim=(0, 2))


def kept_layers(n_layers: int, prune_layer_fraction: float) -> list[int]:
    """Layers outside the last `prune_layer_fraction` of the model (Arditi: candidates there are discarded)."""
    return [layer for layer in range(n_layers) if layer < (1.0 - prune_layer_fraction) * n_layers]


def addition_vector(unit: torch.Tensor, norm: float, alpha: float) -> torch.Tensor:
    """alpha in units of the typical residual norm at the layer it is added to."""
    return alpha * norm * torch.nn.functional.normalize(unit, dim=0)


def score_candidates(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, diffs: torch.Tensor,
                     norms: torch.Tensor, positions: Sequence[int], layers: Sequence[int], harmful: Sequence[str],
                     harmless: Sequence[str], token_ids: Sequence[int], *, alpha: float, batch_size: int = 16,
                     ablation: str = "affine", harmless_mean: torch.Tensor | None = None,
                     progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per (layer, position): ablation_score, addition_score, kl (see the module's docstring).
    `harmless_mean` (from candidate_directions) is needed for the affine ablation."""
    if ablation == "affine" and harmless_mean is None:
        raise InvalidInputError("The affine ablation needs the harmless mean residual (harmless_mean).")
    reference = last_logits(model, tokenizer, harmless, batch_size=batch_size)
    both, n_h = list(harmful) + list(harmless), len(harmful)
    grid = [(layer, p) for layer in layers for p in range(len(positions))]
    rows = []
    for i, (layer, p) in enumerate(grid):
        vector = diffs[layer, p]
        if float(vector.norm()) < 1e-6 * max(float(norms[layer, p]), 1e-12):  # same tokens on both sides (layer 0)
            rows.append({"layer": layer, "position": positions[p], "ablation_score": float("nan"),
                         "addition_score": float("nan"), "kl": float("nan")})
            if progress:
                progress(i + 1, len(grid))
            continue
        ablated = last_logits(model, tokenizer, both, batch_size=batch_size,
                              intervention=ablation_for(model, vector, harmless_mean, positions, ablation))
        steer = {layer: addition_vector(vector, float(norms[layer, p]), alpha)}
        added = last_logits(model, tokenizer, harmless, batch_size=batch_size,
                            intervention=lambda: add(model, steer))
        rows.append({"layer": layer, "position": positions[p],
                     "ablation_score": refusal_log_odds(ablated[:n_h], token_ids).mean().item(),
                     "addition_score": refusal_log_odds(added, token_ids).mean().item(),
                     "kl": kl_divergence(reference, ablated[n_h:]).mean().item()})
        if progress:
            progress(i + 1, len(grid))
    return pd.DataFrame(rows)


def apply_filters(candidates: pd.DataFrame, n_layers: int, *, prune_layer_fraction: float, max_kl: float,
                  min_addition_score: float) -> pd.DataFrame:
    """The candidates with a `filter` column: 'kept' or why the candidate was discarded."""
    out = candidates.copy()
    reasons = []
    kept = set(kept_layers(n_layers, prune_layer_fraction))
    for row in out.itertuples():
        if row.layer not in kept:
            reasons.append(f"in the last {prune_layer_fraction:.0%} of layers")
        elif pd.isna(row.ablation_score):
            reasons.append("no direction (same activations on both sides)")
        elif pd.isna(row.kl) or row.kl > max_kl:
            reasons.append(f"KL on harmless > {max_kl:g}")
        elif row.addition_score <= min_addition_score:
            reasons.append("addition does not induce refusal")
        else:
            reasons.append("kept")
    out["filter"] = reasons
    return out


def select(filtered: pd.DataFrame, max_kl: float = 0.1) -> tuple[pd.Series, bool]:
    """The kept candidate with the lowest ablation score, and True (Arditi). When no candidate passes every filter
    (False): among the candidates outside the pruned layers (or all, if none), the lowest ablation score among
    those with KL < 10 * max_kl; if none is that gentle, the lowest KL (the least damaging ablation)."""
    kept = filtered[filtered["filter"] == "kept"]
    if len(kept):
        return kept.loc[kept.ablation_score.idxmin()], True
    allowed = filtered[~filtered["filter"].str.startswith("in the last")].dropna(subset=["ablation_score", "kl"])
    pool = allowed if len(allowed) else filtered.dropna(subset=["ablation_score", "kl"])
    gentle = pool[pool.kl < 10 * max_kl]
    if len(gentle):
        return gentle.loc[gentle.ablation_score.idxmin()], False
    return pool.loc[pool.kl.idxmin()], False
