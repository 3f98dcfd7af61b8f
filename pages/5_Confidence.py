"""Confidence: entropy neurons (weights, overlap, ablation) and calibration, base vs post-trained."""
import streamlit as st

from analyses import confidence_charts as charts
from analyses.confidence import Config, run
from pages.ui.pair_picker import current_pair, sidebar
from pages.ui.progress import run_with_progress

st.set_page_config(page_title="Confidence", page_icon="🎚️", layout="wide")
sidebar()
st.title("Confidence: entropy neurons and calibration")
st.caption("Entropy neurons (Stolfo et al. 2024) sit in the last MLP layer with a large output weight that the "
           "unembedding hardly reads: they change confidence through the final norm's scale. Du et al. 2025 find "
           "them much the same in base and post-trained models, so they do not explain why the two differ in "
           "confidence.")
pair = current_pair()
if pair is None:
    st.stop()

with st.form("cf_form"):
    c1, c2, c3, c4 = st.columns(4)
    layer = c1.number_input("MLP layer (-1 = last)", value=-1, step=1, key="cf_layer")
    null_dims = c2.number_input("Null-space dimensions (bottom singular vectors)", min_value=1, value=10,
                                key="cf_null_dims")
    fraction = c3.slider("Candidates from the top fraction by norm", 0.05, 1.0, 0.25, 0.05, key="cf_fraction")
    n_candidates = c4.number_input("…the N with the lowest logit variance", min_value=1, value=10,
                                   key="cf_n_candidates")
    c5, c6, c7, c8 = st.columns(4)
    n_random = c5.number_input("Random control neurons", min_value=0, value=5, key="cf_n_random")
    max_tokens = c6.number_input("Tokens of held-out text for ablation", min_value=2, value=512, step=256,
                                 key="cf_max_tokens")
    n_questions = c7.number_input("Calibration questions", min_value=2, value=200, step=50, key="cf_n_questions")
    n_bins = c8.number_input("Confidence bins", min_value=2, max_value=50, value=10, key="cf_n_bins")
    submitted = st.form_submit_button("Run", type="primary")

if submitted:
    config = Config(layer=int(layer), null_dims=int(null_dims), top_norm_fraction=float(fraction),
                    n_candidates=int(n_candidates), n_random=int(n_random), max_tokens=int(max_tokens),
                    n_questions=int(n_questions), n_bins=int(n_bins))
    run_with_progress("cf_result", lambda progress: run(pair, config, progress))

result = st.session_state.get("cf_result")
if result is None:
    st.stop()

st.header("1 · Candidates from the weights")
st.caption(f"Layer {result.layer}; null space = the unembedding's bottom {result.null_dims} singular vectors "
           "(final-norm gain folded in). " + " · ".join(f"**{r}**: {ids}" for r, ids in result.candidates.items()))
st.altair_chart(charts.scatter(result.neurons))
st.caption("Look for red points at the bottom right: large output weight, tiny effect on the logits. If the same "
           "indices are labelled in both panels, post-training kept the entropy neurons.")
st.altair_chart(charts.null_fraction(result.neurons))
st.caption("Candidates should put most of their output weight in the null space, other large neurons little.")

st.header("2 · Overlap between the models")
if result.iou is None:
    st.info("This pair has no post-trained model: nothing to compare.")
else:
    st.metric("IoU of the candidate sets at these thresholds", f"{result.iou:.2f}")
    st.altair_chart(charts.overlap(result.overlap))
    st.caption("High IoU across the grid means the same neurons are candidates in both models.")
    st.dataframe(result.correlations, hide_index=True)
    st.caption("Correlation across all neurons of each score, base vs post-trained (log logit variance).")

st.header("3 · Mean ablation")
st.altair_chart(charts.ablation(result.ablation))
st.caption("Candidates (solid) should move entropy and loss more than random neurons (faded), and their total "
           "effect should differ from the direct one: the gap is what passes through the final norm's scale.")
st.dataframe(result.text_confidence, hide_index=True)

st.header("4 · Confidence and calibration on questions")
st.altair_chart(charts.reliability(result.reliability))
st.caption("Points on the dashed diagonal are calibrated; below it the model is over-confident. Compare the two "
           "panels and the ECE below.")
st.dataframe(result.calibration, hide_index=True)
st.caption(f"Timings when computed (s): {result.timings}")

cols = st.columns(4)
for col, name in zip(cols, ["neurons", "ablation", "calibration", "questions"]):
    col.download_button(f"{name}.csv", getattr(result, name).to_csv(index=False), f"confidence_{name}.csv",
                        "text/csv", key=f"cf_dl_{name}")
