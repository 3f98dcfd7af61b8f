"""Altair charts of the truthfulness study, shared by the page and the CLI (each takes the result's tables)."""
from __future__ import annotations

import altair as alt
import pandas as pd


def probe_accuracy(probes: pd.DataFrame) -> alt.Chart:
    """Test accuracy per layer of each model's own probes (projection and logistic)."""
    own = probes[probes["source"] == probes["model"]]
    return alt.Chart(own, title="Probe accuracy on the test split, per layer").mark_line(point=True).encode(
        x=alt.X("layer:Q", title="layer (residual stream entering it)"),
        y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0.3, 1.0])),
        color=alt.Color("model:N"), strokeDash=alt.StrokeDash("method:N"), shape=alt.Shape("method:N"),
        tooltip=["model", "method", "layer", alt.Tooltip("accuracy:Q", format=".3f")])


def probe_transfer(probes: pd.DataFrame) -> alt.Chart:
    """Accuracy of probes fit on one model and applied to the other's activations, next to their own."""
    data = probes.assign(pairing=probes["source"] + " probe → " + probes["model"] + " acts")
    return alt.Chart(data, title="Probe transfer: fit on one model, tested on each").mark_line(point=True).encode(
        x="layer:Q", y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0.3, 1.0])),
        color=alt.Color("pairing:N"), strokeDash=alt.StrokeDash("method:N"), shape=alt.Shape("method:N"),
        tooltip=["pairing", "method", "layer", alt.Tooltip("accuracy:Q", format=".3f")])


def cosine(directions: pd.DataFrame) -> alt.Chart:
    """Cosine of the base and post mass-mean directions per layer, raw and per-dimension standardised, and (paper
    method) the single-set directions' cosine beside them."""
    measures = [c for c in ("cosine", "cosine_scaled", "cosine_single_set") if c in directions]
    long = directions.melt(id_vars=["layer"], value_vars=measures, var_name="measure", value_name="value")
    return alt.Chart(long, title="Cosine similarity of base and post truth directions").mark_line(point=True).encode(
        x="layer:Q", y=alt.Y("value:Q", title="cosine", scale=alt.Scale(domain=[-1, 1])),
        color=alt.Color("measure:N"), tooltip=["layer", "measure", alt.Tooltip("value:Q", format=".3f")])


def dominant_dims(directions: pd.DataFrame) -> alt.Chart:
    """Per layer and model, the share of the direction's squared norm in its largest 1 and 3 dimensions: near 1, a
    single residual dimension drives the direction (and any cosine taken with it)."""
    rows = []
    for role in ("base", "post"):
        if f"top1_share_{role}" not in directions:
            continue
        for k in (1, 3):
            rows.append(directions[["layer"]].assign(model=role, top=f"top {k}",
                                                      share=directions[f"top{k}_share_{role}"],
                                                      dimension=directions[f"top_dim_{role}"]))
    data = pd.concat(rows, ignore_index=True)
    return alt.Chart(data, title="Share of each direction's squared norm in its largest dimensions").mark_line(
        point=True).encode(
        x=alt.X("layer:Q", title="layer (residual stream entering it)"),
        y=alt.Y("share:Q", scale=alt.Scale(domain=[0, 1])), color=alt.Color("model:N"),
        strokeDash=alt.StrokeDash("top:N"), shape=alt.Shape("top:N"),
        tooltip=["model", "top", "layer", alt.Tooltip("share:Q", format=".3f"),
                 alt.Tooltip("dimension:Q", title="largest dimension")])


def pca_scatter(pca: pd.DataFrame, layer: int) -> alt.Chart:
    """The first two principal components of one layer's activations, one panel per model, coloured by label."""
    data = pca[pca["layer"] == layer].assign(truth=lambda d: d["label"].map({1: "true", 0: "false"}))
    return alt.Chart(data).mark_circle(size=30, opacity=0.7).encode(
        x="pc1:Q", y="pc2:Q", color=alt.Color("truth:N", scale=alt.Scale(domain=["true", "false"])),
        shape="split:N", tooltip=["statement", "truth", "split"]).properties(width=320, height=280).facet(
        column=alt.Column("model:N", title=None)).properties(
        title=f"Activations at layer {layer}: first two principal components")


