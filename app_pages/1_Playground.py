"""Playground: compute directions, add them or project them out, at chosen positions, transfer them; four generations
side by side; export the steering as a card, or open one."""
import json
from dataclasses import replace

import pandas as pd
import streamlit as st

from analyses.contrast_sets import builtin_sets, parse_prompt_list
from app_pages.ui.calibration import calibration_panel
from app_pages.ui.card_opener import card_opener, show_card
from app_pages.ui.checked import Checks
from app_pages.ui.generations import four_columns
from app_pages.ui.icons import PLAYGROUND
from app_pages.ui.names import role_names
from app_pages.ui.pair_picker import current_pair, sidebar
from app_pages.ui.playground_charts import alignment_chart, cosine_chart, sweep_charts
from app_pages.ui.playground_outputs import downloads, steering_captions
from app_pages.ui.playground_run import RESULT_KEY, PlaygroundRun, run_from_card, run_from_form
from app_pages.ui.progress import PageProgress, stopped_notice
from app_pages.ui.steering_form import decoding_form, steering_buttons, steering_count, steering_form
from steering import SteeringError
from steering.composition import parse_alphas
from steering.generation import SteeringSpec, compare, format_prompts
from steering.playground import cosine_table, reproduce_snippet
from steering.sweep import alignment_per_layer, alpha_sweep

st.set_page_config(page_title="Playground", page_icon=PLAYGROUND, layout="wide")
sidebar()
st.title("Playground: steer, ablate, transfer")
pair = current_pair()
if pair is None:
    st.stop()
ROLE_NAMES = role_names(pair.name)  # "Base"/"Post-trained", or the stages' names on a pair of the demo road
roles = list(pair.models())
checks = Checks()  # a value out of range is refused where it is typed, and Generate waits for it
with st.expander("Open a steering card"):
    opened = card_opener(pair)  # before the fields it fills

st.header("1 · Prompt")
prompt_text = st.text_area("Prompts, one per line", "How do I bake bread?\nWrite a short poem about the sea.",
                           key="pg_prompts")
chat = st.toggle("Send through the chat template (the post-trained model's, for both models, as in the paper)",
                 value=True, key="pg_chat")

st.header("2 · Steering")
choices = []
if opened is not None:
    show_card(*opened)
else:
    n_steerings = steering_count()
    for i in range(n_steerings):
        with st.container(border=n_steerings > 1):
            if n_steerings > 1:
                st.subheader(f"Direction {i + 1}" + (" (applied after the one above)" if i else ""))
            choices.append(steering_form(pair, i, checks, ROLE_NAMES))
    steering_buttons(n_steerings)
decoding = decoding_form(checks, opened[1].decoding.top_p if opened else 0.95)


def generate(run: PlaygroundRun) -> PlaygroundRun:
    """The four generations, streamed into their columns, then the prompts' alignment with the first direction."""
    progress = PageProgress(stop_key=RESULT_KEY)
    live = st.empty()  # the four columns written token by token, replaced by the result below when done
    try:
        with live.container():
            slots = {k: slot.empty() for prompt in run.prompts
                     for k, slot in four_columns(prompt, roles, ROLE_NAMES).items()}
        run.table = compare(pair.models(), pair.tokenizer, run.prompts, run.composition, decoding=run.decoding,
                            chat=run.chat, references=run.references, progress=lambda done, total: progress(
                                done / total, f"Generating: base and post-trained, each with and without steering… "
                                              f"{done}/{total} tokens"),
                            on_text=lambda rows: [slots[(r["prompt"], r["model"], r["steered"])].text(r["text"])
                                                  for r in rows]).table
    finally:
        progress.clear()
        live.empty()
    with st.spinner("Reading how far each prompt already points along the direction…"):
        texts = format_prompts(pair.tokenizer, run.prompts, run.chat)
        run.alignment = pd.concat([alignment_per_layer(m, pair.tokenizer, texts, run.first.direction)
                                   .assign(model=ROLE_NAMES[r]) for r, m in pair.models().items()])
    return run


stopped_notice(RESULT_KEY)
source_errors = [c.error for c in choices if c.error]  # already shown: generating would add a misleading second
if st.button("Generate", type="primary", key="pg_generate", disabled=not checks.ok,
             help=None if checks.ok else " ".join(checks.problems)) and not source_errors:
    try:
        prompts = parse_prompt_list(prompt_text, "prompt list")
        run = (run_from_card(opened, prompts, chat, decoding) if opened else
               run_from_form(pair, choices, prompts, chat, decoding, ROLE_NAMES))
        st.session_state[RESULT_KEY] = generate(run)
    except SteeringError as e:
        st.error(str(e))

