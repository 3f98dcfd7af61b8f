"""Diffing: where, on a text, the post-trained model parts from the base, and what post-training added."""
import html

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from analyses.diffing import STUDY, compared_with, position_view
from analyses.diffing import charts as ch
from analyses.study_directions import directions_for
from app_pages.ui.glossary import gloss
from app_pages.ui.icons import study_icon
from app_pages.ui.names import named_chart, named_table
from app_pages.ui.pair_picker import current_pair, sidebar
from app_pages.ui.steering_form import hand_over_study_direction
from app_pages.ui.study_page import downloads, headline, study_result
from steering import SteeringError

# for a user who compares numbers with the closest peer tool (the README says the same)
PEER_CONVENTIONS = (
    "Comparing with science-of-finetuning's diffing-toolkit? Three conventions differ. Layers: layer *l* here is the "
    "residual stream entering block *l* (0 = the embeddings), which is the toolkit's layer *l − 1* (a block's "
    "output). Positions: the difference here is one mean over the first k tokens of each plain text after BOS "
    "(positions 1–5 by default), BOS left out; the toolkit keeps a mean per position. Tokens: the lists here leave out tokens text never produces (control "
    "tokens, `<unused…>`); the toolkit lists every token.")

st.set_page_config(page_title="Diffing", page_icon=study_icon(STUDY), layout="wide")
sidebar()
st.title("Diffing: where the post-trained model parts from the base")
st.caption("A researcher with a new pair asks first: on this text, where do the two models differ, and what did "
           "post-training add? Per-token KL and the logit lens answer the first; the mean activation difference on "
           "plain text, read through the unembedding, answers the second (Minder et al. 2025, arXiv:2510.13900, "
           "show it names what a narrow fine-tune was about).")
gloss("KL", "resid")
pair = current_pair()
if pair is None:
    st.stop()

stored = study_result(STUDY, pair)
if stored is None:
    st.stop()
result = stored.result
headline(STUDY, result)
charts = STUDY.charts(result)


def shaded(tokens: pd.DataFrame, chosen: int) -> str:
    """The text, each token shaded by KL(post || base) at it (darker = the models part more on the next token)."""
    top = max(float(tokens["kl_post_base"].max()), 1e-9)
    spans = []
    for row in tokens.itertuples(index=False):
        alpha = min(row.kl_post_base / top, 1.0)
        border = "border:2px solid #1d3557;" if row.position == chosen else ""
        word = html.escape(row.token).replace("\n", "⏎<br>")
        spans.append(f'<span title="{row.position}: KL {row.kl_post_base:.3f}" style="background:rgba(230,57,70,'
                     f'{alpha:.2f});{border}padding:1px 0;border-radius:3px">{word}</span>')
    return '<div style="line-height:2;font-family:monospace">' + "".join(spans) + "</div>"


def clicked_position(event) -> int | None:
    points = (event or {}).get("selection", {}).get("position") or []
    return int(points[0]["position"]) if points else None


st.header("1 · Where the two models part, token by token")
names = list(result.texts)
name = st.radio("Text", names, horizontal=True, key="diffing_which_text") if len(names) > 1 else names[0]
tokens = result.tokens[result.tokens["text"] == name].reset_index(drop=True)
slider_key = f"diffing_position_{name}"
event = st.altair_chart(named_chart(ch.divergence(tokens, select=True), pair.name), width="stretch",
                        on_select="rerun", key=f"diffing_bars_{name}")
click = clicked_position(event)
if st.session_state.get(f"{slider_key}_result") != stored.manifest.get("key"):  # a new result: its own position
    st.session_state[f"{slider_key}_result"] = stored.manifest.get("key")
    st.session_state[slider_key] = result.positions[name]
if click is not None and st.session_state.get(f"{slider_key}_click") != click:  # a new click moves the slider
    st.session_state[f"{slider_key}_click"] = st.session_state[slider_key] = click
