"""Knowledge storage: causal tracing / activation patching, base vs post-trained, and cross-model patching."""
from dataclasses import fields

import streamlit as st

from analyses.knowledge import (COMPONENTS, CORRUPTIONS, SCREEN_CHUNK, STUDY, Config, Result, charts, dataset_names,
                                trace_fact)
from app_pages.ui.glossary import gloss
from app_pages.ui.icons import study_icon
from app_pages.ui.names import named_chart, named_table
from app_pages.ui.pair_picker import current_pair, sidebar
from app_pages.ui.progress import run_with_progress, stopped_notice
from app_pages.ui.study_page import config_from, downloads, headline, study_result
from steering import SteeringError

DEFAULT = Config()
HELP = {f.name: f.metadata["help"] for f in fields(Config)}

st.set_page_config(page_title="Knowledge", page_icon=study_icon(STUDY), layout="wide")
sidebar()
st.title("Knowledge storage: causal tracing")
st.caption("Put the clean run's hidden state back into a corrupted run, one (token, layer) cell at a time, and see "
           "how much of the clean output returns (0 = corrupted, 1 = clean). Du et al. 2025 find the maps of base "
           "and post-trained models alike: post-training does not move where facts are stored.")
gloss("resid", "overshoot")
pair = current_pair()
if pair is None:
    st.stop()


def _top_settings() -> dict:
    """The settings drawn above the form: they apply at once, to the dataset and to the one fact."""
    c1, c2, c3, c4 = st.columns([2, 2, 3, 2])  # the components field holds three chips: "attn" was cut at 1/4
    corruption = c1.radio("Corruption", CORRUPTIONS, index=CORRUPTIONS.index(DEFAULT.corruption),
                          key="knowledge_corruption", help=HELP["corruption"])
    dataset = c2.selectbox("Fact table", dataset_names(), index=dataset_names().index(DEFAULT.dataset),
                           key="knowledge_dataset")
    comps = c3.multiselect("Components", COMPONENTS, DEFAULT.components.split(","), key="knowledge_components",
                           help=HELP["components"])
    window = c4.number_input("MLP/attention window (layers)", 1, 64, DEFAULT.window, key="knowledge_window",
                             help=HELP["window"])
    return {"corruption": corruption, "dataset": dataset, "components": ",".join(comps), "window": int(window)}


def _config(top: dict) -> Config | None:
    """The settings as the form last applied them (its widgets are keyed knowledge_<field>), with the top row's."""
    values = {f.name: st.session_state[f"knowledge_{f.name}"] for f in fields(Config)
              if f.name not in top and f"knowledge_{f.name}" in st.session_state}
    try:
        return config_from(STUDY, {**values, **top})
    except (SteeringError, TypeError, ValueError) as e:
        st.error(str(e))
        return None


def _show_dataset(result: Result) -> None:
    cols = st.columns(len(result.n_kept))
    for col, (role, n) in zip(cols, result.n_kept.items()):
        col.metric(f"Kept ({role})", f"{n} / {result.n_candidates}")
    for component in result.averages["component"].unique():  # one map per row: side by side they were cut
        st.altair_chart(named_chart(charts.average_maps(result.averages, component), pair.name), width="content")
        if not result.comparison.empty:
            st.altair_chart(named_chart(charts.average_difference(result.averages, component), pair.name),
                            width="content")
    st.caption("Rows are ROME's token roles, averaged over the traced items. Alike maps and a pale difference "
               "mean post-training left the storage of facts where it was.")
    if not result.comparison.empty:
        st.dataframe(named_table(result.comparison, pair.name), hide_index=True)
        st.caption("Correlation of the base and post-trained maps per component (role averages; every cell).")
    if not result.cross_averages.empty:
        st.altair_chart(named_chart(charts.cross_maps(result.cross_averages), pair.name), width="content")
        st.altair_chart(named_chart(charts.recovery_bars(result.recovery), pair.name))
        st.caption("The paper: base states patched into the post-trained model mostly work, the reverse often "
                   "does not. Compare each cross bar with the target's own self-patching.")
    st.dataframe(named_table(result.peaks, pair.name), hide_index=True)


def _fact_input(config: Config) -> dict | None:
    try:
        frame = STUDY.default_data(pair, config).head(config.n_screen)
    except SteeringError as e:
        st.error(str(e))
        return None
    typed = config.corruption == "noise" and st.toggle("Type my own fact", key="kn_typed")
    if typed:
        c1, c2, c3 = st.columns([3, 1, 1])
        fact = {"prompt": c1.text_input("Prompt", "The city of Paris is in the country of", key="kn_prompt"),
                "subject": c2.text_input("Subject (in the prompt)", "Paris", key="kn_subject"),
                "object": " " + c3.text_input("Object", "France", key="kn_object").strip()}
    else:
        labels = [str(r.get("prompt", r.get("true_statement"))) for r in frame.to_dict("records")]
        pick = st.selectbox("Fact", range(len(labels)), format_func=lambda i: labels[i], key="kn_pick")
        fact = frame.iloc[int(pick)].to_dict()
    text = fact.get("prompt", fact.get("true_statement", ""))
    subject = fact.get("subject", "")
    if subject and subject in text:
        st.markdown("Subject highlighted: " + text.replace(subject, f":orange-background[**{subject}**]", 1))
    return fact


def _show_fact(result: Result) -> None:
    st.dataframe(named_table(result.kept, pair.name), hide_index=True)
    st.caption("Clean and corrupted readouts per model; 'kept' says whether the model gets this item right "
               "(it is traced either way here).")
    item = int(result.grids["item"].iloc[0])
    for component in result.grids["component"].unique():
        st.altair_chart(named_chart(charts.fact_map(result.grids, item, component), pair.name), width="content")
        if result.grids["model"].nunique() == 2:
            st.altair_chart(named_chart(charts.fact_difference(result.grids, item, component), pair.name),
                            width="content")
    st.caption("Look for dark cells at the last subject token in early-middle layers (MLP) and at the last token "
               "in late layers (attention); red/blue on the right is where post-training changed the map.")


top = _top_settings()
st.header("1 · Averaged over the dataset")
st.caption(f"Screens items {SCREEN_CHUNK} at a time (up to the settings' 'Items to screen') until 'Items to "
           "average' are right for every model, and traces those. Cost grows with tokens × layers × components × "
           "samples.")
stored = study_result(STUDY, pair, skip=tuple(top), extra=top)
if stored is not None:
    headline(STUDY, stored.result)
    _show_dataset(stored.result)
    downloads(STUDY, stored.result)

st.header("2 · One fact")
st.caption("Traced whether or not the models get it right, with the settings above (those under Settings as "
           "last applied with Run).")
config = _config(top)
fact = _fact_input(config) if config is not None else None
stopped_notice("kn_fact")
if fact is not None and st.button("Trace this fact", type="primary", key="kn_trace_fact"):
    run_with_progress("kn_fact", lambda p: trace_fact(pair, fact, config, p))
if st.session_state.get("kn_fact") is not None:
    _show_fact(st.session_state["kn_fact"])
