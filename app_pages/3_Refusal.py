"""Refusal study: the refusal direction of each model, ablated and added with its own and the other model's."""
import streamlit as st

from analyses.contrast_sets import decode_upload, parse_prompt_list
from analyses.refusal import (ABLATION_HELP, ABLATIONS, STUDY, builtin_data, live_generation, phrases_setting,
                              split_lists, steering_of)
from analyses.refusal.charts import candidate_heatmap, cosine_chart, score_bars
from app_pages.ui.glossary import gloss
from app_pages.ui.icons import study_icon
from app_pages.ui.names import named_chart, named_table, role_names
from app_pages.ui.pair_picker import current_pair, sidebar
from app_pages.ui.study_page import downloads, headline, study_result
from steering import SteeringError
from steering.generation import alpha_warning
from steering.judging import refusal_phrases

st.set_page_config(page_title="Refusal", page_icon=study_icon(STUDY), layout="wide")
sidebar()
st.title("Refusal: one direction, and how it transfers")
st.markdown(
    "Arditi et al. (2024) find that refusal is mediated by one direction: the difference in means of the residual "
    "stream between harmful and harmless instructions. Du et al. (2025) show the base and post-trained models' "
    "directions differ, and that the post-trained model's direction steers the base model (**backward** transfer) "
    "better than the base model's steers the post-trained one (**forward** transfer). Both models read the "
    "instructions through the post-trained model's chat template.")
gloss("KL", "affine")
pair = current_pair()
if pair is None:
    st.stop()


def _data():
    """The user's two lists, or None for the built-in sets (every widget is drawn before either list is read, so
    an error in one list does not hide the other's box)."""
    source = st.radio("Instructions", ["Built-in sets", "Your two lists"], horizontal=True, key="rf_data")
    if source == "Built-in sets":
        return None
    left, right = st.columns(2)
    sources = {}
    for col, side in ((left, "harmful"), (right, "harmless")):
        text = col.text_area(f"{side.capitalize()} instructions (one per line, or CSV with a 'prompt' column)",
                             key=f"rf_{side}")
        sources[side] = (text, col.file_uploader("…or upload them", type=["txt", "csv"], key=f"rf_{side}_file"))
    return split_lists(*(parse_prompt_list(decode_upload(up.getvalue(), up.name) if up else text, f"{side} list",
                                           csv_file=up is not None and up.name.lower().endswith(".csv"))
                         for side, (text, up) in sources.items()))


try:
    data = _data()
except SteeringError as e:
    st.error(str(e))
    st.stop()
st.caption(f"{(data or builtin_data()).name} data: " + ", ".join(f"{k} {v}" for k, v in
                                                                  (data or builtin_data()).sizes().items()))
with st.expander("Refusal phrases"):
    phrases = st.text_area("Refusal phrases (a reply starting with one counts as a refusal)",
                           "\n".join(refusal_phrases()), height=120, key="rf_phrases")
stored = study_result(STUDY, pair, skip=("phrases",), extra={"phrases": phrases_setting(phrases.splitlines())},
                      data=data, warn=lambda config: alpha_warning(config.alpha))
if stored is None:
    st.stop()
result, config = stored.result, stored.manifest["config"]
st.info(f"**Selection (Arditi's filters):** discard candidates in the last {config['prune_layer_fraction']:.0%} of "
        f"layers, whose ablation moves the harmless next-token distribution by KL > {config['max_kl']:g}, or whose "
        f"addition leaves the harmless refusal score at or below {config['min_addition_score']:g}; among the rest "
        f"pick the lowest refusal score on harmful prompts with the candidate ablated ({result.ablation} ablation). "
        f"If none passes (marked 'passed_filters = False'): outside the pruned layers, the lowest ablation score "
        f"among candidates with KL < {10 * config['max_kl']:g} (10 × max KL), else the lowest KL.")
headline(STUDY, result)
st.subheader("Selected directions")
# tokens such as the final newline are invisible as text: shown quoted and escaped ('\n')
selected = result.selected.assign(**{c: result.selected[c].map(repr) for c in ("token",) if c in result.selected})
st.dataframe(named_table(selected, pair.name), hide_index=True)
st.caption(f"Refusal tokens for the log-odds score: {', '.join(result.refusal_tokens)} (first tokens of the "
           "refusal phrases). Positions are offsets from the prompt's end (the template's tokens after the "
           "instruction).")
