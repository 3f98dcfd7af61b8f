"""Knowledge storage: causal tracing / activation patching, base vs post-trained, and cross-model patching."""
import streamlit as st

import analyses.knowledge as kn
from analyses import knowledge_charts as charts
from analyses.knowledge_data import dataset_names
from pages.ui.pair_picker import current_pair, sidebar
from pages.ui.progress import run_with_progress
from steering import SteeringError

st.set_page_config(page_title="Knowledge", page_icon="🧭", layout="wide")
sidebar()
st.title("Knowledge storage: causal tracing")
st.caption("Put the clean run's hidden state back into a corrupted run, one (token, layer) cell at a time, and see "
           "how much of the clean output returns (0 = corrupted, 1 = clean). Du et al. 2025 find the maps of base "
           "and post-trained models alike: post-training does not move where facts are stored.")
pair = current_pair()
if pair is None:
    st.stop()

DEFAULT = kn.Config()


def _settings() -> kn.Config:
    c1, c2, c3, c4 = st.columns(4)
    corruption = c1.radio("Corruption", kn.CORRUPTIONS, key="kn_corruption", help="noise: Gaussian noise on the "
                          "subject's embeddings, scored by P(object) (ROME). paired: a false twin statement with "
                          "another subject, scored by P(TRUE) - P(FALSE) after a few-shot prompt (the paper).")
    dataset = c2.selectbox("Fact table", dataset_names(), key="kn_dataset")
    comps = c3.multiselect("Components", ["resid", "mlp", "attn"], ["resid", "mlp", "attn"], key="kn_components")
    window = c4.number_input("MLP/attention window (layers)", 1, 64, DEFAULT.window, key="kn_window")
    with st.expander("More settings"):
        d1, d2, d3, d4 = st.columns(4)
        n_items = d1.number_input("Items to average", 1, 200, DEFAULT.n_items, key="kn_n_items")
        n_screen = d1.number_input("Items to screen (at most)", 1, 1000, DEFAULT.n_screen, key="kn_n_screen")
        noise = d2.number_input("Noise (× std of subject embeddings)", 0.1, 20.0, DEFAULT.noise_scale, key="kn_noise")
        samples = d2.number_input("Noise samples", 1, 20, DEFAULT.n_samples, key="kn_samples")
        top_k = d3.number_input("Object among top k", 1, 1000, DEFAULT.top_k, key="kn_top_k")
        gap = d3.number_input("Min clean - corrupted", 0.0001, 1.0, DEFAULT.min_gap, format="%.4f", key="kn_gap")
        shots = d4.number_input("Few-shot examples (paired)", 0, 10, DEFAULT.n_shots, key="kn_shots")
        answers = d4.text_input("Answer words (paired)", DEFAULT.answers, key="kn_answers")
        cross = st.checkbox("Cross-model patching (residual stream)", DEFAULT.cross_model, key="kn_cross")
    return kn.Config(corruption=corruption, dataset=dataset, n_items=int(n_items), n_screen=int(n_screen),
                     components=",".join(comps), window=int(window), noise_scale=float(noise),
                     n_samples=int(samples), top_k=int(top_k), min_gap=float(gap), n_shots=int(shots),
                     answers=answers, cross_model=cross)


def _fact_input(config: kn.Config) -> dict | None:
    try:
        frame = kn.default_items(config, pair.tokenizer).head(config.n_screen)
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


def _show_fact(result: kn.Result) -> None:
    st.dataframe(result.kept, hide_index=True)
    st.caption("Clean and corrupted readouts per model; 'kept' says whether the model gets this item right "
               "(it is traced either way here).")
    item = int(result.grids["item"].iloc[0])
    for component in result.grids["component"].unique():
        cols = st.columns([2, 1]) if result.grids["model"].nunique() == 2 else [st.container()]
        cols[0].altair_chart(charts.fact_map(result.grids, item, component))
        if len(cols) == 2:
            cols[1].altair_chart(charts.fact_difference(result.grids, item, component))
    st.caption("Look for dark cells at the last subject token in early-middle layers (MLP) and at the last token "
               "in late layers (attention); red/blue on the right is where post-training changed the map.")


def _show_dataset(result: kn.Result) -> None:
    cols = st.columns(len(result.n_kept) + 1)
    for col, (role, n) in zip(cols, result.n_kept.items()):
        col.metric(f"Kept ({role})", f"{n} / {result.n_candidates}")
    cols[-1].metric("Traced", result.n_traced)
    for component in result.averages["component"].unique():
        cols = st.columns([2, 1]) if not result.comparison.empty else [st.container()]
        cols[0].altair_chart(charts.average_maps(result.averages, component))
        if len(cols) == 2:
            cols[1].altair_chart(charts.average_difference(result.averages, component))
    st.caption("Rows are ROME's token roles, averaged over the traced items. Alike maps and a pale difference "
               "mean post-training left the storage of facts where it was.")
    if not result.comparison.empty:
        st.dataframe(result.comparison, hide_index=True)
        st.caption("Correlation of the base and post-trained maps per component (role averages; every cell).")
    if not result.cross_averages.empty:
        st.altair_chart(charts.cross_maps(result.cross_averages))
        st.altair_chart(charts.recovery_bars(result.recovery))
        st.caption("The paper: base states patched into the post-trained model mostly work, the reverse often "
                   "does not. Compare each cross bar with the target's own self-patching.")
    st.dataframe(result.peaks, hide_index=True)
    cols = st.columns(4)
    for col, name in zip(cols, ["grids", "averages", "cross", "kept"]):
        col.download_button(f"{name}.csv", getattr(result, name).to_csv(index=False), f"knowledge_{name}.csv",
                            "text/csv", key=f"kn_dl_{name}")


config = _settings()
st.header("1 · One fact")
fact = _fact_input(config)
if fact is not None and st.button("Trace this fact", type="primary", key="kn_trace_fact"):
    run_with_progress("kn_fact", lambda p: kn.trace_fact(pair, fact, config, p))
if st.session_state.get("kn_fact") is not None:
    _show_fact(st.session_state["kn_fact"])

st.header("2 · Averaged over the dataset")
st.caption(f"Screens items {kn.SCREEN_CHUNK} at a time (up to {config.n_screen}) until {config.n_items} are right "
           "for every model, and traces those. Cost grows with tokens × layers × components × samples.")
if st.button("Run on the dataset", key="kn_run"):
    run_with_progress("kn_result", lambda p: kn.run(pair, config, p))
if st.session_state.get("kn_result") is not None:
    _show_dataset(st.session_state["kn_result"])
