"""The lab's headline: where the road's main numbers stand at the end of the SFT and at the last stage, and the
first step at which the stage refuses most held-out harmful prompts."""
from __future__ import annotations

import pandas as pd

from .charts import PANELS


def _at(timeline: pd.DataFrame, stage: str) -> dict[str, float]:
    rows = timeline[timeline["stage"] == stage]
    return {f"{m}/{model}": v for m, model, v in zip(rows["metric"], rows["model"], rows["value"])}


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
    series = [f"{m}/{model}" for panel, _ in PANELS.values() for m, model in panel]
    for stage in dict.fromkeys(["sft", last]):
        values = _at(timeline, stage)
        out.update({f"{name}@{stage}": values[name] for name in series if name in values})
    return out
