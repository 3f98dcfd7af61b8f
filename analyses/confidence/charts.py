"""Altair charts of the confidence study, from the result's tables (used by the page and the CLI)."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

ROLE_NAMES = {"base": "Base", "post": "Post-trained"}
MAX_BACKGROUND = 2000  # neurons outside the top-norm group shown per model (a sample, to keep the chart light)


def _named(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(model=df["model"].map(lambda r: ROLE_NAMES.get(r, r)))


SCATTER_HEIGHT = 280
LABEL_PX = 12  # a label's height: candidates' labels are spread at least this far apart


def _label_places(rows: pd.DataFrame, span_decades: float, x_span: float) -> pd.DataFrame:
    """Where each candidate's label sits (label_x, label_y): beside its point, or, for candidates clustered closer
    than a label's height on the log axis, stacked in a column right of the cluster, centred on it, each joined to
    its point by a line (clustered candidates drew their indices on top of each other, over the top-norm points)."""
    gap = span_decades * LABEL_PX / SCATTER_HEIGHT
    logs = np.log10(rows["logit_var"].clip(lower=1e-30)).sort_values()
    clusters: list[list] = []
    for index, log_var in logs.items():
        if clusters and log_var - logs[clusters[-1][-1]] < gap:
            clusters[-1].append(index)
        else:
            clusters.append([index])
    places = {}
    for members in clusters:
        if len(members) == 1:
            places[members[0]] = (rows.at[members[0], "norm"], rows.at[members[0], "logit_var"])
            continue
        middle, x = logs[members].mean(), rows.loc[members, "norm"].max() + 0.12 * x_span
        for k, index in enumerate(members):
            places[index] = (x, 10 ** (middle + (k - (len(members) - 1) / 2) * gap))
    return pd.DataFrame.from_dict(places, orient="index", columns=["label_x", "label_y"])


def scatter(neurons: pd.DataFrame) -> alt.Chart:
    """Output-weight norm vs logit variance (log), per model; candidates marked and labelled by index."""
    parts = []
    for _, rows in neurons.groupby("model", sort=False):
        rest = rows[~rows["top_norm"]]
        parts += [rows[rows["top_norm"]], rest.sample(min(len(rest), MAX_BACKGROUND), random_state=0)]
    df = _named(pd.concat(parts, ignore_index=True)).assign(
        kind=lambda d: d["candidate"].map({True: "candidate"}).fillna(d["top_norm"].map({True: "top norm",
                                                                                          False: "other"})))
    shown = np.log10(df["logit_var"][df["logit_var"] > 0])
    span = float(shown.max() - shown.min()) if len(shown) else 1.0
    x_span = float(df["norm"].max() - df["norm"].min()) or 1.0
    df[["label_x", "label_y"]] = np.nan
    for _, rows in df[df["candidate"]].groupby("model", sort=False):
        df.loc[rows.index, ["label_x", "label_y"]] = _label_places(rows, span, x_span).loc[rows.index].to_numpy()
    base = alt.Chart(df).encode(
        x=alt.X("norm:Q", title="output-weight norm", scale=alt.Scale(zero=False)),
        # short, so the whole title fits beside the panel ("variance of the direct logit e…" was cut)
        y=alt.Y("logit_var:Q", title="direct logit-effect variance (log)", scale=alt.Scale(type="log"),
                axis=alt.Axis(titleLimit=SCATTER_HEIGHT)),
    )
    points = base.mark_circle().encode(
        color=alt.Color("kind:N", scale=alt.Scale(domain=["candidate", "top norm", "other"],
                                                  range=["#d62728", "#1f77b4", "#c7c7c7"])),
        size=alt.condition("datum.candidate", alt.value(60), alt.value(12)),
        tooltip=["neuron", "norm", "logit_var", "null_frac"],
    )
    candidates = base.transform_filter("datum.candidate")
    leaders = candidates.mark_rule(color="#d62728", opacity=0.5).encode(x2="label_x:Q", y2="label_y:Q")
    labels = candidates.mark_text(align="left", dx=5, fontSize=10).encode(x="label_x:Q", y="label_y:Q",
                                                                          text="neuron:Q")
    return alt.layer(points, leaders, labels, data=df).properties(width=330, height=SCATTER_HEIGHT).facet(
        column=alt.Column("model:N", title=None)).properties(title="Entropy-neuron candidates: norm vs logit variance")


def null_fraction(neurons: pd.DataFrame) -> alt.Chart:
    """Fraction of each top-norm neuron's output weight in the null space, candidates marked."""
    df = _named(neurons[neurons["top_norm"]])
    return alt.Chart(df).mark_circle().encode(
        x=alt.X("norm:Q", title="output-weight norm", scale=alt.Scale(zero=False)),
        y=alt.Y("null_frac:Q", title="fraction of ||w||² in the null space"),
        color=alt.Color("candidate:N", scale=alt.Scale(domain=[True, False], range=["#d62728", "#1f77b4"])),
        tooltip=["neuron", "norm", "null_frac", "logit_var"],
    ).properties(width=330, height=220).facet(column=alt.Column("model:N", title=None)).properties(
        title="Top-norm neurons: share of the output weight in the unembedding's null space")