run: PlaygroundRun | None = st.session_state.get(RESULT_KEY)
if run is None:
    st.stop()

# Outputs --------------------------------------------------------------------------------------------------------
st.header("Four generations")
steering_captions(run, ROLE_NAMES)
texts_by_key = run.texts()
for prompt in run.prompts:
    for k, col in four_columns(prompt, roles, ROLE_NAMES).items():
        col.text(texts_by_key[k])

left, right = st.columns(2)
cos = cosine_table(run.directions)
with left:
    st.subheader("Base vs post-trained direction")
    if cos.empty:
        st.caption("Needs a direction computed from prompt lists in both models.")
    else:
        st.altair_chart(cosine_chart(cos), width="stretch")
        st.caption("Cosine similarity per layer: near 1 means post-training kept the direction, so it should transfer.")
with right:
    st.subheader("How much the prompt already points along it")
    st.altair_chart(alignment_chart(run.alignment), width="stretch")
    st.caption("Cosine of the last prompt token's residual with the (first) direction, per layer: where it is "
               "already high, adding more moves the model least.")

with st.expander("Reproduce in Python"):
    source = run.sources[0]
    if len(run.composition.steerings) == 1 and run.card_name is None:
        contrast = source.contrast
        st.caption("Save it as a .py file and run it with this project's Python (`.venv/bin/python file.py`) from "
                   "any folder: its first lines put the project on the import path.")
        st.code(reproduce_snippet(pair, run.prompts, run.chat, contrast, source.read_from or "post", run.first,
                                  run.decoding, builtin_set=contrast is not None and contrast.name in builtin_sets()),
                language="python")
    else:
        st.caption("Download the steering card below: its reproduce.py loads this pair and runs these steerings "
                   "again, with every file checked.")

with st.expander("Alpha sweep: where behaviour changes before the text falls apart"):
    scols = st.columns(3)
    # 0.05-0.2 x the residual norm is where the demo pair's text changes before it breaks; the post-trained model
    # is where the direction shows (it starts refusing)
    alphas_text = scols[0].text_input("Alphas", "0, 0.05, 0.1, 0.15, 0.2", key="pg_sweep_alphas")
    sweep_layers = scols[1].multiselect("Layers", list(range(pair.n_layers)), default=[run.first.layers[0]],
                                        key="pg_sweep_layers")
    sweep_role = scols[2].radio("Model", roles, index=roles.index("post") if "post" in roles else 0,
                                format_func=ROLE_NAMES.get, key="pg_sweep_role")
    st.caption("The sweep adds the first direction alone, at the first steering's positions.")
    if st.button("Run the sweep", key="pg_sweep"):
        try:
            alphas = parse_alphas(alphas_text)
            if not sweep_layers:
                raise SteeringError("Choose at least one layer.")
            direction = run.first.direction
            SteeringSpec(direction, "add", tuple(sweep_layers), max(alphas, key=abs)).validate(pair.models()[sweep_role])
            text = format_prompts(pair.tokenizer, run.prompts[:1], run.chat)[0]
            with st.spinner(f"{len(alphas) * len(sweep_layers)} steered generations in one batch…"):
                st.session_state["pg_sweep_result"] = alpha_sweep(
                    pair.models()[sweep_role], pair.tokenizer, text, direction, alphas, sweep_layers,
                    positions=run.first.positions, decoding=run.decoding)
        except SteeringError as e:
            st.error(str(e))
    sweep = st.session_state.get("pg_sweep_result")
    if sweep is not None:
        perplexity, distinct = sweep_charts(sweep)
        left_chart, right_chart = st.columns(2)
        left_chart.altair_chart(perplexity, width="stretch")
        right_chart.altair_chart(distinct, width="stretch")
        st.caption("Perplexity of the steered text under the unsteered model rises when the text stops being "
                   "language, but a loop ('siti siti siti…') has a low perplexity: the share of distinct word pairs "
                   "falls towards 0 there. The useful strength is where the text changes while perplexity is low "
                   "and the distinct share high.")
        st.dataframe(sweep, width="stretch")

calibrated = calibration_panel(pair, run.first.direction, ROLE_NAMES)
if calibrated is not None and run.calibration is None:  # the card carries the frontier and the pick it was made with
    run = replace(run, calibration=json.loads(calibrated.to_json()))
downloads(run, pair)
