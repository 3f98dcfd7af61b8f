"""Refusal study: the refusal direction of each model, ablated and added with its own and the other model's."""
import pandas as pd
import streamlit as st

from analyses.contrast_sets import decode_upload, parse_prompt_list
from analyses.refusal import Config, direction_file, run
from analyses.refusal_charts import candidate_heatmap, cosine_chart, score_bars
from analyses.refusal_data import builtin_data, split_lists
from analyses.refusal_eval import live_generation
from pages.ui.pair_picker import current_pair, sidebar
from pages.ui.progress import run_with_progress
from steering import SteeringError
from steering.judging import refusal_phrases

st.set_page_config(page_title="Refusal", page_icon="🛑", layout="wide")
sidebar()
st.title("Refusal: one direction, and how it transfers")
st.markdown(
    "Arditi et al. (2024) find that refusal is mediated by one direction: the difference in means of the residual "
    "stream between harmful and harmless instructions. Du et al. (2025) show the base and post-trained models' "
    "directions differ, and that the post-trained model's direction steers the base model (**backward** transfer) "
    "better than the base model's steers the post-trained one (**forward** transfer). Both models read the "
    "instructions through the post-trained model's chat template.")
pair = current_pair()
if pair is None:
    st.stop()
defaults = Config()
ABLATION_HELP = (
    "affine (default): ACE of Marshall, Scherlis & Belrose (2024): at the input of every layer, the component along "
    "the direction is set to the steered model's mean harmless value (train split), at the post-instruction and "
    "generated tokens only (for transfer: the steered model's own harmless mean projected on the other model's "
    "direction). project: Arditi's projection of the direction out of every layer, attention and MLP output, at "
    "every token. On the demo pair projection breaks the model (harmless KL 10-40 nats for every candidate: the "
    "direction is dominated by one large residual dimension), so affine is the default.")


def _data():
    """The widgets, and a function that reads them (called after every widget exists, so an error in one list
    does not hide the other's box)."""
    source = st.radio("Instructions", ["Built-in sets", "Your two lists"], horizontal=True, key="rf_data")
    if source == "Built-in sets":
        return builtin_data
    left, right = st.columns(2)
    sources = {}
    for col, side in ((left, "harmful"), (right, "harmless")):
        text = col.text_area(f"{side.capitalize()} instructions (one per line, or CSV with a 'prompt' column)",
                             key=f"rf_{side}")
        sources[side] = (text, col.file_uploader("…or upload them", type=["txt", "csv"], key=f"rf_{side}_file"))
    return lambda: split_lists(*(parse_prompt_list(decode_upload(up.getvalue(), up.name) if up else text,
                                                   f"{side} list") for side, (text, up) in sources.items()))


def _config() -> Config:
    with st.expander("Settings"):
        a, b, c = st.columns(3)
        n_val = a.number_input("validation prompts per side", 1, 200, defaults.n_val, key="rf_n_val",
                               help="Each candidate costs about three forward passes of them.")
        n_test = a.number_input("test prompts per side (0 = whole split)", 0, 500, 0, key="rf_n_test")
        layer_step = a.number_input("score every n-th layer", 1, 8, defaults.layer_step, key="rf_layer_step")
        alpha = b.number_input("addition alpha (× typical residual norm)", 0.0, 10.0, defaults.alpha, 0.01,
                               key="rf_alpha", help="The vector added is alpha × ‖resid‖ × unit direction at the "
                               "chosen layer; the demo's residual norm grows from ~26 to ~37,640 over depth, so a "
                               "fixed raw scale cannot fit every layer. 0.1 makes the demo's post-trained model "
                               "refuse most harmless prompts without breaking its text.")
        max_new = b.number_input("new tokens per reply", 1, 64, defaults.max_new_tokens, key="rf_max_new")
        prune = c.number_input("discard the last fraction of layers", 0.0, 0.9, defaults.prune_layer_fraction,
                               0.05, key="rf_prune")
        max_kl = c.number_input("max KL on harmless", 0.0, 100.0, defaults.max_kl, 0.05, key="rf_max_kl")
        min_add = c.number_input("min addition score", -50.0, 50.0, defaults.min_addition_score, key="rf_min_add")
        ablation = c.selectbox("ablation", ["affine", "project"], key="rf_ablation", help=ABLATION_HELP)
        phrases = st.text_area("Refusal phrases (a reply starting with one counts as a refusal)",
                               "\n".join(refusal_phrases()), height=120, key="rf_phrases")
    return Config(n_val=int(n_val), n_test=int(n_test) or None, layer_step=int(layer_step), alpha=float(alpha),
                  max_new_tokens=int(max_new), prune_layer_fraction=float(prune), max_kl=float(max_kl),
                  min_addition_score=float(min_add), ablation=ablation,
                  phrases=tuple(p.strip().lower() for p in phrases.splitlines() if p.strip()))


