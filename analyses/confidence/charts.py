"""Altair charts of the confidence study, from the result's tables (used by the page and the CLI)."""
from __future__ import annotations

import altair as alt
import pandas as pd

ROLE_NAMES = {"base": "Base", "post": "Post-trained"}
MAX_BACKGROUND = 2000  # neurons outside the top-norm group shown per model (a sample, to keep the chart light)


def _named(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(model=df["model"].map(lambda r: ROLE_NAMES.get(r, r)))


def scatter(neurons: pd.DataFrame) -> alt.Chart:
    """Output-weight norm vs logit variance (log), per model; candidates marked and labelled by index."""
    parts = []
    for _, rows in neurons.groupby("model", sort=False):
        rest = rows[~rows["top_norm"]]
        parts += [rows[rows["top_norm"]], rest.sample(min(len(rest), MAX_BACKGROUND), random_state=0)]
    df = _named(pd.concat(parts)).assign(
        kind=lambda d: d["candidate"].map({True: "candidate"}).fillna(d["top_norm"].map({True: "top norm",
                                                                                          False: "other"})))
    base = alt.Chart(df).encode(
        x=alt.X("norm:Q", title="output-weight norm", scale=alt.Scale(zero=False)),
        y=alt.Y("logit_var:Q", title="variance of the direct logit effect (log)", scale=alt.Scale(type="log")),
    )
    points = base.mark_circle().encode(
        color=alt.Color("kind:N", scale=alt.Scale(domain=["candidate", "top norm", "other"],
                                                  range=["#d62728", "#1f77b4", "#c7c7c7"])),
        size=alt.condition("datum.candidate", alt.value(60), alt.value(12)),
        tooltip=["neuron", "norm", "logit_var", "null_frac"],
    )
    labels = base.transform_filter("datum.candidate").mark_text(align="left", dx=5, fontSize=10).encode(
        text="neuron:Q")
    return alt.layer(points, labels, data=df).properties(width=330, height=280).facet(
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