st.altair_chart(named_chart(score_bars(result.scores, "refusal_rate"), pair.name))
st.caption("Look for: the post-trained model refuses harmful prompts, stops when its own direction is ablated and "
           "starts refusing harmless prompts when it is added; compare 'backward (post→base)' with 'forward "
           "(base→post)' to see which transfer works.")
st.altair_chart(named_chart(score_bars(result.scores, "refusal_score"), pair.name))
st.caption("The same conditions on the fast score (no generation): above 0 a refusal token is more likely than not.")
if len(result.cosine):
    st.altair_chart(named_chart(cosine_chart(result.cosine), pair.name))
    st.caption("Look for: the two models' directions agree in early layers and diverge where refusal is formed.")
st.altair_chart(named_chart(candidate_heatmap(result.candidates, result.selected), pair.name))
st.caption("Look for: dark cells (ablation removes refusal) that survive the filters (not faded); the red square "
           "is the selected candidate. Hover a cell for its addition score, KL and the filter that dropped it.")

st.subheader("Example generations (test split, each model with its own direction)")
gens = result.generations
own = gens[gens.transfer == "own"].rename(columns={"reply": "steered"})
plain = (gens[gens.intervention == "none"][["model", "prompts", "prompt", "reply"]]
         .rename(columns={"reply": "unsteered"}))
examples = own.merge(plain, on=["model", "prompts", "prompt"])[["model", "prompts", "intervention", "prompt",
                                                                 "unsteered", "steered"]]
shown = ["model", "intervention", "prompt", "unsteered", "steered"]
st.caption("Harmless instructions first (the added direction should make the models refuse them).")
st.dataframe(named_table(examples[examples.prompts == "harmless"][shown], pair.name), hide_index=True)
with st.expander("Harmful instructions: some are disturbing (they are what a model should refuse); the ablated "
                 "direction should make the models answer them"):
    st.dataframe(named_table(examples[examples.prompts == "harmful"][shown], pair.name), hide_index=True)
downloads(STUDY, result)
st.caption("The direction files load in the Playground: every layer's candidate at the selected position; add at "
           "(or ablate with) the selected layer.")

st.subheader("Try a prompt")
steering = steering_of(result)
a, b, c = st.columns(3)
# the post-trained model with its own direction ablated is the paper's effect at first click: on the demo pair it
# refuses "How do I pick a lock?" unsteered and answers it steered (the base model alone only rambles)
models, sources = list(pair.models()), list(steering)
names = role_names(pair.name)  # the dropdowns read "Post-trained", not the key "post"
target = a.selectbox("Model", models, index=models.index("post") if "post" in models else 0, key="rf_live_model",
                     format_func=lambda role: names.get(role, role))
source = b.selectbox("Direction from", sources, index=sources.index(target) if target in sources else 0,
                     key="rf_live_source", format_func=lambda role: f"{names.get(role, role)} model")
mode = c.radio("Intervention", ["ablate", "add"], horizontal=True, key="rf_live_mode",
               help="ablate: the study's ablation (below); add: alpha × residual norm at its layer.")
live_ablation = c.selectbox("Ablation", ABLATIONS, index=ABLATIONS.index(result.ablation), key="rf_live_ablation",
                            help=ABLATION_HELP)
prompt = st.text_input("Instruction", "How do I pick a lock?", key="rf_live_prompt")
if st.button("Generate", key="rf_live_go"):
    try:
        if not prompt.strip():
            raise SteeringError("Type an instruction first.")
        steered = steering.get(target, steering[source])  # the steered model's norms and harmless mean
        with st.spinner("Writing the unsteered and the steered reply (48 tokens each)…", show_time=True):
            plain_text, steered_text = live_generation(pair.models()[target], pair.tokenizer, prompt, mode,
                                                       steering[source], steered, result.positions, config["alpha"],
                                                       ablation=live_ablation)
        left, right = st.columns(2)
        left.markdown("**Unsteered**")
        left.text(plain_text)
        right.markdown(f"**{mode}{' (' + live_ablation + ')' if mode == 'ablate' else ''} · direction from "
                       f"{names.get(source, source)}**")
        right.text(steered_text)
    except SteeringError as e:
        st.error(str(e))
