"""Playground: compute a direction, add it or project it out, transfer it; four generations side by side."""
import json

import altair as alt
import pandas as pd
import streamlit as st

from analyses.contrast_sets import builtin_sets, decode_upload, parse_prompt_list
from analyses.study_directions import directions_for
from app_pages.ui.checked import Checks
from app_pages.ui.generations import four_columns, intervention_note
from app_pages.ui.icons import PLAYGROUND
from app_pages.ui.names import role_names
from app_pages.ui.pair_picker import current_pair, sidebar
from app_pages.ui.progress import PageProgress, stopped_notice
from steering import Direction, SteeringError
from steering.control_vector import from_control_vector, to_control_vector
from steering.direction_cache import DirectionCache
from steering.generation import (ABLATION_HELP, MAX_ALPHA, DecodingSettings, SteeringSpec,
                                 alpha_warning, compare, format_prompts)
from steering.model_view import bf16_matmul_is_fast
from steering.playground import (ContrastPrompts, cosine_table, directions_for_pair, mean_residuals, reference_prompts,
                                 reproduce_snippet)
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

# 1. Prompt ------------------------------------------------------------------------------------------------------
st.header("1 · Prompt")
prompt_text = st.text_area("Prompts, one per line", "How do I bake bread?\nWrite a short poem about the sea.",
                           key="pg_prompts")
chat = st.toggle("Send through the chat template (the post-trained model's, for both models, as in the paper)",
                 value=True, key="pg_chat")

# 2. Direction ---------------------------------------------------------------------------------------------------
st.header("2 · Direction")
SOURCES = ["Built-in contrast set", "Your two lists", "A direction file", "The direction cache",
           "From a study's result"]
NOTHING_CHOSEN = {"A direction file": "Upload a direction file first.",
                  "The direction cache": "Choose a cached direction first.",
                  "From a study's result": "Choose a study's direction first."}
source = st.radio("Where the direction comes from", SOURCES, horizontal=True, key="pg_source")


def contrast_lists_from_builtin_set() -> tuple:
    sets = builtin_sets()
    chosen = sets[st.selectbox("Contrast set", list(sets), key="pg_set")]
    st.caption(f"{chosen.about} {len(chosen.positive)} {chosen.positive_label} vs "
               f"{len(chosen.negative)} {chosen.negative_label} prompts.")
    return chosen.name, chosen.positive, chosen.negative, chosen.chat


def contrast_lists_typed() -> tuple:
    left, right = st.columns(2)
    pos_text = left.text_area("Positive side (one per line, or CSV with a 'prompt' column)", key="pg_pos")
    pos_file = left.file_uploader("…or upload it", type=["txt", "csv"], key="pg_pos_file")
    neg_text = right.text_area("Negative side", key="pg_neg")
    neg_file = right.file_uploader("…or upload it", type=["txt", "csv"], key="pg_neg_file")
    pos_src = decode_upload(pos_file.getvalue(), pos_file.name) if pos_file else pos_text
    neg_src = decode_upload(neg_file.getvalue(), neg_file.name) if neg_file else neg_text
    as_chat = st.toggle("Read these lists through the chat template (instructions)", key="pg_lists_chat")
    return ("custom", _prompts(pos_src, "positive list", pos_file), _prompts(neg_src, "negative list", neg_file),
            as_chat)


def _prompts(text: str, what: str, upload) -> list[str]:
    """A side's prompts; an uploaded .csv is read as a CSV (its first row a header), anything else by the list rule."""
    csv_file = upload is not None and upload.name.lower().endswith(".csv")
    return parse_prompt_list(text, what, csv_file=csv_file) if text.strip() else []


def described(name: str, direction: Direction) -> str:
    return name if direction.info.dataset == name else f"{name} (dataset {direction.info.dataset})"


