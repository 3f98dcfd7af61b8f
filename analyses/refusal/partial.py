"""What the refusal page draws while a run works: the candidates scored so far (Steps.partial("candidates", table),
the final candidates table's columns), as the heatmap the result shows, without the selection yet."""
from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from .charts import MODEL_NAMES


def partial_chart(key: str, value: Any) -> alt.Chart | None:
    """The ablation score of every candidate scored so far, per model, layer and position; None for anything else
    than a non-empty candidates table."""
    if key != "candidates" or not isinstance(value, pd.DataFrame) or value.empty:
        return None
    data = value.assign(kept=value["filter"] == "kept", model=value.model.map(MODEL_NAMES).fillna(value.model))
    return alt.Chart(data, title="Scoring candidates: refusal log-odds on harmful prompts with the candidate "
                                 "ablated (lower is better; faded: filtered out)").mark_rect().encode(
        x=alt.X("layer:O"), y=alt.Y("position:O", title="position (offset)"),
        color=alt.Color("ablation_score:Q", title="ablation score", scale=alt.Scale(scheme="viridis")),
        opacity=alt.condition("datum.kept", alt.value(1.0), alt.value(0.3)),
        row=alt.Row("model:N", title=None),
        tooltip=["model", "layer", "position", "filter", alt.Tooltip("ablation_score", format=".2f"),
                 alt.Tooltip("addition_score", format=".2f"), alt.Tooltip("kl", format=".3f")],
    ).properties(width=360, height=140)
