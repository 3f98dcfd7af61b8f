"""The truthfulness study's headline numbers and its plain-text summary (what the CLI prints)."""
from __future__ import annotations

import math

import pandas as pd

from .compute import Result


def headline(result: Result) -> dict[str, float | int]:
    """Per model and probe method: the best test accuracy and its layer; per pair: the mean base/post direction
    cosine over the probed layers where both directions are non-zero (layer 0, the embedding of the same final
    '.' for every statement, has none), and with the paper method the same mean for the single-set directions
    (`dataset`'s own train split) beside it; per (direction source -> steered model) at the largest alpha: the
    paper's normalised intervention effect, the mean score change (positive = moved the way it was pushed) and the
    flip rate."""
    out: dict[str, float | int] = {}
    for role, methods in result.best.items():
        for method, (layer, accuracy) in methods.items():
            out[f"best_probe_accuracy_{method}/{role}"] = float(accuracy)
            out[f"best_probe_layer_{method}/{role}"] = int(layer)
    cosine = directed_layers(result.direction_stats)["cosine"].mean()
    if not math.isnan(cosine):  # NaN when the pair has no post-trained model
        out["direction_cosine_mean"] = float(cosine)
    if "cosine_single_set" in result.direction_stats:
        single = directed_layers(result.direction_stats)["cosine_single_set"].mean()
        if not math.isnan(single):
            out["direction_cosine_single_set_mean"] = float(single)
    top = largest_alpha(result.transfer)
    for row in result.transfer[result.transfer["alpha"] == top].itertuples():
        out[f"normalised_effect/{row.direction}->{row.model}"] = float(row.normalised_effect)
        out[f"mean_change/{row.direction}->{row.model}"] = float(row.mean_change)
        out[f"flip_rate/{row.direction}->{row.model}"] = float(row.flip_rate)
    return out


def directed_layers(stats: pd.DataFrame) -> pd.DataFrame:
    """The rows of the direction table whose directions are all non-zero."""
    gaps = stats.filter(like="gap_")
    return stats[(gaps > 0).all(axis=1)]


def largest_alpha(transfer: pd.DataFrame) -> float:
    return float(transfer["alpha"].max())


def summary_text(result: Result) -> str:
    """The probe layer, best probes, direction table, probe transfer at the probe layer and the intervention."""
    origin = (f"the pooled, per-set centred sets {', '.join(result.train_sets)} ({result.dataset} held out)"
              if result.method == "paper" else f"{result.dataset}'s train split")
    lines = [f"method {result.method}: directions from {origin}; layers are resid_pre (the paper's block output "
             f"L is resid_pre L + 1)",
             f"dataset {result.dataset}; probe layer {result.probe_layer}; steered layers {result.steer_layers} "
             f"({result.spread}: {'the whole vector at each' if result.spread == 'full' else 'split over them'}) at "
             f"offsets {result.offsets}"]
    lines += [f"best {role} {method}: layer {layer}, test accuracy {acc:.3f}"
              for role, methods in result.best.items() for method, (layer, acc) in methods.items()]
    lines += ["directions per layer (gap = norm of mean(true) - mean(false)):",
              result.direction_stats.round(3).to_string(index=False)]
    cross = result.probes[(result.probes["source"] != result.probes["model"])
                          & (result.probes["layer"] == result.probe_layer)]
    if not cross.empty:
        lines += [f"probe transfer at layer {result.probe_layer}:", cross.round(3).to_string(index=False)]
    lines += [f"thresholds (midpoint of train true/false mean scores): {result.thresholds}",
              "intervention (normalised_effect: the paper's, share of the way to the pushed end; mean_change > 0 = "
              "moved as pushed; flip = judged right before, wrong after):",
              result.transfer.drop(columns=["threshold"]).round(3).to_string(index=False),
              f"timings (s): {result.timings}"]
    return "\n".join(lines)
