"""The confidence study's headline numbers, and the longer text summary the benchmark prints."""
from __future__ import annotations

from .compute import Result

CALIBRATION_NUMBERS = ("ece", "accuracy", "mean_entropy", "mean_max_prob")


def headline(result: Result) -> dict[str, float]:
    """The candidate sets' IoU (when there is a post-trained model); per model ("…/base", "…/post"): ECE, accuracy,
    mean entropy and mean max probability on the questions, and the mean total entropy change (nats) of mean-
    ablating a candidate and a random control neuron."""
    out: dict[str, float] = {}
    if result.iou is not None:
        out["entropy_neuron_iou"] = float(result.iou)
    for row in result.calibration.itertuples(index=False):
        out.update({f"{name}/{row.model}": float(getattr(row, name)) for name in CALIBRATION_NUMBERS})
    effects = result.ablation.groupby(["model", "group"], sort=False)["d_entropy_total"].mean()
    for (model, group), value in effects.items():
        out[f"ablation_d_entropy_{group}/{model}"] = float(value)
    return out


def summary_text(result: Result, elapsed: float) -> str:
    lines = [f"layer {result.layer}, null space = bottom {result.null_dims} singular vectors"]
    lines += [f"candidates {role}: {ids}" for role, ids in result.candidates.items()]
    if result.iou is not None:
        lines.append(f"IoU of the candidate sets: {result.iou:.3f}")
        lines.append(result.correlations.to_string(index=False))
    effects = result.ablation.groupby(["model", "group"])[
        ["d_entropy_total", "d_entropy_direct", "d_entropy_via_norm", "d_loss_total", "d_loss_direct"]].mean()
    lines += ["mean ablation effects (mean over neurons):", effects.to_string()]
    lines += [result.text_confidence.to_string(index=False), result.calibration.to_string(index=False)]
    lines.append(f"timings (s): {result.timings}; this call {elapsed:.1f} s")
    return "\n".join(lines)
