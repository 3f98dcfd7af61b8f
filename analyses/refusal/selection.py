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
score not above `min_addition_score`; then pick the lowest ablation score (fallback: see `select`).

Cost (score_candidates; score_candidates_reference is the plain loop it is tested against): a layer's candidates
share one batch (each row its own vector); the addition at l leaves layers < l as the clean pass had them, so it
resumes at l from the clean harmless pass's stream; the affine ablation changes only the tokens from min(positions)
on, so only those run, on the clean prefix's KV cache; a layer's final states are unembedded together. Scores agree
with the reference to float32 rounding (which the demo's chaotic ablated candidates amplify to ~1e-4, as a change
of the reference's own batch shapes does)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from steering.extraction import collect_residuals
from steering.errors import InvalidInputError
from steering.interventions import ablate, add, affine_ablate, record
from steering.model_view import UNEMBED_ROWS, ModelView
from steering.resume import resume_at
from steering.tokens import encode

from .config import ABLATIONS
from .scores import (BatchProgress, Intervention, clean_prefix, kl_divergence, last_logits, log_probs_of,
                     refusal_log_odds, suffix_final_hidden)

Ablation = Literal["affine", "project"]


def ablation_for(model: PreTrainedModel, vector: torch.Tensor, harmless_mean: torch.Tensor,
                 positions: Sequence[int], method: str, rows: Sequence[int] | None = None,
                 prompt_length: int | None = None) -> Intervention:
    """A context-manager factory ablating `vector` on `model`. "project": Arditi's projection at every layer,
    component and position. "affine": ACE at resid_pre of every layer, at offsets >= min(positions) (the
    post-instruction tokens and every generated token), with c_l = harmless_mean[l] . u; `harmless_mean` is the
    STEERED model's own mean harmless residual [n_layers, d] over the post-instruction positions (for transfer:
    the steered model's mean projected on the other model's direction). `rows`: only those batch rows (None: all);
    `prompt_length`: as the interventions take it (for a pass that starts on a prompt's cached prefix)."""
    if method == "project":
        return lambda: ablate(model, vector, rows=rows, prompt_length=prompt_length)
    if method != "affine":
        raise InvalidInputError(f"Unknown ablation '{method}': use one of {', '.join(ABLATIONS)}.")
    unit = vector / vector.norm()
    reference = {layer: float(harmless_mean[layer] @ unit) for layer in range(harmless_mean.shape[0])}
    where = range(min(positions), 10_000)
    return lambda: affine_ablate(model, vector, reference, positions=where, rows=rows,
                                 prompt_length=prompt_length)


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


def _no_direction(vector: torch.Tensor, norm: torch.Tensor) -> bool:
    """Same tokens on both sides (layer 0 at the template's tokens): the difference in means is zero."""
    return float(vector.norm()) < 1e-6 * max(float(norm), 1e-12)


def _nan_row(layer: int, position: int) -> dict:
    return {"layer": layer, "position": position, "ablation_score": float("nan"), "addition_score": float("nan"),
            "kl": float("nan")}


@torch.no_grad()
def _clean_harmless(model, tokenizer, harmless: Sequence[str], layers: Sequence[int], batch_size: int):
    """(reference log-probs [n, vocab] of the clean harmless pass, per batch: (encoding, {layer: resid_pre [b, seq,
    d]})): the stream each addition resumes from, from the same batches and padding as the reference's passes."""
    view, reference, batches = ModelView.of(model), [], []
    for start in range(0, len(harmless), batch_size):
        batch = encode(tokenizer, harmless[start:start + batch_size], view.device)
        points = [f"resid_pre.{layer}" for layer in layers]
        with record(model, points, positions="all") as rec:
            hidden = view.decoder_stack(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                        use_cache=False).last_hidden_state[:, -1]
        reference.append(log_probs_of(model, hidden))
        batches.append((batch, {layer: rec.get(f"resid_pre.{layer}") for layer in layers}))
    return torch.cat(reference), batches


@torch.no_grad()
def _added(model, batches, layer: int, vectors: torch.Tensor) -> torch.Tensor:
    """[K, n, d] final states of the harmless prompts with each of the K vectors [K, d] added at `layer`, resumed
    there."""
    view, out = ModelView.of(model), []
    for batch, streams in batches:
        k, b = vectors.shape[0], batch.input_ids.shape[0]
        with resume_at(model, layer, streams[layer].repeat(k, 1, 1)), add(
                model, {layer: vectors.repeat_interleave(b, dim=0)}):
            hidden = view.decoder_stack(input_ids=batch.input_ids.repeat(k, 1),
                                        attention_mask=batch.attention_mask.repeat(k, 1),
                                        use_cache=False).last_hidden_state[:, -1]
        out.append(hidden.reshape(k, b, -1))
    return torch.cat(out, dim=1)


@torch.no_grad()
def _ablated_affine(model, prefixes, vectors: torch.Tensor, references: dict, where: range) -> torch.Tensor:
    """[K, n, d] final states of the val prompts with each of the K directions [K, d] ablated (ACE at offsets in
    `where`), only the tokens from min(where) on run, on the clean prefix's cache (nothing before them can
    change)."""
    out, suffix = [], -where.start
    for batch, cache in prefixes:
        k, b, seq = vectors.shape[0], batch.input_ids.shape[0], batch.input_ids.shape[1]
        rows = {layer: c.repeat_interleave(b) for layer, c in references.items()}
        with affine_ablate(model, vectors.repeat_interleave(b, dim=0), rows, positions=where, prompt_length=seq):
            hidden = suffix_final_hidden(model, batch.input_ids, batch.attention_mask, cache, suffix, k)
        out.append(hidden.reshape(k, b, -1))
    return torch.cat(out, dim=1)


def _log_probs_together(model, *finals: torch.Tensor) -> list[torch.Tensor]:
    """log_probs_of for several [K, n_i, d] final states, unembedded in one call (the wide unembedding runs faster
    per row on more rows), each back as [K, n_i, vocab]."""
    k = finals[0].shape[0]
    flat = log_probs_of(model, torch.cat([f.reshape(-1, f.shape[-1]) for f in finals]), chunk=UNEMBED_ROWS)
    sizes = [f.shape[0] * f.shape[1] for f in finals]
    return [part.reshape(k, -1, part.shape[-1]) for part in flat.split(sizes)]


def _val_prefixes(model, tokenizer, both: list[str], suffix: int, batch_size: int) -> list:
    """(encoding, KV cache of its clean tokens before the last `suffix`) per batch of the val prompts, batched as
    the reference batches them (so the padding is the same)."""
    device = ModelView.of(model).device
    batches = [encode(tokenizer, both[i:i + batch_size], device) for i in range(0, len(both), batch_size)]
    return [(batch, clean_prefix(model, batch.input_ids, batch.attention_mask, suffix)) for batch in batches]


def score_candidates(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, diffs: torch.Tensor,
                     norms: torch.Tensor, positions: Sequence[int], layers: Sequence[int], harmful: Sequence[str],
                     harmless: Sequence[str], token_ids: Sequence[int], *, alpha: float, batch_size: int = 16,
                     ablation: str = "affine", harmless_mean: torch.Tensor | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     partial: Callable[[pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """score_candidates_reference's table (within float rounding), a layer's candidates in one batch: the addition
    resumes at its layer from the clean harmless pass; the affine ablation runs only the tokens from
    min(positions) on, on the clean prefix's KV cache ("project" changes every token: one full pass per
    candidate, as the reference). `partial(table)` gets the rows scored so far after each layer."""
    if ablation == "affine" and harmless_mean is None:
        raise InvalidInputError("The affine ablation needs the harmless mean residual (harmless_mean).")
    if ablation not in ABLATIONS:
        raise InvalidInputError(f"Unknown ablation '{ablation}': use one of {', '.join(ABLATIONS)}.")
    reference, harmless_batches = _clean_harmless(model, tokenizer, list(harmless), layers, batch_size)
    both, n_h = list(harmful) + list(harmless), len(harmful)
    prefixes = _val_prefixes(model, tokenizer, both, -min(positions), batch_size) if ablation == "affine" else []
    rows, total = [], len(layers) * len(positions)
    for layer in layers:
        cells = [p for p in range(len(positions)) if not _no_direction(diffs[layer, p], norms[layer, p])]
        found = {}
        if cells:
            vectors = diffs[layer, cells]
            added = _added(model, harmless_batches, layer, torch.stack(
                [addition_vector(diffs[layer, p], float(norms[layer, p]), alpha) for p in cells]))
            if ablation == "affine":
                added, ablated = _log_probs_together(model, added, _ablated_affine_of(
                    model, prefixes, vectors, harmless_mean, positions))
            else:
                added, = _log_probs_together(model, added)
                ablated = _ablated_project(model, tokenizer, both, vectors, harmless_mean, positions, batch_size)
            for k, p in enumerate(cells):
                found[p] = {"layer": layer, "position": positions[p],
                            "ablation_score": refusal_log_odds(ablated[k, :n_h], token_ids).mean().item(),
                            "addition_score": refusal_log_odds(added[k], token_ids).mean().item(),
                            "kl": kl_divergence(reference, ablated[k, n_h:]).mean().item()}
        rows += [found.get(p, _nan_row(layer, positions[p])) for p in range(len(positions))]
        if progress:
            progress(len(rows), total)
        if partial:
            partial(pd.DataFrame(rows))
    return pd.DataFrame(rows)


def _ablated_project(model, tokenizer, both, vectors: torch.Tensor, harmless_mean, positions,
                     batch_size: int) -> torch.Tensor:
    """[K, n_val, vocab]: the val prompts (harmful then harmless) with each candidate [K, d] projected out, one
    full pass per candidate (projection changes every token)."""
    return torch.stack([last_logits(model, tokenizer, both, batch_size=batch_size, intervention=ablation_for(
        model, v, harmless_mean, positions, "project")) for v in vectors])


def _ablated_affine_of(model, prefixes, vectors: torch.Tensor, harmless_mean, positions) -> torch.Tensor:
    """[K, n_val, d] final states of the val prompts (harmful then harmless) with each candidate [K, d] ablated
    (ACE, each row its candidate's harmless reference c_l)."""
    units = torch.stack([v / v.norm() for v in vectors])
    references = {layer: torch.stack([harmless_mean[layer] @ u for u in units]) for layer in
                  range(harmless_mean.shape[0])}
    return _ablated_affine(model, prefixes, vectors, references, range(min(positions), 10_000))


def score_candidates_reference(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, diffs: torch.Tensor,
                     norms: torch.Tensor, positions: Sequence[int], layers: Sequence[int], harmful: Sequence[str],
                     harmless: Sequence[str], token_ids: Sequence[int], *, alpha: float, batch_size: int = 16,
                     ablation: str = "affine", harmless_mean: torch.Tensor | None = None,
                     progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per (layer, position): ablation_score, addition_score, kl (see the module's docstring).
    `harmless_mean` (from candidate_directions) is needed for the affine ablation. The slow reference: three full
    passes per candidate, one candidate at a time (score_candidates is tested against it)."""
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