position = st.slider("Position (or click a bar)", 0, len(tokens) - 1, key=slider_key)
st.markdown(shaded(tokens, position), unsafe_allow_html=True)
row = tokens.iloc[position]
st.caption(f"Position {position}, token `{ch.shown(row['token'])}`: KL(post ‖ base) {row['kl_post_base']:.3f}, "
           f"KL(base ‖ post) {row['kl_base_post']:.3f}, total variation {row['tv']:.3f}; the actual next token "
           f"`{ch.shown(row['next_token'])}` ranks {row['rank_base']} under base, {row['rank_post']} under post. "
           f"The run chose position {result.positions[name]} (the peak of KL when the setting is -1).")

top_n = int(result.lens.groupby(["text", "layer", "model"]).size().max())
if position == result.positions[name]:
    lens = result.lens[result.lens["text"] == name]
    changes = result.changes[result.changes["text"] == name]
    answers = result.answer_layers[result.answer_layers["text"] == name]
else:
    try:
        lens, changes, answers = position_view(pair, result.texts[name], position, top_n)
    except SteeringError as e:
        st.error(str(e))
        st.stop()

st.subheader("Tokens whose probability rose and fell most")
st.altair_chart(named_chart(ch.changes(changes), pair.name), width="stretch")
st.subheader("Logit lens, both models side by side")
st.altair_chart(named_chart(ch.lens(lens, f"Logit lens at position {position}"), pair.name), width="content")
st.caption("Each layer's residual stream read through the model's own final norm and unembedding (Gemma's "
           "soft-cap included where it has one); the last row is the model's output. " + " · ".join(
               f"**{r.model}**: answer `{ch.shown(r.answer)}` enters the top 5 at layer {r.first_top5_layer}"
               for r in named_table(answers, pair.name).itertuples(index=False)))

st.header("2 · What post-training added: the activation-difference lens")
st.caption(f"Mean of (post − base) residuals at each layer over the first {result.k} tokens (after BOS) of the "
           "project's plain-text set (assets/diffing/plain_text.txt, no chat). Tokens that text never produces "
           "(control tokens, Gemma's never-trained `<unused…>`) are left out of the lists.")
st.altair_chart(named_chart(charts["difference_norms"], pair.name), width="stretch")
st.altair_chart(named_chart(charts["difference_tokens"], pair.name), width="content")
reading = {"logit_lens": "the post model's final norm and unembedding of the difference (score: logit)",
           "patchscope": "the difference added at the last token of an identity prompt in the post model (score: "
                         "rise of each next token's probability)"}[result.reading]
st.caption(f"Reading: {reading}. Change it under Settings.")
st.caption(PEER_CONVENTIONS)
found = compared_with(result, pair)  # read now from the store: not part of the run, whose key covers its inputs
if len(found):
    st.altair_chart(named_chart(ch.cosines(found), pair.name), width="stretch")
else:
    st.caption("No refusal or truth direction is stored for this pair yet, so there is nothing to compare the "
               "difference with: run the refusal or truthfulness study and run this one again.")


def send_to_playground() -> None:
    found = directions_for(pair)
    index = next((i for i, (label, d) in enumerate(found) if label.startswith("diffing · difference")
                  and d.vectors.shape == result.difference.vectors.shape
                  and bool((d.vectors == result.difference.vectors).all())), None)
    if index is None:
        st.warning("This difference is not in your result store yet: press Run first.")
        return
    hand_over_study_direction(index)
    try:
        st.switch_page("app_pages/1_Playground.py")
    except StreamlitPageNotFoundError:  # the page opened on its own, outside app.py's navigation
        st.info("Chosen: open the Playground page, where this difference is the selected study direction.")


if st.button("Steer with this difference in the playground", key="diffing_send"):
    send_to_playground()
downloads(STUDY, result)
from app_pages.ui.amplify import amplification_section  # noqa: E402  (the section keeps its own module)
amplification_section(pair)
