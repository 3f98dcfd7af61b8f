"""Truth probes on residual-stream activations: plain tensor math, no model (Marks & Tegmark's Geometry of Truth).

Activations are [n_statements, n_layers, d_model] float32 tensors, labels [n] with 1 = true, 0 = false.

- mass_mean: the difference-in-means direction mean(true) - mean(false) per layer; its norm is the gap between the
  two means along its own unit vector, so adding it once moves the false mean onto the true one.
- projection probe: project onto the unit direction, threshold at the midpoint of the two classes' projected means
  (both fit on train).
- logistic probe: scikit-learn's LogisticRegression on standardised activations (fit on train).
Every probe can be evaluated on another model's activations (probe transfer) or another dataset (generalisation).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from steering.errors import InvalidInputError

METHODS = ("projection", "logistic")


def _check_labels(labels: torch.Tensor, what: str) -> None:
    if not (labels == 1).any() or not (labels == 0).any():
        raise InvalidInputError(f"The {what} statements need both true and false ones to fit a truth probe.")


def mass_mean(acts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[n_layers, d_model] mean(true) - mean(false)."""
    labels = torch.as_tensor(labels)
    _check_labels(labels, "training")
    return acts[labels == 1].mean(0) - acts[labels == 0].mean(0)


@dataclass
class ProjectionProbe:
    """Per layer: unit direction [L, d] and threshold [L] on the projection (the midpoint of the class means)."""

    units: torch.Tensor
    thresholds: torch.Tensor

    @classmethod
    def fit(cls, acts: torch.Tensor, labels: torch.Tensor) -> "ProjectionProbe":
        diff = mass_mean(acts, labels)
        units = diff / diff.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        proj = torch.einsum("nld,ld->nl", acts, units)
        labels = torch.as_tensor(labels)
        thresholds = (proj[labels == 1].mean(0) + proj[labels == 0].mean(0)) / 2
        return cls(units, thresholds)

    def predict(self, acts: torch.Tensor) -> torch.Tensor:
        """[n, L] 1 where the projection is above the layer's threshold."""
        return (torch.einsum("nld,ld->nl", acts, self.units) > self.thresholds).long()


class LogisticProbe:
    """One scikit-learn logistic regression per layer (standardised inputs: Gemma has a few huge dimensions)."""

    def __init__(self, acts: torch.Tensor, labels: torch.Tensor, c: float = 1.0, seed: int = 0):
        labels = torch.as_tensor(labels)
        _check_labels(labels, "training")
        y = labels.numpy()
        self.models = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for layer in range(acts.shape[1]):
                model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500, random_state=seed))
                self.models.append(model.fit(acts[:, layer].double().numpy(), y))

    def predict(self, acts: torch.Tensor) -> torch.Tensor:
        preds = [m.predict(acts[:, layer].double().numpy()) for layer, m in enumerate(self.models)]
        return torch.as_tensor(np.stack(preds, axis=1)).long()