def uploaded_direction() -> tuple[str, Direction] | None:
    upload = st.file_uploader("Direction file: a .safetensors written by this project, or a llama.cpp control "
                              "vector (.gguf)", type=["safetensors", "gguf"], key="pg_dir_file")
    if upload is None:
        return None
    data = upload.getvalue()
    direction = (from_control_vector(data, pair.n_layers, upload.name) if upload.name.lower().endswith(".gguf")
                 else Direction.from_bytes(data, upload.name))
    return described(upload.name, direction), direction


def cached_direction() -> tuple[str, Direction] | None:
    entries = [(p, m) for p, m in DirectionCache().entries() if m["n_layers"] == pair.n_layers
               and m["d_model"] == pair.d_model]
    if not entries:
        st.info(f"No cached direction has this pair's shape ({pair.n_layers} layers × {pair.d_model} dims) yet.")
    labels = [f"{m['model']} · {m['dataset']} · position {m['position']} · {m['created_at']}" for _, m in entries]
    pick = st.selectbox("Cached direction (same shape as this pair)", range(len(entries)),
                        format_func=lambda i: labels[i], key="pg_cached")
    return None if pick is None else (labels[pick], Direction.load(entries[pick][0]))


def study_direction() -> tuple[str, Direction] | None:
    found = directions_for(pair)
    if not found:
        st.info("No study has stored a result with a direction for this pair yet: run one on its page, or "
                "`python -m analyses <study>`.")
    pick = st.selectbox("Direction from a study's stored result (study · field · model · date)", range(len(found)),
                        format_func=lambda i: found[i][0], key="pg_study_direction")
    return None if pick is None else (described(*found[pick]), found[pick][1])


contrast: ContrastPrompts | None = None
loaded: tuple[str, Direction] | None = None  # (what it is, the direction) when it is not computed here
source_error: str | None = None
try:
    if source in NOTHING_CHOSEN:
        loaded = {"A direction file": uploaded_direction, "The direction cache": cached_direction,
                  "From a study's result": study_direction}[source]()
    else:
        lists = contrast_lists_from_builtin_set() if source == SOURCES[0] else contrast_lists_typed()
        position = int(checks.number(st, "Token position, counted from the end of the prompt (-1 = last token)",
                                     -1, lo=-10_000, hi=-1, step=1, key="pg_position", what="The token position"))
        name, positive, negative, list_chat = lists
        contrast = ContrastPrompts(name, tuple(positive), tuple(negative), list_chat, position)
except SteeringError as e:
    source_error = str(e)
    st.error(source_error)
read_from = st.radio("Read the direction from", roles, index=roles.index("post") if "post" in roles else 0,
                     format_func=ROLE_NAMES.get, horizontal=True, key="pg_read_from", disabled=contrast is None,
                     help="The post-trained model's own direction is the default; pick the other model to transfer "
                          "a direction across the pair.")

# 3. Intervention ------------------------------------------------------------------------------------------------
st.header("3 · Intervention")
cols = st.columns([1, 2, 1, 1])
mode = cols[0].radio("Mode", ["add", "ablate"], key="pg_mode",
                     help="add: alpha × unit direction × typical residual norm. ablate: remove what the model holds "
                          "along the direction, in one of two ways (below).")
# affine by default: on the demo pair Arditi's projection turns every text into one repeated token (the refusal
# study measured a harmless KL of 10-40 nats), while affine keeps it readable
ablation = cols[0].radio("Ablation", list(ABLATION_HELP), key="pg_ablation", disabled=mode != "ablate",
                         help=" ".join(ABLATION_HELP.values()))
if mode == "ablate":
    cols[0].caption(ABLATION_HELP[ablation])
n = pair.n_layers
# one layer by default (a range slider with equal ends reads "9 9"); a range or all layers on request
span = cols[1].radio("Layers", ["one", "a range", "all"], horizontal=True, key="pg_layer_span",
                     help="add: where the vector is added. ablate, affine: where the component is set; ablate, "
                          "project: whose layer's vector is projected out at every layer.")
