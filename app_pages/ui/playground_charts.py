"""The Playground's Altair charts, each from a plain table (no Streamlit here)."""
from __future__ import annotations

import altair as alt
import pandas as pd


def cosine_chart(cosines: pd.DataFrame) -> alt.Chart:
    """Cosine of the base and post-trained directions per layer (columns layer, cosine)."""
    return alt.Chart(cosines).mark_line(point=True).encode(
        x=alt.X("layer:O"), y=alt.Y("cosine:Q", scale=alt.Scale(domain=[-1, 1])))


def alignment_chart(alignment: pd.DataFrame) -> alt.Chart:
    """How far each model's prompts already point along the direction, per layer (layer, cosine, model)."""
    return alt.Chart(alignment).mark_line(point=True).encode(x="layer:O", y="cosine:Q", color="model:N")


def sweep_charts(sweep: pd.DataFrame) -> tuple[alt.Chart, alt.Chart]:
    """The alpha sweep's perplexity (log scale) and share of distinct word pairs against alpha, a line per layer."""
    chart = alt.Chart(sweep).mark_line(point=True).encode(
        x="alpha:Q", color="layer:N", tooltip=["alpha", "layer", "perplexity", "distinct_2", "text"])
    perplexity = chart.encode(y=alt.Y("perplexity:Q", scale=alt.Scale(type="log"))).properties(
        title="Perplexity under the unsteered model")
    distinct = chart.encode(y=alt.Y("distinct_2:Q", title="distinct word pairs", scale=alt.Scale(domain=[0, 1]))
                            ).properties(title="Share of distinct word pairs")
    return perplexity, distinct
