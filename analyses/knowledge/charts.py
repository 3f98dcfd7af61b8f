"""Altair heatmaps of the knowledge study (tokens or token roles x layers), used by the page and the CLI."""
from __future__ import annotations

import altair as alt
import pandas as pd

from . import summary as ks
from .data import ROLES

NAMES = {"resid": "residual stream", "mlp": "MLP (window)", "attn": "attention (window)"}


def _token_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """'03 Paris*': position in the shown prompt, the token, a star on subject tokens."""
    label = (frame["token_index"].map("{:02d}".format) + " " + frame["token"].str.replace("\n", "⏎")
             + frame["is_subject"].map({True: "*", False: ""}))
    return frame.assign(token_label=label)


def _rect(frame: pd.DataFrame, y: str, y_sort, color_scale: alt.Scale, title: str, facet: str | None,
          color_title: str = "recovered") -> alt.Chart:
    base = alt.Chart(frame).mark_rect().encode(
        x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0, labelOverlap=False)),
        y=alt.Y(f"{y}:N", sort=y_sort, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=160)),
        color=alt.Color("norm:Q", scale=color_scale, title=color_title),
        tooltip=[y, "layer", alt.Tooltip("norm:Q", format=".3f")] + (["score"] if "score" in frame else []),
    ).properties(width=alt.Step(16), height=alt.Step(18))
    if facet:
        return base.facet(column=alt.Column(f"{facet}:N", title=None)).properties(title=title)
    return base.properties(title=title)


def fact_map(grids: pd.DataFrame, item: int, component: str) -> alt.Chart:
    """One item's (token x layer) map for one component, base and post-trained side by side."""
    frame = _token_labels(grids[(grids["item"] == item) & (grids["component"] == component)])
    order = list(frame.sort_values("token_index")["token_label"].unique())
    return _rect(frame, "token_label", order, alt.Scale(scheme="purples", domain=[0, 1], clamp=True),
                 f"Restoring the {NAMES[component]} (* = subject token)", "model")


def fact_difference(grids: pd.DataFrame, item: int, component: str) -> alt.Chart:
    frame = grids[(grids["item"] == item) & (grids["component"] == component)]
    wide = frame.pivot_table(index=["token_index", "token", "is_subject", "layer"], columns="model",
                             values="norm").reset_index()
    wide = _token_labels(wide.assign(norm=wide["post"] - wide["base"]))
    order = list(wide.sort_values("token_index")["token_label"].unique())
    return _rect(wide, "token_label", order, alt.Scale(scheme="redblue", domain=[-1, 1], reverse=True, clamp=True),
                 f"Post-trained − base, {NAMES[component]}", None, "post − base")


def average_maps(averages: pd.DataFrame, component: str) -> alt.Chart:
    frame = averages[averages["component"] == component]
    n = int(frame["n_items"].max()) if len(frame) else 0
    return _rect(frame, "role", ROLES, alt.Scale(scheme="purples", domain=[0, 1], clamp=True),
                 f"Average over {n} items by token role, {NAMES[component]}", "model")


def average_difference(averages: pd.DataFrame, component: str) -> alt.Chart:
    frame = ks.difference(averages)
    frame = frame[frame["component"] == component]
    return _rect(frame, "role", ROLES, alt.Scale(scheme="redblue", domain=[-0.5, 0.5], reverse=True, clamp=True),
                 f"Post-trained − base, {NAMES[component]}", None, "post − base")


def cross_maps(cross_averages: pd.DataFrame) -> alt.Chart:
    return _rect(cross_averages, "role", ROLES, alt.Scale(scheme="greens", domain=[0, 1], clamp=True),
                 "Cross-model patching, residual stream: source's clean state into target's corrupted run",
                 "direction")


def recovery_bars(recovery: pd.DataFrame) -> alt.Chart:
    return alt.Chart(recovery).mark_bar().encode(
        x=alt.X("mean_peak:Q", title="mean over items of the best cell's recovery"),
        y=alt.Y("direction:N", title="source→target"), color=alt.Color("kind:N", title=None),
        tooltip=["direction", "kind", alt.Tooltip("mean_peak:Q", format=".3f"),
                 alt.Tooltip("mean_last_subject:Q", format=".3f"), alt.Tooltip("mean_cells:Q", format=".3f")],
    ).properties(title="How much comes back: self-patching vs cross-model", width=360)


def charts(result) -> dict[str, alt.Chart]:
    """Every chart of a result: the first traced item's maps, the averages, their differences, cross-model."""
    charts = {}
    comps = list(result.grids["component"].unique())
    first = int(result.grids["item"].iloc[0])
    for c in comps:
        charts[f"fact_{c}"] = fact_map(result.grids, first, c)
        charts[f"average_{c}"] = average_maps(result.averages, c)
        if {"base", "post"} <= set(result.grids["model"]):
            charts[f"fact_diff_{c}"] = fact_difference(result.grids, first, c)
            charts[f"average_diff_{c}"] = average_difference(result.averages, c)
    if not result.cross_averages.empty:
        charts["cross"] = cross_maps(result.cross_averages)
    charts["recovery"] = recovery_bars(result.recovery)
    return charts