if span == "a range":
    first, last = cols[1].select_slider("Layers, first to last", options=list(range(n)),
                                        value=(n // 2, min(n - 1, n // 2 + 2)), key="pg_layers")
else:
    first = last = cols[1].select_slider("Layer", options=list(range(n)), value=n // 2, key="pg_layer",
                                         disabled=span == "all")
all_layers = span == "all"
alpha = checks.number(cols[2], "alpha (× residual norm)", 0.1, lo=-MAX_ALPHA, hi=MAX_ALPHA, step=0.05,
                      key="pg_alpha", disabled=mode == "ablate", what="alpha", check=mode == "add")
if mode == "add" and checks.ok and alpha_warning(alpha):
    cols[2].warning(alpha_warning(alpha))
positions = cols[3].radio("Positions", ["all", "prompt", "generated"], key="pg_positions",
                          format_func={"all": "prompt and generated", "prompt": "prompt only",
                                       "generated": "generated only"}.get)
layers = tuple(range(n)) if all_layers else tuple(range(first, last + 1))

# 4. Decoding ----------------------------------------------------------------------------------------------------
BF16_LABEL = "Faster logits in bfloat16 (tokens may differ from float32)"
BF16_HELP = ("Most of a decoding step is the 262k-token unembedding; this processor multiplies bfloat16 in hardware, "
             "so computing the logits in bfloat16 makes a step faster. Rounding to bfloat16 can change which token "
             "wins a close call, so the texts may differ from the float32 ones. Off where the processor lacks it.")
with st.expander("Decoding"):
    dcols = st.columns(4)
    greedy = dcols[0].radio("Decoding", ["greedy", "sampling"], key="pg_decoding") == "greedy"
    seed = int(dcols[1].number_input("Seed", value=0, step=1, key="pg_seed", disabled=greedy))
    temperature = checks.number(dcols[2], "Temperature", 0.8, lo=0.05, hi=2.0, key="pg_temp", disabled=greedy)
    max_new = int(checks.number(dcols[3], "Max new tokens", 32, lo=1, hi=256, step=1, key="pg_max_new"))
    bf16 = st.checkbox(BF16_LABEL, key="pg_bf16", disabled=not bf16_matmul_is_fast(), help=BF16_HELP)
decoding = DecodingSettings(max_new_tokens=max_new, greedy=greedy, seed=seed, temperature=temperature,
                            unembedding="bfloat16" if bf16 and bf16_matmul_is_fast() else "plain")


def get_directions() -> dict[str, Direction]:
    if contrast is None:
        if loaded is None:
            raise SteeringError(NOTHING_CHOSEN[source])
        return {"loaded": loaded[1]}
    bar = st.progress(0.0, text="Reading the residual stream…")
    found = directions_for_pair(pair, contrast, progress=lambda done, total: bar.progress(done / total,
                                text=f"Reading the residual stream… {done}/{total} prompts"))
    bar.empty()
    return found


stopped_notice("pg_result")
# A broken source already shows its error above; generating would only add a second, misleading one.
if st.button("Generate", type="primary", key="pg_generate", disabled=not checks.ok,
             help=None if checks.ok else " ".join(checks.problems)) and source_error is None:
    try:
        prompts = parse_prompt_list(prompt_text, "prompt list")
        directions = get_directions()
        direction = directions.get(read_from, next(iter(directions.values())))
        spec = SteeringSpec(direction, mode, layers, float(alpha), positions, ablation=ablation)
        references, reference_label = None, None
        if mode == "ablate" and ablation == "affine":
            with st.spinner("Reading each model's mean residual on the reference prompts…"):
                reference_texts, reference_position = reference_prompts(pair, contrast)
                references = mean_residuals(pair, reference_texts, reference_position)
            reference_label = (f"the first {len(reference_texts)} {contrast.name.split(' vs ')[-1]} prompts"
                               if contrast is not None else f"{len(reference_texts)} harmless instructions")
        gen_bar = PageProgress(stop_key="pg_result")
        live = st.empty()  # the four columns written token by token, replaced by the result below when done
        try:
            with live.container():
                slots = {key: slot.empty() for prompt in prompts for key, slot in four_columns(prompt, roles, ROLE_NAMES).items()}
            table = compare(pair.models(), pair.tokenizer, prompts, spec, decoding=decoding, chat=chat,
                            progress=lambda done, total: gen_bar(done / total, (
                                f"Generating: base and post-trained, each with and without steering… "
                                f"{done}/{total} tokens")), references=references,
                            on_text=lambda rows: [slots[(r["prompt"], r["model"], r["steered"])].text(r["text"])
                                                  for r in rows]).table
        finally:
            gen_bar.clear()
            live.empty()
        with st.spinner("Reading how far each prompt already points along the direction…"):
            texts = format_prompts(pair.tokenizer, prompts, chat)
            alignment = pd.concat([alignment_per_layer(m, pair.tokenizer, texts, direction).assign(model=ROLE_NAMES[r])
                                   for r, m in pair.models().items()])
        st.session_state["pg_result"] = dict(prompts=prompts, directions=directions, direction=direction, spec=spec,
                                             table=table, chat=chat, decoding=decoding, contrast=contrast,
                                             source_role=read_from, alignment=alignment,
                                             direction_label=loaded[0] if contrast is None else None,
                                             reference_label=reference_label)
    except SteeringError as e:
        st.error(str(e))

result = st.session_state.get("pg_result")
if result is None:
    st.stop()

# Outputs --------------------------------------------------------------------------------------------------------
st.header("Four generations")
table, spec = result["table"], result["spec"]
source_note = (f" {result['direction_label']}" if result.get("direction_label") else
               f" from {result['contrast'].name} read from the {ROLE_NAMES[result['source_role']].lower()} model")
norms = result["direction"].resid_norms
norm_note = (f" Typical residual norm at layer {spec.layers[0]}: {float(norms[spec.layers[0]]):,.0f}, so alpha "
             f"{spec.alpha:g} adds a vector of norm {spec.alpha * float(norms[spec.layers[0]]):,.0f} there."
             if norms is not None and spec.mode == "add" else "")


st.caption(f"{intervention_note(spec, result.get('reference_label'))} · positions: {spec.positions} · direction"
           f"{source_note}. Steering the other model than the one the direction was read from is a transfer."
           f"{norm_note}")
texts_by_key = dict(zip(zip(table.prompt, table.model, table.steered), table.text))
for prompt in result["prompts"]:
    for key, col in four_columns(prompt, roles, ROLE_NAMES).items():
        col.text(texts_by_key[key])

left, right = st.columns(2)
cos = cosine_table(result["directions"])
with left:
    st.subheader("Base vs post-trained direction")
    if cos.empty:
        st.caption("Needs a direction computed from prompt lists in both models.")
    else:
        st.altair_chart(alt.Chart(cos).mark_line(point=True).encode(
            x=alt.X("layer:O"), y=alt.Y("cosine:Q", scale=alt.Scale(domain=[-1, 1]))), width="stretch")
        st.caption("Cosine similarity per layer: near 1 means post-training kept the direction, so it should transfer.")
with right:
    st.subheader("How much the prompt already points along it")
    st.altair_chart(alt.Chart(result["alignment"]).mark_line(point=True).encode(x="layer:O", y="cosine:Q",
                    color="model:N"), width="stretch")
    st.caption("Cosine of the last prompt token's residual with the direction, per layer: where it is already "
               "high, adding more moves the model least.")

with st.expander("Reproduce in Python"):
    builtin = result["contrast"] is not None and result["contrast"].name in builtin_sets()
    st.caption("Save it as a .py file and run it with this project's Python (`.venv/bin/python file.py`) from "
               "any folder: its first lines put the project on the import path.")
    st.code(reproduce_snippet(pair, result["prompts"], result["chat"], result["contrast"], result["source_role"],
                              spec, result["decoding"], builtin_set=builtin), language="python")

with st.expander("Alpha sweep: where behaviour changes before the text falls apart"):
    scols = st.columns(3)
    # 0.05-0.2 x the residual norm is where the demo pair's text changes before it breaks; the post-trained model
    # is where the direction shows (it starts refusing)
    alphas_text = scols[0].text_input("Alphas", "0, 0.05, 0.1, 0.15, 0.2", key="pg_sweep_alphas")
    sweep_layers = scols[1].multiselect("Layers", list(range(n)), default=[spec.layers[0]], key="pg_sweep_layers")
    sweep_role = scols[2].radio("Model", roles, index=roles.index("post") if "post" in roles else 0,
                                format_func=ROLE_NAMES.get, key="pg_sweep_role")
    if st.button("Run the sweep", key="pg_sweep"):
        try:
            alphas = [float(a) for a in alphas_text.replace(";", ",").split(",") if a.strip()]
            if not sweep_layers or not alphas:
                raise SteeringError("Give at least one alpha and one layer.")
            SteeringSpec(result["direction"], "add", tuple(sweep_layers), max(alphas, key=abs)).validate(pair.models()[sweep_role])
            text = format_prompts(pair.tokenizer, result["prompts"][:1], result["chat"])[0]
            with st.spinner(f"{len(alphas) * len(sweep_layers)} steered generations in one batch…"):
                st.session_state["pg_sweep_result"] = alpha_sweep(
                    pair.models()[sweep_role], pair.tokenizer, text, result["direction"], alphas, sweep_layers,
                    positions=spec.positions, decoding=result["decoding"])
        except SteeringError as e:  # first: a named error (a NaN alpha, say) is also a ValueError
            st.error(str(e))
        except ValueError:
            st.error(f"Alphas must be numbers separated by commas, not {alphas_text!r}.")
    sweep = st.session_state.get("pg_sweep_result")
    if sweep is not None:
        sweep_chart = alt.Chart(sweep).mark_line(point=True).encode(
            x="alpha:Q", color="layer:N", tooltip=["alpha", "layer", "perplexity", "distinct_2", "text"])
        left_chart, right_chart = st.columns(2)
        left_chart.altair_chart(sweep_chart.encode(y=alt.Y("perplexity:Q", scale=alt.Scale(type="log"))).properties(
            title="Perplexity under the unsteered model"), width="stretch")
        right_chart.altair_chart(sweep_chart.encode(y=alt.Y("distinct_2:Q", title="distinct word pairs",
                                                            scale=alt.Scale(domain=[0, 1]))).properties(
            title="Share of distinct word pairs"), width="stretch")
        st.caption("Perplexity of the steered text under the unsteered model rises when the text stops being "
                   "language, but a loop ('siti siti siti…') has a low perplexity: the share of distinct word pairs "
                   "falls towards 0 there. The useful strength is where the text changes while perplexity is low "
                   "and the distinct share high.")
        st.dataframe(sweep, width="stretch")

st.subheader("Downloads")
dcols = st.columns(3)
direction = result["direction"]
dcols[0].download_button("Direction (.safetensors)", direction.to_bytes(), "direction.safetensors",
                         help="The JSON metadata is inside the file too.")
dcols[0].download_button("Its JSON sidecar", json.dumps(direction.metadata(), indent=2) + "\n", "direction.json")
if spec.mode != "add":
    dcols[1].caption("Control vectors are for 'add'.")
else:
    try:
        control_vector = to_control_vector(direction, list(spec.layers), spec.alpha, pair.base.config.model_type)
        dcols[1].download_button("llama.cpp control vector (.gguf)", control_vector, "control_vector.gguf",
                                 help="direction.N in llama.cpp is added to the output of its layer N, i.e. our "
                                      "resid_pre.(N+1); scaled by the current alpha.")
    except SteeringError as e:
        dcols[1].caption(f"No control vector: {e}")
generations = {"settings": {"pair": pair.name, "mode": spec.mode, "layers": list(spec.layers), "alpha": spec.alpha,
                            "positions": spec.positions, "chat": result["chat"], **result["decoding"].__dict__,
                            "direction": direction.metadata()},
               "generations": result["table"].to_dict(orient="records")}
dcols[2].download_button("Generations with settings (.json)", json.dumps(generations, indent=2), "generations.json")
