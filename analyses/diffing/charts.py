"""Altair charts of the diffing study, shared by the page and the CLI (each takes the result's tables)."""
from __future__ import annotations

import altair as alt
import pandas as pd

TOKEN_TIPS = ["position", "token", "next_token", alt.Tooltip("kl_post_base:Q", format=".3f"),
              alt.Tooltip("kl_base_post:Q", format=".3f"), alt.Tooltip("tv:Q", format=".3f"), "rank_base",
              "rank_post"]


def shown(token) -> str:
    """A token as a label: line breaks and blanks made visible ("" for the missing next token at the end)."""
    return token.replace("\n", "⏎").replace(" ", "·") or "∅" if isinstance(token, str) else ""


def divergence(tokens: pd.DataFrame, select: bool = False) -> alt.Chart:
    """KL(post || base) at every position of one text (or one row per text): a bar per token, clickable on the page."""
    data = tokens.assign(label=tokens["token"].map(shown), next_token=tokens["next_token"].map(shown))
    chart = alt.Chart(data, title="KL(post ‖ base) of the next-token distributions, per position").mark_bar().encode(
        x=alt.X("position:O", title="position (the token read; the bar is the prediction of the next one)",
                axis=alt.Axis(labelExpr="datum.value % 8 == 0 ? datum.value : ''")),
        y=alt.Y("kl_post_base:Q", title="KL (nats)"),
        color=alt.Color("tv:Q", title="total variation", scale=alt.Scale(scheme="oranges", domain=[0, 1])),
        tooltip=TOKEN_TIPS)
    if select:
        chart = chart.add_params(alt.selection_point(name="position", fields=["position"], on="click"))
    if tokens["text"].nunique() > 1:
        return chart.properties(height=140).facet(row=alt.Row("text:N", title=None)).resolve_scale(x="independent")
    return chart.properties(height=180)


PAGE_WIDTH = 940  # px of a page's main column in a 1400 px window with the sidebar open
AXES = 230  # the layer axis, its title, the colour legend and the gap between the two panels


def _cell_width(n_columns: int) -> int:
    """The width of a cell so that two panels of `n_columns` cells fit the page (72 px drew the demo's lens 1,600 px
    wide, its right panel cut off); never under 30 px, where a token's first letters still show."""
    return max(30, min(72, (PAGE_WIDTH - AXES) // (2 * max(n_columns, 1))))


def lens(table: pd.DataFrame, title: str = "Logit lens") -> alt.Chart:
    """Top tokens at every layer for both models side by side (layer n_layers = the model's output)."""
    data = table.assign(label=table["token"].map(shown))
    step = _cell_width(data["rank"].nunique())
    base = alt.Chart(data).encode(
        x=alt.X("rank:O", title="rank"),
        y=alt.Y("layer:O", sort="descending", title="layer (residual stream entering it; last = output)"))
    cells = base.mark_rect().encode(color=alt.Color("prob:Q", scale=alt.Scale(scheme="blues", type="sqrt"),
                                                    title="probability"),
                                    tooltip=["model", "layer", "rank", "token", alt.Tooltip("prob:Q", format=".3f")])
    words = base.mark_text(fontSize=9, limit=step - 2).encode(
        text="label:N", color=alt.condition("datum.prob > 0.5", alt.value("white"), alt.value("black")))
    return (cells + words).properties(width=alt.Step(step), height=alt.Step(16)).facet(
        column=alt.Column("model:N", title=None)).properties(title=title)


def changes(table: pd.DataFrame, title: str = "Tokens whose probability rose and fell most") -> alt.Chart:
    """The change in next-token probability (post - base) of the tokens that moved most at one position."""
    data = table.assign(label=table["token"].map(shown))
    return alt.Chart(data, title=title).mark_bar().encode(
        x=alt.X("delta:Q", title="p_post - p_base"), y=alt.Y("label:N", sort="-x", title=None),
        color=alt.Color("change:N", scale=alt.Scale(domain=["rose", "fell"], range=["#2a9d8f", "#e76f51"])),
        tooltip=["token", alt.Tooltip("p_base:Q", format=".4f"), alt.Tooltip("p_post:Q", format=".4f"),
                 alt.Tooltip("delta:Q", format="+.4f")]).properties(height=alt.Step(18))  # 14 px hid every other label


def difference_norms(norms: pd.DataFrame) -> alt.Chart:
    """The norm of the mean activation difference per layer, relative to the typical residual norm there."""
    return alt.Chart(norms, title="Norm of the mean activation difference (post - base), per layer").mark_line(
        point=True).encode(
        x=alt.X("layer:Q", title="layer (residual stream entering it; last = final norm's input)"),
        y=alt.Y("relative:Q", title="‖difference‖ / typical ‖residual‖"),
        tooltip=["layer", alt.Tooltip("norm:Q", format=".3f"), alt.Tooltip("resid_norm:Q", format=".1f"),
                 alt.Tooltip("relative:Q", format=".4f")])


def difference_tokens(tokens: pd.DataFrame, reading: str) -> alt.Chart:
    """The tokens the difference promotes and demotes at each layer, as the chosen reading scores them."""
    data = tokens.assign(label=tokens["token"].map(shown))
    step = _cell_width(data["rank"].nunique())
    base = alt.Chart(data).encode(x=alt.X("rank:O"), y=alt.Y("layer:O", sort="descending"))
    cells = base.mark_rect().encode(color=alt.Color("score:Q", scale=alt.Scale(scheme="redblue", domainMid=0,
                                                                               reverse=True), title="score"),
                                    tooltip=["layer", "kind", "rank", "token", alt.Tooltip("score:Q", format=".4g")])
    words = base.mark_text(fontSize=9, limit=step - 2).encode(text="label:N")
    what = "logit of the difference" if reading == "logit_lens" else "rise of next-token probability (Patchscope)"
    return (cells + words).properties(width=alt.Step(step), height=alt.Step(16)).facet(
        column=alt.Column("kind:N", title=None, sort=["promoted", "demoted"])).properties(
        title=f"What the activation difference promotes and demotes ({what})")


def cosines(table: pd.DataFrame) -> alt.Chart:
    """Cosine of the difference with each stored study direction, per layer (the refusal study's candidates left
    out where its chosen directions are there: they are in the table)."""
    chosen = table[~table["direction"].str.contains("candidate")]
    table = chosen if len(chosen) else table
    return alt.Chart(table, title="Cosine of the difference with the studies' directions").mark_line(
        point=True).encode(x="layer:Q", y=alt.Y("cosine:Q", scale=alt.Scale(domain=[-1, 1])),
                           color=alt.Color("direction:N", legend=alt.Legend(orient="bottom", columns=2)),
                           tooltip=["direction", "layer", alt.Tooltip("cosine:Q", format=".3f")])


def charts(result) -> dict[str, alt.Chart]:
    """Every chart of a result: the divergence, per text the lens and the changes, and the difference's."""
    charts = {"divergence": divergence(result.tokens)}
    for name, position in result.positions.items():
        charts[f"lens_{name}"] = lens(result.lens[result.lens["text"] == name],
                                      f"Logit lens on the {name} text at position {position}")
        charts[f"changes_{name}"] = changes(result.changes[result.changes["text"] == name])
    charts["difference_norms"] = difference_norms(result.difference_norms)
    charts["difference_tokens"] = difference_tokens(result.difference_tokens, result.reading)
    return charts
