"""Confidence: entropy neurons (weights, overlap, ablation) and calibration, base vs post-trained."""
import streamlit as st

from analyses.confidence import STUDY
from app_pages.ui.glossary import gloss
from app_pages.ui.icons import study_icon
from app_pages.ui.names import named_chart, named_table
from app_pages.ui.pair_picker import current_pair, sidebar
from app_pages.ui.study_page import downloads, headline, study_result

st.set_page_config(page_title="Confidence", page_icon=study_icon(STUDY), layout="wide")
sidebar()
st.title("Confidence: entropy neurons and calibration")
st.caption("Entropy neurons (Stolfo et al. 2024) sit in the last MLP layer with a large output weight that the "
           "unembedding hardly reads: they change confidence through the final norm's scale. Du et al. 2025 find "
           "them much the same in base and post-trained models, so they do not explain why the two differ in "
           "confidence.")
gloss("ECE", "IoU")
pair = current_pair()
if pair is None:
    st.stop()

stored = study_result(STUDY, pair)
if stored is None:
    st.stop()
result = stored.result
headline(STUDY, result)
charts = STUDY.charts(result)

st.header("1 · Candidates from the weights")
st.caption(f"Layer {result.layer}; null space = the unembedding's bottom {result.null_dims} singular vectors "
           "(final-norm gain folded in). " + " · ".join(f"**{r}**: {ids}" for r, ids in result.candidates.items()))
st.altair_chart(named_chart(charts["scatter"], pair.name))
st.caption("Look for red points at the bottom right: large output weight, tiny effect on the logits. If the same "
           "indices are labelled in both panels, post-training kept the entropy neurons.")
st.altair_chart(named_chart(charts["null_fraction"], pair.name))
st.caption("Candidates should put most of their output weight in the null space, other large neurons little.")

st.header("2 · Overlap between the models")
if result.iou is None:
    st.info("This pair has no post-trained model: nothing to compare.")
else:
    st.metric("IoU of the candidate sets at these thresholds", f"{result.iou:.2f}")
    st.altair_chart(named_chart(charts["overlap"], pair.name), width="content")
    st.caption("High IoU across the grid means the same neurons are candidates in both models.")
    st.dataframe(named_table(result.correlations, pair.name), hide_index=True)
    st.caption("Correlation across all neurons of each score, base vs post-trained (log logit variance).")

st.header("3 · Mean ablation")
st.altair_chart(named_chart(charts["ablation"], pair.name))
st.caption("Candidates (solid) should move entropy and loss more than random neurons (faded), and their total "
           "effect should differ from the direct one: the gap is what passes through the final norm's scale.")
st.dataframe(named_table(result.text_confidence, pair.name), hide_index=True)

st.header("4 · Confidence and calibration on questions")
st.altair_chart(named_chart(charts["reliability"], pair.name))
st.caption("Points on the dashed diagonal are calibrated; below it the model is over-confident. Compare the two "
           "panels and the ECE below.")
st.dataframe(named_table(result.calibration, pair.name), hide_index=True)
st.caption("Timings when computed: " + ", ".join(f"{stage.replace('_', ' ')} {seconds:.0f} s"
                                                 for stage, seconds in result.timings.items()))

downloads(STUDY, result)