def transfer_heatmap(transfer: pd.DataFrame, alpha: float, measure: str = "normalised_effect") -> alt.Chart:
    """The 2 x 2 direction source x steered model at one alpha, coloured by the measure."""
    data = transfer[transfer["alpha"] == alpha]
    base = alt.Chart(data, title=alt.Title(f"{MEASURES.get(measure, measure)} at alpha {alpha:g}",
                                           subtitle="rows: direction taken from · columns: model steered")).encode(
        x=alt.X("model:N", title="model steered", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("direction:N", title="direction from"))
    rect = base.mark_rect().encode(color=alt.Color(f"{measure}:Q", scale=alt.Scale(scheme="blues"), legend=None),
                                   tooltip=["direction", "model", "normalised_effect", "mean_change", "flip_rate",
                                            "accuracy_after"])
    text = base.mark_text(fontSize=18).encode(
        text=alt.Text(f"{measure}:Q", format=".2f"),
        color=alt.condition(f"datum.{measure} > {_midpoint(data[measure])}", alt.value("white"), alt.value("black")))
    return (rect + text).properties(width=alt.Step(120), height=alt.Step(70))


MEASURES = {"normalised_effect": "Normalised effect",  # the paper's; titles fit over two cells
            "mean_change": "Mean change of the score", "flip_rate": "Flip rate"}


def _midpoint(values: pd.Series) -> float:
    """Halfway along the colour scale: darker cells than this get white numbers."""
    return float((values.min() + values.max()) / 2) if len(values) else 0.0


def alpha_curve(curve: pd.DataFrame) -> alt.Chart:
    """One statement's score as alpha moves, per steered model and direction source."""
    data = curve.assign(run=curve["direction"] + " direction → " + curve["model"])
    return alt.Chart(data, title="P(TRUE) − P(FALSE) as alpha moves").mark_line(point=True).encode(
        x="alpha:Q", y=alt.Y("score:Q", scale=alt.Scale(domain=[-1, 1])), color="run:N",
        tooltip=["run", "alpha", alt.Tooltip("score:Q", format=".3f")])


def generalisation(table: pd.DataFrame) -> alt.Chart:
    """Accuracy on each held-out set of probes fit on the others, per layer, one panel per model."""
    return alt.Chart(table).mark_line(point=True).encode(x="layer:Q", y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0.3, 1.0])),
                           color=alt.Color("held_out:N", legend=alt.Legend(orient="bottom", columns=4)),
                           strokeDash=alt.StrokeDash("method:N", legend=alt.Legend(orient="bottom")),
                           shape=alt.Shape("method:N", legend=alt.Legend(orient="bottom")),
                           tooltip=["held_out", "method", "layer", alt.Tooltip("accuracy:Q", format=".3f")]
                           ).properties(width=330, height=260).facet(column=alt.Column("model:N", title=None)).properties(
        title="Generalisation: probes fit on the other sets, tested on the held-out one")


def charts(result, layer: int | None = None) -> dict[str, alt.Chart]:
    """Every chart of a result (the PCA at the probe layer unless `layer` says otherwise; heatmaps per alpha)."""
    layer = result.probe_layer if layer is None else layer
    out = {"probe_accuracy": probe_accuracy(result.probes), "probe_transfer": probe_transfer(result.probes),
           "cosine": cosine(result.direction_stats), "dominant_dims": dominant_dims(result.direction_stats),
           "pca": pca_scatter(result.pca, layer)}
    for alpha in sorted(result.transfer["alpha"].unique()):
        out[f"transfer_alpha{alpha:g}"] = transfer_heatmap(result.transfer, alpha)
        out[f"transfer_change_alpha{alpha:g}"] = transfer_heatmap(result.transfer, alpha, "mean_change")
        out[f"transfer_flips_alpha{alpha:g}"] = transfer_heatmap(result.transfer, alpha, "flip_rate")
    return out
