"""The lab's headline: where the panels' numbers stand at the end of the SFT and at the last stage
('ece@sft/post', 'entropy_neuron_iou@dpo'), and the first step at which a stage refuses most held-out harmful
prompts."""
from __future__ import annotations

import pandas as pd

import analyses


def _at(timeline: pd.DataFrame, stage: str) -> dict[tuple[str, str], float]:
    rows = timeline[timeline["stage"] == stage]
    return {(m, model): v for m, model, v in zip(rows["metric"], rows["model"], rows["value"])}


def first_step(timeline: pd.DataFrame, metric: str, model: str, at_least: float) -> float | None:
    rows = timeline[(timeline["metric"] == metric) & (timeline["model"] == model) & (timeline["value"] >= at_least)]
    return float(rows["step"].min()) if len(rows) else None


def headline(result) -> dict:
    timeline = result.timeline
    out: dict = {"n_stages": int(timeline["stage"].nunique()) if len(timeline) else 0,
                 "refusing_from_step": first_step(timeline, "refusal_rate_harmful_unsteered", "post", 0.5)}
    if timeline.empty:
        return out
    last = timeline.loc[timeline["step"].idxmax(), "stage"]
    series = [cell for study in analyses.STUDIES for cell in study.lab.series]
    for stage in dict.fromkeys(["sft", last]):
        values = _at(timeline, stage)
        out.update({f"{m}@{stage}" + ("" if model == "pair" else f"/{model}"): values[m, model]
                    for m, model in series if (m, model) in values})
    return out
