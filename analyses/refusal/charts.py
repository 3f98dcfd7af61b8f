"""Charts of the refusal study (altair), shared by the page and the CLI. Each takes the result's tables."""
from __future__ import annotations

import altair as alt
import pandas as pd

MODEL_NAMES = {"base": "base", "post": "post-trained"}
CONDITION_ORDER = ["none", "own", "forward (base→post)", "backward (post→base)"]


def _conditions(scores: pd.DataFrame) -> pd.DataFrame:
    out = scores.copy()
    out["model"] = out.model.map(MODEL_NAMES).fillna(out.model)
    out["setting"] = out.intervention.where(out.intervention != "none", "no intervention") + " · " + out.prompts
    return out


def score_bars(scores: pd.DataFrame, measure: str = "refusal_rate") -> alt.Chart:
    """One bar per (direction source) in each (model x intervention on a prompt set) panel."""
    title = {"refusal_rate": "Refusal rate: share of greedy replies starting with a refusal phrase (test split)",
             "refusal_score": "Refusal score: log-odds of refusal tokens at the first reply position (test split)"}
    data = _conditions(scores)
    y = alt.Y(f"{measure}:Q", title=measure.replace("_", " "),
              scale=alt.Scale(domain=[0, 1]) if measure == "refusal_rate" else alt.Undefined)
    return alt.Chart(data, title=title[measure]).mark_bar().encode(
        # whole labels ("forward (base→post)" was cut to "forward (base→p…" at the default 180 px limit), upright
        # so all four fit their 27 px bands (at -40° Vega dropped every other one as overlapping)
        x=alt.X("transfer:N", title=None, sort=CONDITION_ORDER,
                axis=alt.Axis(labelLimit=0, labelAngle=-90, labelOverlap=False)),
        y=y,
        color=alt.Color("transfer:N", title="direction", sort=CONDITION_ORDER),
        column=alt.Column("setting:N", title=None, sort=["no intervention · harmful", "ablate · harmful",
                                                          "no intervention · harmless", "add · harmless"]),
        row=alt.Row("model:N", title="steered model"),
        tooltip=["model", "transfer", "intervention", "prompts", "n", alt.Tooltip(measure, format=".3f")],
    ).properties(width=110, height=150)


def cosine_chart(cosine: pd.DataFrame) -> alt.Chart:
    return alt.Chart(cosine, title="Cosine similarity of the base and post-trained candidate directions").mark_line(
        point=True).encode(
        x=alt.X("layer:O"), y=alt.Y("cosine:Q", scale=alt.Scale(domain=[-0.2, 1])),
        color=alt.Color("position:N", title="position (offset)"),
        tooltip=["layer", "position", alt.Tooltip("cosine", format=".3f")],
    ).properties(width=520, height=260)


def candidate_heatmap(candidates: pd.DataFrame, selected: pd.DataFrame) -> alt.Chart:
    """Ablation refusal score per (layer, position) for each model; discarded candidates faded, selection boxed."""
    chosen = set(zip(selected.model, selected.layer, selected.position))
    data = candidates.assign(
        kept=candidates["filter"] == "kept",
        selected=[(m, lay, p) in chosen for m, lay, p in zip(candidates.model, candidates.layer, candidates.position)],
        model=candidates.model.map(MODEL_NAMES).fillna(candidates.model))
    base = alt.Chart().encode(x=alt.X("layer:O"), y=alt.Y("position:O", title="position (offset)"))
    cells = base.mark_rect().encode(
        color=alt.Color("ablation_score:Q", title="ablation score", scale=alt.Scale(scheme="viridis")),
        opacity=alt.condition("datum.kept", alt.value(1.0), alt.value(0.3)),
        tooltip=["layer", "position", "filter", alt.Tooltip("ablation_score", format=".2f"),
                 alt.Tooltip("addition_score", format=".2f"), alt.Tooltip("kl", format=".3f")])
    marks = base.mark_point(shape="square", size=260, filled=False, color="red", strokeWidth=2).transform_filter(
        "datum.selected")
    return alt.layer(cells, marks, data=data).properties(width=360, height=140).facet(
        row=alt.Row("model:N", title=None),
        title="Selection score: refusal log-odds on harmful prompts with the candidate ablated (lower is better)")


def charts(result) -> dict[str, alt.Chart]:
    """Every chart the page and the command line show."""
    found = {"refusal_rate": score_bars(result.scores, "refusal_rate"),
             "refusal_score": score_bars(result.scores, "refusal_score"),
             "candidates": candidate_heatmap(result.candidates, result.selected)}
    if len(result.cosine):
        found["cosine"] = cosine_chart(result.cosine)
    return found
