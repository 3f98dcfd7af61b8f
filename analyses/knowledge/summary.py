"""Summaries of the knowledge study's grids: averages by token role (ROME's summary plots), base vs post-trained
comparison, cross-model recovery and the peak cells, and the headline. Plain pandas on the tidy tables."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .data import ROLES


def by_role(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, role) the cell's token holds; tokens with no role (before the subject) are dropped."""
    exploded = frame.assign(role=frame["roles"].str.split("; ")).explode("role")
    return exploded[exploded["role"].isin(ROLES)]


def averages(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean normalised score by keys + (role, layer): first within an item's role tokens, then over items."""
    if frame.empty:
        return pd.DataFrame(columns=[*keys, "role", "layer", "norm", "n_items"])
    per_item = by_role(frame).groupby([*keys, "item", "role", "layer"], as_index=False)["norm"].mean()
    out = per_item.groupby([*keys, "role", "layer"], as_index=False).agg(norm=("norm", "mean"),
                                                                         n_items=("item", "nunique"))
    out["role"] = pd.Categorical(out["role"], ROLES, ordered=True)
    return out.sort_values([*keys, "role", "layer"]).reset_index(drop=True).assign(role=lambda f: f.role.astype(str))


def _pearson(a: pd.Series, b: pd.Series) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def comparison(avg: pd.DataFrame, grids: pd.DataFrame) -> pd.DataFrame:
    """Per component: correlation of base and post maps (role-averaged and cell by cell), mean |difference|."""
    rows = []
    if not {"base", "post"} <= set(grids.get("model", pd.Series(dtype=str))):
        return pd.DataFrame(columns=["component", "pearson_roles", "pearson_cells", "mean_abs_diff"])
    for component in grids["component"].unique():
        a = avg[avg.component == component].pivot_table(index=["role", "layer"], columns="model", values="norm")
        g = grids[grids.component == component].pivot_table(index=["item", "position", "layer"], columns="model",
                                                            values="norm")
        rows.append({"component": component, "pearson_roles": _pearson(a["base"], a["post"]),
                     "pearson_cells": _pearson(g["base"], g["post"]),
                     "mean_abs_diff": float((a["post"] - a["base"]).abs().mean())})
    return pd.DataFrame(rows)


def difference(avg: pd.DataFrame) -> pd.DataFrame:
    """post - base of the averaged maps: component, role, layer, norm."""
    if not {"base", "post"} <= set(avg["model"]):
        return pd.DataFrame(columns=["component", "role", "layer", "norm"])
    wide = avg.pivot_table(index=["component", "role", "layer"], columns="model", values="norm").reset_index()
    return wide.assign(norm=wide["post"] - wide["base"])[["component", "role", "layer", "norm"]]


def _from_subject(frame: pd.DataFrame) -> pd.DataFrame:
    first = frame[frame.is_subject].groupby("item")["position"].min()
    return frame[frame["position"] >= frame["item"].map(first)]


def recovery(grids: pd.DataFrame, cross: pd.DataFrame) -> pd.DataFrame:
    """How much of the clean readout comes back, per direction, on the cells from the subject onwards: the mean
    over items of the best cell, of the best layer at the last subject token, and of all cells."""
    parts = [grids[grids.component == "resid"].assign(direction=lambda f: f.model + "→" + f.model, kind="self")]
    if not cross.empty:
        parts.append(cross.assign(kind="cross"))
    rows = []
    for (direction, kind), frame in pd.concat(parts, ignore_index=True).groupby(["direction", "kind"]):
        frame = _from_subject(frame)
        last_subject = by_role(frame)
        last_subject = last_subject[last_subject.role == "last subject"]
        rows.append({"direction": direction, "kind": kind,
                     "mean_peak": float(frame.groupby("item")["norm"].max().mean()),
                     "mean_last_subject": float(last_subject.groupby("item")["norm"].max().mean()),
                     "mean_cells": float(frame["norm"].mean())})
    return pd.DataFrame(rows, columns=["direction", "kind", "mean_peak", "mean_last_subject", "mean_cells"])


def peaks(avg: pd.DataFrame, cross_avg: pd.DataFrame) -> pd.DataFrame:
    """The top cell of each averaged map."""
    rows = []
    for (model, component), frame in avg.groupby(["model", "component"]):
        top = frame.loc[frame["norm"].idxmax()]
        rows.append({"map": model, "component": component, "role": top.role, "layer": int(top.layer),
                     "norm": float(top.norm)})
    for direction, frame in cross_avg.groupby("direction") if not cross_avg.empty else []:
        top = frame.loc[frame["norm"].idxmax()]
        rows.append({"map": direction, "component": "resid", "role": top.role, "layer": int(top.layer),
                     "norm": float(top.norm)})
    return pd.DataFrame(rows, columns=["map", "component", "role", "layer", "norm"])


def headline(result) -> dict[str, float | int]:
    """The paper's numbers: per component the correlation of the base and post-trained maps (role-averaged and
    cell by cell), per patching direction the mean over items of the best cell's recovery, and the items traced."""
    out: dict[str, float | int] = {}
    for row in result.comparison.itertuples():
        out[f"pearson_roles/{row.component}"] = float(row.pearson_roles)
        out[f"pearson_cells/{row.component}"] = float(row.pearson_cells)
    for row in result.recovery.itertuples():
        out[f"mean_peak/{row.direction}"] = float(row.mean_peak)
    out["n_traced"] = int(result.n_traced)
    return out