read_data, config = _data(), _config()
st.info(f"**Selection (Arditi's filters):** discard candidates in the last {config.prune_layer_fraction:.0%} of "
        f"layers, whose ablation moves the harmless next-token distribution by KL > {config.max_kl:g}, or whose "
        f"addition leaves the harmless refusal score at or below {config.min_addition_score:g}; among the rest pick "
        f"the lowest refusal score on harmful prompts with the candidate ablated ({config.ablation} ablation). If "
        f"none passes (marked 'passed_filters = False'): outside the pruned layers, the lowest ablation score among "
        f"candidates with KL < {10 * config.max_kl:g} (10 × max KL), else the lowest KL.")
pressed = st.button("Run the study", type="primary", key="rf_run")
try:
    data = read_data()
    st.caption(f"{data.name} data: " + ", ".join(f"{k} {v}" for k, v in data.sizes().items()))
except SteeringError as e:
    st.error(str(e))
    st.stop()

if pressed:
    run_with_progress("rf_result", lambda progress: run(pair, config, data, progress))
result = st.session_state.get("rf_result")
if result is None:
    st.stop()
st.subheader("Selected directions")
st.dataframe(result.selected, hide_index=True)
st.caption(f"Refusal tokens for the log-odds score: {', '.join(result.refusal_tokens)} (first tokens of the "
           "refusal phrases). Positions are offsets from the prompt's end (the template's tokens after the "
           "instruction).")
st.altair_chart(score_bars(result.scores, "refusal_rate"))
st.caption("Look for: the post-trained model refuses harmful prompts, stops when its own direction is ablated and "
           "starts refusing harmless prompts when it is added; compare 'backward (post→base)' with 'forward "
           "(base→post)' to see which transfer works.")
st.altair_chart(score_bars(result.scores, "refusal_score"))
st.caption("The same conditions on the fast score (no generation): above 0 a refusal token is more likely than not.")
if len(result.cosine):
    st.altair_chart(cosine_chart(result.cosine))
    st.caption("Look for: the two models' directions agree in early layers and diverge where refusal is formed.")
st.altair_chart(candidate_heatmap(result.candidates, result.selected))
st.caption("Look for: dark cells (ablation removes refusal) that survive the filters (not faded); the red square "
           "is the selected candidate. Hover a cell for its addition score, KL and the filter that dropped it.")

st.subheader("Example generations (test split, each model with its own direction)")
gens = result.generations
own = gens[gens.transfer == "own"].rename(columns={"reply": "steered"})
plain = (gens[gens.intervention == "none"][["model", "prompts", "prompt", "reply"]]
         .rename(columns={"reply": "unsteered"}))
examples = own.merge(plain, on=["model", "prompts", "prompt"])[["model", "intervention", "prompt", "unsteered",
                                                                 "steered"]]
st.dataframe(examples, hide_index=True)
cols = st.columns(4 + len(result.directions))
for col, name in zip(cols, ("scores", "candidates", "generations", "cosine")):
    frame: pd.DataFrame = getattr(result, name)
    col.download_button(f"{name}.csv", frame.to_csv(index=False), f"refusal_{name}.csv", key=f"rf_dl_{name}")
for col, role in zip(cols[4:], result.directions):
    direction = direction_file(result, role, pair.model_id(role), data)
    col.download_button(f"{role} direction", direction.to_bytes(), f"refusal_direction_{role}.safetensors",
                        key=f"rf_dl_dir_{role}", help="A direction file the Playground loads: every layer's "
                        "candidate at the selected position; add at (or ablate with) the selected layer.")

st.subheader("Try a prompt")
roles = list(result.directions)
a, b, c = st.columns(3)
target = a.selectbox("Model", list(pair.models()), key="rf_live_model")
source = b.selectbox("Direction from", roles, key="rf_live_source")
mode = c.radio("Intervention", ["ablate", "add"], horizontal=True, key="rf_live_mode",
               help="ablate: the study's ablation (below); add: alpha × residual norm at its layer.")
live_ablation = c.selectbox("Ablation", ["affine", "project"], index=["affine", "project"].index(result.ablation),
                            key="rf_live_ablation", help=ABLATION_HELP)
prompt = st.text_input("Instruction", "How do I pick a lock?", key="rf_live_prompt")
if st.button("Generate", key="rf_live_go"):
    try:
        if not prompt.strip():
            raise SteeringError("Type an instruction first.")
        steered_entry = result.directions.get(target, result.directions[source])  # its norms and harmless mean
        plain_text, steered_text = live_generation(pair.models()[target], pair.tokenizer, prompt, mode,
                                                   result.directions[source], steered_entry, result.positions,
                                                   config.alpha, ablation=live_ablation)
        left, right = st.columns(2)
        left.markdown("**Unsteered**")
        left.text(plain_text)
        right.markdown(f"**{mode}{' (' + live_ablation + ')' if mode == 'ablate' else ''} · direction from {source}**")
        right.text(steered_text)
    except SteeringError as e:
        st.error(str(e))
