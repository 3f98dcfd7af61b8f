"""Entropy-neuron scores from weights alone (Stolfo et al. 2024; Gurnee et al. 2024).

For each neuron of one MLP layer: the norm of its output weight w, the variance over the vocabulary of its direct
effect on the logits W_U w, and the fraction of ||w||^2 in the unembedding's effective null space (the span of the
right singular vectors of W_U with the smallest singular values). Entropy neurons have a large norm and a small
logit variance: they write into directions the unembedding hardly reads, and act through the final norm's scale.

Everything uses the d_model x d_model Gram matrix G = W_U^T W_U and the column mean m of W_U, which are exact:
    var_vocab(W_U w) = w^T G w / V - (m . w)^2
so the [vocab, d_mlp] matrix W_U W_out is never formed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from steering.errors import InvalidInputError


@dataclass(frozen=True)
class UnembeddingGeometry:
    """What the scores need from a [vocab, d_model] unembedding, in float64."""

    gram: torch.Tensor  # [d, d] W_U^T W_U
    column_mean: torch.Tensor  # [d] mean over the vocabulary of W_U's rows
    singular_values: torch.Tensor  # [d] descending
    right_vectors: torch.Tensor  # [d, d] columns: right singular vectors, same order
    vocab: int


def unembedding_geometry(w_u: torch.Tensor, chunk: int = 32768) -> UnembeddingGeometry:
    """Gram matrix, column mean and SVD (via the Gram's eigendecomposition) of W_U, reading it in row chunks."""
    d = w_u.shape[1]
    gram = torch.zeros(d, d, dtype=torch.float64)
    total = torch.zeros(d, dtype=torch.float64)
    for start in range(0, w_u.shape[0], chunk):
        block = w_u[start:start + chunk].double()
        gram += block.T @ block
        total += block.sum(0)
    eigvals, eigvecs = torch.linalg.eigh(gram)  # ascending
    order = torch.arange(d - 1, -1, -1)
    return UnembeddingGeometry(gram, total / w_u.shape[0], eigvals[order].clamp(min=0).sqrt(),
                               eigvecs[:, order], int(w_u.shape[0]))


def null_space_fraction(geometry: UnembeddingGeometry, w: torch.Tensor, null_dims: int) -> torch.Tensor:
    """[n] fraction of each column of w [d, n]'s squared norm in the span of the bottom `null_dims` singular vectors."""
    d = geometry.gram.shape[0]
    if not 1 <= null_dims < d:
        raise InvalidInputError(f"The null space needs between 1 and {d - 1} dimensions; got {null_dims}.")
    w = w.double()
    bottom = geometry.right_vectors[:, -null_dims:]
    return (bottom.T @ w).pow(2).sum(0) / w.pow(2).sum(0).clamp(min=1e-30)


def logit_variance(geometry: UnembeddingGeometry, w: torch.Tensor) -> torch.Tensor:
    """[n] variance over the vocabulary of W_U @ w for each column of w [d, n] (population variance)."""
    w = w.double()
    second = (w * (geometry.gram @ w)).sum(0) / geometry.vocab
    return (second - (geometry.column_mean @ w).pow(2)).clamp(min=0)


def neuron_scores(geometry: UnembeddingGeometry, w_out: torch.Tensor, null_dims: int) -> pd.DataFrame:
    """One row per neuron of w_out [d, d_mlp]: norm, logit_var, null_frac."""
    return pd.DataFrame({
        "neuron": np.arange(w_out.shape[1]),
        "norm": w_out.double().norm(dim=0).numpy(),
        "logit_var": logit_variance(geometry, w_out).numpy(),
        "null_frac": null_space_fraction(geometry, w_out, null_dims).numpy(),
    })


def candidates(scores: pd.DataFrame, top_norm_fraction: float, n_candidates: int) -> list[int]:
    """Of the neurons in the top `top_norm_fraction` by norm, the `n_candidates` with the lowest logit variance."""
    if not 0 < top_norm_fraction <= 1:
        raise InvalidInputError(f"The norm fraction must be in (0, 1]; got {top_norm_fraction}.")
    if n_candidates < 1:
        raise InvalidInputError(f"Ask for at least one candidate neuron; got {n_candidates}.")
    keep = max(1, int(round(top_norm_fraction * len(scores))))
    top = scores.nlargest(keep, "norm")
    return [int(n) for n in top.nsmallest(n_candidates, "logit_var")["neuron"]]


def iou(a: list[int], b: list[int]) -> float:
    union = set(a) | set(b)
    return len(set(a) & set(b)) / len(union) if union else float("nan")


def overlap_sweep(base: pd.DataFrame, post: pd.DataFrame, fractions: list[float], counts: list[int]) -> pd.DataFrame:
    """IoU of the two models' candidate sets over a grid of thresholds."""
    rows = []
    for fraction in fractions:
        for count in counts:
            a, b = candidates(base, fraction, count), candidates(post, fraction, count)
            rows.append({"top_norm_fraction": fraction, "n_candidates": count, "iou": iou(a, b),
                         "n_shared": len(set(a) & set(b))})
    return pd.DataFrame(rows)


def score_correlations(base: pd.DataFrame, post: pd.DataFrame) -> pd.DataFrame:
    """Pearson and Spearman correlation across neurons of each score, base vs post-trained (logit variance on a
    log scale for Pearson)."""
    rows = []
    for score in ("norm", "logit_var", "null_frac"):
        a, b = base[score].to_numpy(), post[score].to_numpy()
        if score == "logit_var":
            a, b = np.log10(a + 1e-30), np.log10(b + 1e-30)
        rows.append({"score": score, "pearson": float(np.corrcoef(a, b)[0, 1]),
                     "spearman": float(pd.Series(a).corr(pd.Series(b), method="spearman"))})
    return pd.DataFrame(rows)