def overlap(table: pd.DataFrame) -> alt.Chart:
    """IoU of the base and post-trained candidate sets over the thresholds."""
    base = alt.Chart(table).encode(x=alt.X("n_candidates:O", title="N lowest logit variance",
                                           axis=alt.Axis(labelAngle=0)),
                                   y=alt.Y("top_norm_fraction:O", title="top fraction by norm"))
    cells = base.mark_rect().encode(color=alt.Color("iou:Q", scale=alt.Scale(domain=[0, 1]), title="IoU"))
    text = base.mark_text(fontSize=13).encode(text=alt.Text("iou:Q", format=".2f"), color=alt.condition(
        "datum.iou > 0.5", alt.value("white"), alt.value("black")))
    return (cells + text).properties(width=alt.Step(90), height=alt.Step(36),
                                     title="Candidate overlap, base vs post-trained (IoU)")


def ablation(table: pd.DataFrame) -> alt.Chart:
    """Per neuron: change in entropy and loss from mean ablation, total vs direct (final norm's scale frozen)."""
    cols = {f"d_{m}_{e}": (m, e) for m in ("entropy", "loss") for e in ("total", "direct")}
    long = table.melt(id_vars=["model", "group", "neuron"], value_vars=list(cols), var_name="column")
    long["metric"] = long["column"].map(lambda c: cols[c][0])
    long["effect"] = long["column"].map(lambda c: cols[c][1])
    long["label"] = long["group"].str[0] + long["neuron"].astype(str)
    order = list(dict.fromkeys(long.sort_values(["group"])["label"]))
    return alt.Chart(_named(long)).mark_bar().encode(
        x=alt.X("label:N", sort=order, title="neuron (c = candidate, r = random control)"),
        xOffset="effect:N",
        y=alt.Y("value:Q", title="mean change (nats)"),
        color=alt.Color("effect:N", title="effect"),
        opacity=alt.condition("datum.group == 'candidate'", alt.value(1.0), alt.value(0.5)),
        tooltip=["model", "group", "neuron", "metric", "effect", alt.Tooltip("value:Q", format=".4f")],
    ).properties(width=320, height=160).facet(  # 340 drew the facets 961 px wide in a 940 px column
        row=alt.Row("model:N", title=None), column=alt.Column("metric:N", title=None)
    ).resolve_scale(y="independent").properties(title="Mean ablation: total vs direct effect, candidates vs random")


def reliability(bins: pd.DataFrame) -> alt.Chart:
    """Reliability diagrams side by side: accuracy per confidence bin against the diagonal."""
    df = _named(bins)
    diagonal = alt.Chart().mark_rule(strokeDash=[4, 4], color="gray").encode(
        x=alt.datum(0), y=alt.datum(0), x2=alt.datum(1), y2=alt.datum(1))
    curve = alt.Chart().mark_line(point=True).encode(
        x=alt.X("mean_confidence:Q", title="confidence (max probability)", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("accuracy:Q", title="accuracy", scale=alt.Scale(domain=[0, 1])),
        tooltip=["mean_confidence", "accuracy", "count"])
    sizes = alt.Chart().mark_circle(opacity=0.4).encode(x="mean_confidence:Q", y="accuracy:Q",
                                                       size=alt.Size("count:Q", title="questions"))
    return alt.layer(diagonal, curve, sizes, data=df).properties(width=280, height=280).facet(
        column=alt.Column("model:N", title=None)).properties(title="Reliability on the questions")


def charts(result) -> dict[str, alt.Chart]:
    """Every chart of the study (the page shows them all, the CLI writes them); overlap only with two models."""
    charts = {"scatter": scatter(result.neurons), "null_fraction": null_fraction(result.neurons),
              "ablation": ablation(result.ablation), "reliability": reliability(result.reliability)}
    if len(result.overlap):
        charts["overlap"] = overlap(result.overlap)
    return charts
