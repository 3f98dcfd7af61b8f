"""Truth interventions (Marks & Tegmark; Du et al. 2025 §truthfulness): push false statements towards "TRUE" and
true ones towards "FALSE" in a few-shot judging prompt, and measure how P(TRUE) - P(FALSE) moves.

The steering vector is the source model's mass-mean direction at the probe layer: its unit vector times the gap
between the true and false means along it (that is, mean(true) - mean(false) itself). It is added at every layer
of [layer_start, probe_layer] at the statement's last token and its period: spread "full" (the paper's) adds
alpha x the whole vector at each of those layers; spread "split" (truthfulness@2) divides it by the number of
layers, so that with alpha = 1 the stream at the probe layer has moved by one gap in all. False statements get
+alpha, true ones -alpha.

Normalised intervention effect (the paper's measure), per statement with p = P(TRUE) - P(FALSE): a true statement
pushed towards FALSE scores (p_after - p_before) / (-1 - p_before), a false one pushed towards TRUE
(p_after - p_before) / (+1 - p_before); 1 = moved all the way, 0 = not at all, negative = the wrong way. The mean
over the statements is the cell's effect.

Flip: a statement the steered model judged correctly before the intervention (score above the threshold for a true
one, below for a false one) and wrongly after it. The threshold is the midpoint of the mean unsteered scores of
true and false *training* statements for that model, since the 270M model's zero threshold is biased negative.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from analyses.truth_score import statement_offsets, truth_prompts, truth_scores
from steering.interventions import add

Report = Callable[[int, int], None]


SPREADS = ("full", "split")


def layer_vectors(vector: torch.Tensor, layers: Sequence[int], spread: str = "split") -> dict[int, torch.Tensor]:
    """The same vector at every layer of the range: whole ("full", the paper's coefficient per layer) or carrying
    1/len(layers) of it each ("split")."""
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {SPREADS}, not {spread!r}")
    share = 1.0 if spread == "full" else 1.0 / len(layers)
    return {int(layer): vector * share for layer in layers}


def normalised_effects(before: np.ndarray, after: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per statement, the paper's normalised effect: the move towards the pushed end (-1 for a true statement,
    +1 for a false one) as a share of the way there; NaN where the statement already sat at that end."""
    target = np.where(labels == 1, -1.0, 1.0)
    room = target - before.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(room != 0, (after - before) / room, np.nan)


def steered_scores(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    statements: Sequence[str],
    signed_alphas: Sequence[float],
    vectors: dict[int, torch.Tensor] | None,
    *,
    prefix: str | Sequence[str],
    answers: tuple[str, str],
    batch_size: int = 16,
    progress: Report | None = None,
) -> np.ndarray:
    """P(TRUE) - P(FALSE) of each statement with `signed_alphas[i] * vectors` added to row i (None: unsteered)."""
    prompts = truth_prompts(statements, prefix)
    steer = None
    if vectors is not None:
        positions = list(statement_offsets(tokenizer))
        alphas = [float(a) for a in signed_alphas]

        def steer(start: int, end: int):
            return add(model, vectors, alpha=alphas[start:end], positions=positions)

    return truth_scores(model, tokenizer, prompts, answers=answers, batch_size=batch_size, steer=steer,
                        progress=progress).numpy()


def threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Midpoint of the mean score of true and of false statements."""
    return float((scores[labels == 1].mean() + scores[labels == 0].mean()) / 2)


def effect_row(before: np.ndarray, after: np.ndarray, labels: np.ndarray, tau: float) -> dict:
    """The normalised effect (the paper's; over all, true and false statements), mean score changes, the signed
    change (positive = moved the way the intervention pushes) and the flip rate."""
    sign = np.where(labels == 1, -1.0, 1.0)
    effects = normalised_effects(before, after, labels)
    change = after - before
    right_before = (before > tau) == (labels == 1)
    right_after = (after > tau) == (labels == 1)
    flipped = right_before & ~right_after
    return {
        "n": int(len(labels)),
        "normalised_effect": float(np.nanmean(effects)),
        "normalised_effect_true": float(np.nanmean(effects[labels == 1])),
        "normalised_effect_false": float(np.nanmean(effects[labels == 0])),
        "mean_change_false": float(change[labels == 0].mean()),
        "mean_change_true": float(change[labels == 1].mean()),
        "mean_change": float((sign * change).mean()),
        "flip_rate": float(flipped.sum() / max(right_before.sum(), 1)),
        "accuracy_before": float(right_before.mean()),
        "accuracy_after": float(right_after.mean()),
        "threshold": tau,
    }


def transfer_table_reference(
    models: dict[str, nn.Module],
    tokenizer: PreTrainedTokenizerBase,
    frame: pd.DataFrame,
    vectors: dict[str, dict[int, torch.Tensor]],
    baselines: dict[str, np.ndarray],
    thresholds: dict[str, float],
    alphas: Sequence[float],
    *,
    prefix: str | Sequence[str],
    answers: tuple[str, str],
    batch_size: int = 16,
    report: Report | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (direction source, steered model, alpha): the effect row, and every statement's score; one full
    forward pass per job and batch. The slow, obvious reference of analyses.truthfulness.transfer.transfer_table,
    which the study uses.

    frame: the statements scored (statement, label); vectors[source]: {layer: vector}; baselines[model]: the
    unsteered scores of frame's statements."""
    labels = frame["label"].to_numpy()
    sign = np.where(labels == 1, -1.0, 1.0)
    rows, per_statement = [], []
    jobs = [(s, m, a) for s in vectors for m in models for a in alphas]
    for done, (source, role, alpha) in enumerate(jobs):
        after = steered_scores(models[role], tokenizer, list(frame["statement"]), sign * alpha, vectors[source],
                               prefix=prefix, answers=answers, batch_size=batch_size)
        rows.append({"direction": source, "model": role, "alpha": float(alpha),
                     **effect_row(baselines[role], after, labels, thresholds[role])})
        per_statement.append(pd.DataFrame({"direction": source, "model": role, "alpha": float(alpha),
                                           "statement": frame["statement"].to_numpy(), "label": labels,
                                           "score_before": baselines[role], "score_after": after}))
        if report:
            report(done + 1, len(jobs))
    return pd.DataFrame(rows), pd.concat(per_statement, ignore_index=True)


def alpha_curve(
    models: dict[str, nn.Module],
    tokenizer: PreTrainedTokenizerBase,
    statement: str,
    vectors: dict[str, dict[int, torch.Tensor]],
    alphas: Sequence[float],
    *,
    prefix: str,
    answers: tuple[str, str],
) -> pd.DataFrame:
    """One typed statement's score at each alpha (positive pushes towards TRUE), every model x direction source,
    all alphas in one batch."""
    rows = []
    for source, vecs in vectors.items():
        for role, model in models.items():
            scores = steered_scores(model, tokenizer, [statement] * len(alphas), list(alphas), vecs,
                                    prefix=prefix, answers=answers, batch_size=len(alphas))
            rows += [{"direction": source, "model": role, "alpha": float(a), "score": float(s)}
                     for a, s in zip(alphas, scores)]
    return pd.DataFrame(rows)
