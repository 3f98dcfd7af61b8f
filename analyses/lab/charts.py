"""Altair charts of the lab, shared by the page and the CLI: the training losses, one timeline panel per study and
transfer along the road, all against training step with a rule where the SFT ends and DPO begins."""
from __future__ import annotations

import altair as alt
import pandas as pd

from steering.errors import InvalidInputError

from .. import find_study
from ..study import InLab

WIDTH = 560  # with the legend on the right (a legend at the bottom squashes the plot in Streamlit) it fits 940 px


def in_lab(study: str) -> InLab:
    """What a study's timeline panel draws and says: its record's `lab` (series and caption); every headline number
    and no caption for a study the registry does not hold (a stored timeline of a study since removed)."""
    try:
        return find_study(study).lab
    except InvalidInputError:
        return InLab()


def panel_rows(timeline: pd.DataFrame, study: str) -> pd.DataFrame:
    """The timeline rows a study's panel draws: its record's series, or every headline number when it names none
    (a study registered without lab series still gets its panel)."""
    rows = timeline[timeline["study"] == study]
    series = in_lab(study).series
    if not series:
        return rows
    return rows[pd.Series(list(zip(rows["metric"], rows["model"])), index=rows.index).isin(list(series))]


def sft_end(table: pd.DataFrame) -> float | None:
    """The step where the SFT ends (the 'sft' stage's), None when the table has none."""
    rows = table[table["stage"] == "sft"] if "stage" in table else table.iloc[0:0]
    return float(rows["step"].iloc[0]) if len(rows) else None


def _with_rule(lines: alt.Chart, data: pd.DataFrame, step: float | None) -> alt.Chart | alt.LayerChart:
    """The lines on `data` with a dashed rule at `step` (the SFT's end). One data source for both layers: a rule
    layer with data of its own collapsed the layered chart's height when Streamlit drew it."""
    if step is None:
        return alt.layer(lines, data=data)
    rule = alt.Chart().mark_rule(strokeDash=[4, 4], color="gray").encode(x=alt.datum(step))
    return alt.layer(lines, rule, data=data)


def losses(table: pd.DataFrame, end: float | None) -> alt.Chart:
    """Training and validation loss of both stages on the step axis (cross-entropy for SFT, DPO loss after)."""
    data = table.assign(series=table["metric"] + ", " + table["split"])
    lines = alt.Chart().mark_line(
        point=alt.OverlayMarkDef(size=12)).encode(
        x=alt.X("step:Q", title="training step (from the base)"), y=alt.Y("value:Q", title="loss"),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="right", labelLimit=260)),
        tooltip=["phase", "split", "step", alt.Tooltip("value:Q", format=".3f")])
    return _with_rule(lines, data, end).properties(
        width=WIDTH, height=200, title="Training loss: SFT cross-entropy, then the DPO preference loss")


def panel(timeline: pd.DataFrame, study: str, title: str | None = None) -> alt.Chart | alt.LayerChart | None:
    """One study's timeline: its panel series against training step, a point per stage."""
    rows = panel_rows(timeline, study)
    if rows.empty:
        return None
    data = rows.assign(series=rows["metric"].str.replace("_", " ") + " (" + rows["model"] + ")")
    lines = alt.Chart().mark_line(
        point=alt.OverlayMarkDef(size=40)).encode(
        x=alt.X("step:Q", title="training step (from the base)"), y=alt.Y("value:Q", title=None),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="right", labelLimit=260)),
        tooltip=["stage", "phase", "step", "metric", "model", alt.Tooltip("value:Q", format=".3f")])
    # one row per metric, each with its own y axis named above it: the metrics of a study have different units
    # (a rate, a cosine, a KL), and one shared unlabelled axis read as if they had one
    return _with_rule(lines, data.assign(measure=data["metric"].str.replace("_", " ")), sft_end(timeline)).properties(
        width=WIDTH, height=90).facet(
        row=alt.Row("measure:N", title=None, header=alt.Header(labelOrient="top", labelAngle=0, labelAlign="left",
                                                               labelAnchor="start", labelFontWeight="bold"))
    ).resolve_scale(y="independent").properties(title=title or f"{study.capitalize()} along the road")


def transfer(table: pd.DataFrame, end: float | None) -> alt.Chart | None:
    """Refusal rate of every stage with the base's and the final model's refusal direction added (harmless
    prompts) or ablated (harmful prompts), next to the unsteered rate."""
    if table.empty:
        return None
    data = table.assign(condition=table["direction_from"].map(
        {"none": "unsteered", "base": "base's direction", "final": "final model's direction"}))
    lines = alt.Chart().mark_line(point=alt.OverlayMarkDef(size=40)).encode(
        x=alt.X("step:Q", title="training step (from the base)"),
        y=alt.Y("refusal_rate:Q", title="refusal rate", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("condition:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["stage", "condition", "intervention", "prompts", "n", alt.Tooltip("refusal_rate:Q", format=".2f")])
    return _with_rule(lines, data, end).properties(width=WIDTH // 2 - 20, height=200).facet(
        column=alt.Column("prompts:N", title=None, header=alt.Header(
            labelExpr="datum.value == 'harmless' ? 'harmless prompts, direction added' : "
                      "'harmful prompts, direction ablated'"))).properties(
        title="Transfer along the road: each stage steered by the base's and by the final model's direction")


def charts(result) -> dict:
    end = sft_end(result.timeline) if not result.timeline.empty else None
    charts = {"losses": losses(result.losses, end)} if not result.losses.empty else {}
    for study in dict.fromkeys(result.timeline["study"]):
        chart = panel(result.timeline, study)
        if chart is not None:
            charts[f"timeline_{study}"] = chart
    moved = transfer(result.transfer, end)
    if moved is not None:
        charts["transfer"] = moved
    return charts


def partial(key: str, value: pd.DataFrame) -> alt.FacetChart | None:
    """The timeline so far while a run works: every panel series, a row per study."""
    if key != "timeline" or value.empty:
        return None
    data = pd.concat([panel_rows(value, s) for s in dict.fromkeys(value.study)], ignore_index=True)
    if data.empty:
        return None
    data = data.assign(series=data["metric"].str.replace("_", " ") + " (" + data["model"] + ")")
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("step:Q", title="training step"), y=alt.Y("value:Q", title=None),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom", columns=3, labelLimit=300)),
        tooltip=["stage", "study", "metric", "model", alt.Tooltip("value:Q", format=".3f")]).properties(
        width=WIDTH, height=110).facet(row=alt.Row("study:N", title=None)).resolve_scale(y="independent").properties(
        title="The timeline so far")