def accuracy(preds: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """[L] share of statements each layer's probe gets right."""
    return (preds == torch.as_tensor(labels)[:, None]).double().mean(0).numpy()


def fit_probes(acts: torch.Tensor, labels: torch.Tensor, c: float = 1.0) -> dict:
    return {"projection": ProjectionProbe.fit(acts, labels), "logistic": LogisticProbe(acts, labels, c)}


def probe_table(
    train: dict[str, tuple[torch.Tensor, torch.Tensor]],
    test: dict[str, tuple[torch.Tensor, torch.Tensor]],
    layers: list[int],
    c: float = 1.0,
) -> pd.DataFrame:
    """Probes fit on each model's train activations, evaluated on every model's test activations.

    train/test: role -> (acts, labels). Rows: source (probe fit on), model (evaluated on), layer, method, accuracy;
    source == model is the ordinary probe accuracy, source != model the probe transfer."""
    rows = []
    for source, (acts, labels) in train.items():
        probes = fit_probes(acts, labels, c)
        for target, (test_acts, test_labels) in test.items():
            for method, probe in probes.items():
                for layer, acc in zip(layers, accuracy(probe.predict(test_acts), test_labels)):
                    rows.append({"source": source, "model": target, "layer": layer, "method": method,
                                 "accuracy": float(acc)})
    return pd.DataFrame(rows, columns=["source", "model", "layer", "method", "accuracy"])


def centred(acts: torch.Tensor) -> torch.Tensor:
    """[n, L, d] minus the set's own mean over its statements (the paper's `collect_acts(center=True)`)."""
    return acts - acts.mean(0, keepdim=True)


def pooled_centred(sets: list[torch.Tensor]) -> torch.Tensor:
    """Each statement set centred on its own mean, then pooled ([sum n, L, d])."""
    return torch.cat([centred(a) for a in sets])


def dominant_dims(diff: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """[L] share of each layer's squared norm in its k largest dimensions, and [L] the largest one's index."""
    squares = diff.double() ** 2
    top = squares.topk(min(k, diff.shape[-1]), dim=-1)
    total = squares.sum(-1).clamp_min(1e-300)
    return (top.values.sum(-1) / total).numpy(), top.indices[:, 0].numpy()


def direction_table(diffs: dict[str, torch.Tensor], layers: list[int], scale: torch.Tensor | None = None) -> pd.DataFrame:
    """Per layer: each model's gap (norm of its mass-mean direction), the share of its squared norm in its top 1 and
    top 3 dimensions (and the top one's index), and the base/post cosine similarity; also the cosine after dividing
    each dimension by `scale` [L, d] (the pooled standard deviation), so that the few huge dimensions of Gemma's
    residual stream do not dominate it."""
    table = pd.DataFrame({"layer": layers})
    for role, diff in diffs.items():
        table[f"gap_{role}"] = diff.norm(dim=-1).numpy()
        table[f"top1_share_{role}"], table[f"top_dim_{role}"] = dominant_dims(diff, 1)
        table[f"top3_share_{role}"] = dominant_dims(diff, 3)[0]
    table["cosine"], table["cosine_scaled"] = np.nan, np.nan
    if {"base", "post"} <= diffs.keys():
        cos = torch.nn.functional.cosine_similarity
        table["cosine"] = cos(diffs["base"], diffs["post"], dim=-1).numpy()
        if scale is not None:
            s = scale.clamp_min(1e-6)
            table["cosine_scaled"] = cos(diffs["base"] / s, diffs["post"] / s, dim=-1).numpy()
    return table


def pca_table(acts: torch.Tensor, labels: torch.Tensor, splits: list[str], layers: list[int]) -> pd.DataFrame:
    """Two principal components of each layer's activations (centred), one row per (layer, statement)."""
    frames = []
    for i, layer in enumerate(layers):
        x = acts[:, i].double()
        x = x - x.mean(0)
        _, _, v = torch.linalg.svd(x, full_matrices=False)
        coords = (x @ v[:2].T).float().numpy()
        if coords.shape[1] < 2:
            coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        frames.append(pd.DataFrame({"layer": layer, "index": range(len(x)), "pc1": coords[:, 0],
                                    "pc2": coords[:, 1], "label": torch.as_tensor(labels).numpy(),
                                    "split": splits}))
    return pd.concat(frames, ignore_index=True)


def generalisation_table(
    acts: dict[str, dict[str, torch.Tensor]], labels: dict[str, torch.Tensor], layers: list[int], c: float = 1.0
) -> pd.DataFrame:
    """acts[role][dataset]: [n, L, d]. For each held-out dataset, probes fit on all the others (pooled) and
    evaluated on it. Rows: model, held_out, trained_on, layer, method, accuracy."""
    rows = []
    names = list(labels)
    if len(names) < 2:
        raise InvalidInputError("Generalisation needs at least two datasets: train on some, test on another.")
    for role, per_set in acts.items():
        for held_out in names:
            others = [n for n in names if n != held_out]
            probes = fit_probes(torch.cat([per_set[n] for n in others]), torch.cat([labels[n] for n in others]), c)
            for method, probe in probes.items():
                for layer, acc in zip(layers, accuracy(probe.predict(per_set[held_out]), labels[held_out])):
                    rows.append({"model": role, "held_out": held_out, "trained_on": "+".join(others),
                                 "layer": layer, "method": method, "accuracy": float(acc)})
    return pd.DataFrame(rows)
