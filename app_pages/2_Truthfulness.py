"""Truthfulness: truth directions, probes, interventions and their transfer, base vs post-trained."""
import streamlit as st

from analyses.statements import describe, statement_set_names
from analyses.truthfulness import STUDY, GeneralConfig, charts, generalisation, score_curve, uploaded_statements
from app_pages.ui.icons import study_icon
from app_pages.ui.names import named_chart, named_table
from app_pages.ui.pair_picker import current_pair, sidebar
from app_pages.ui.progress import run_with_progress
from app_pages.ui.study_page import downloads, headline, study_result
from steering import SteeringError

UPLOAD = "your own CSV (statement,label)"


def thresholds_text(thresholds: dict) -> str:
    """{'base': 0.0123456789..., ...} as 'base 0.012, post −0.034' (three decimals are what the scores carry)."""
    return ", ".join(f"{role} {value:.3f}" for role, value in thresholds.items())

st.set_page_config(page_title="Truthfulness", page_icon=study_icon(STUDY), layout="wide")
sidebar()
st.title("Truthfulness: one direction in both models?")
st.caption("Du et al. 2025 (after Marks & Tegmark's Geometry of Truth): true and false statements separate along "
           "a direction of the residual stream, nearly the same before and after post-training, and a direction "
           "taken from one model steers the other. Activations are read at the statement's last token (its "
           "period), the statement alone; the intervention scores P(TRUE) − P(FALSE) after a few-shot prompt.")
st.markdown(
    "**Method.** The default is the paper's own (its code, `Knowledge+Truthfulness/`): the truth direction is the "
    "difference of the true and false means of *other* statement sets, each set centred on its own mean before "
    "they are pooled, and the chosen set (cities) is held out for evaluation. The paper pools sp_en_trans, "
    "animal_class, inventors, element_symb and facts; this project ships three of them (translations, animals, "
    "elements) and has no inventors or facts set, so the direction comes from those three. The direction of the "
    "probe layer (the block output at 0.375 of the depth) is added whole, coefficient 1, at every layer from the "
    "block output at 0.25 of the depth up to the probe layer; each statement gets its own shuffle of the few-shot "
    "examples; the 2×2 reports the paper's normalised intervention effect. Where this page departs from the paper: "
    "200 of the 760 cities statements are steered and 200 test the probes (the paper uses every one; set 0 for all), "
    "and the flip rate and mean change beside the normalised effect are this project's own measures. The option "
    "*single_set* (Direction method) is this project's earlier study (truthfulness@2): the direction from the "
    "cities train split alone, spread over the steered layers, the best layer by train accuracy, one fixed "
    "few-shot order. On Gemma it gives very different cosines, because a single set's difference of means is "
    "dominated by the residual stream's few huge dimensions (see the chart of dominant dimensions).\n\n"
    "**Layer numbers.** Here layer *l* is the residual stream *entering* block *l* (resid_pre); the paper numbers "
    "a block's *output*, so its layer L is our L + 1 (its steering at block outputs 4–7 on this 18-layer model is "
    "our layers 5–8).")
pair = current_pair()
if pair is None:
    st.stop()


def _uploaded(upload, pasted: str):
    """The user's statements from the uploaded or pasted CSV; None when neither is given yet."""
    if upload is not None:
        return uploaded_statements(upload.getvalue(), upload.name)
    if pasted.strip():
        return uploaded_statements(pasted.encode("utf-8"), "the pasted CSV")
    return None


c1, c2 = st.columns([1, 2])
choice = c1.selectbox("Statements", statement_set_names() + [UPLOAD], key="tr_dataset",
                      index=statement_set_names().index(STUDY.Config().dataset),
                      format_func=lambda n: n if n == UPLOAD else f"{n}: {describe(n)}")
data = None
if choice == UPLOAD:
    upload = c2.file_uploader("CSV with columns statement,label (1/0 or true/false)", type=["csv", "txt"],
                              key="tr_upload")
    pasted = c2.text_area("…or paste it here", key="tr_paste", height=80)
    try:
        data = _uploaded(upload, pasted)
    except SteeringError as e:
        st.error(str(e))
        st.stop()
    if data is None:
        st.info("Upload a CSV file or paste one (header 'statement,label') to use your own statements.")
        st.stop()

stored = study_result(STUDY, pair, skip=("dataset",), extra={"dataset": "upload" if data is not None else choice},
                      data=data)
if stored is None:
    st.stop()
result, result_key = stored.result, stored.manifest.get("key")
headline(STUDY, result)

st.header("1 · Probes per layer")
st.altair_chart(named_chart(charts.probe_accuracy(result.probes), pair.name))
st.caption("Look for the layers where both models' probes are near 100%: truth is linearly readable there.")
st.altair_chart(named_chart(charts.probe_transfer(result.probes), pair.name))
st.caption("Probes fit on one model and applied to the other: close to the model's own probe means a shared "
           "representation (a shifted threshold can sink the projection probe while the direction still agrees).")
st.altair_chart(named_chart(charts.cosine(result.direction_stats), pair.name))
origin = (f"the pooled, per-set centred sets {', '.join(result.train_sets)}, {result.dataset} held out"
          if result.method == "paper" else f"{result.dataset}'s train split (single_set)")
st.caption(f"Cosine of the base and post mass-mean directions per layer (directions from {origin}); near 1 means "
           "post-training kept the direction. 'cosine_scaled' first divides each dimension by its spread, so the "
           "few huge dimensions of the residual stream do not dominate. 'cosine_single_set' (paper method only) is "
           "the cosine of the directions of the held-out set's own train split, the single_set option's, for "
           "comparison.")
st.altair_chart(named_chart(charts.dominant_dims(result.direction_stats), pair.name))
st.caption("How much of each direction lies in its largest one or three residual dimensions (hover for the "
           "dimension). Where one dimension carries most of the squared norm, it also decides the cosine: a sign "
           "flip of that one dimension between the models turns a cosine negative.")
shares = result.direction_stats.filter(regex="^(layer|top1_share_|top3_share_|top_dim_)").round(3)
st.dataframe(named_table(shares, pair.name), hide_index=True)

layers = sorted(result.pca["layer"].unique())
chosen = st.select_slider("PCA layer", layers, value=result.probe_layer, key="tr_pca_layer")
st.altair_chart(named_chart(charts.pca_scatter(result.pca, chosen), pair.name))
st.caption("Each point is a statement; true and false should fall apart along one axis in both panels.")

st.header("2 · Interventions and their transfer")
how = "whole at each of them (the paper's coefficient per layer)" if result.spread == "full" else \
    "split evenly over them (single_set, departs from the paper)"
st.caption(f"Direction of layer {result.probe_layer} (mean true − mean false; the paper's block output "
           f"{result.probe_layer - 1}) added at layers {result.steer_layers[0]}–{result.steer_layers[-1]} (block "
           f"outputs {result.steer_layers[0] - 1}–{result.steer_layers[-1] - 1}), {how}, at token offsets "
           f"{result.offsets}: +alpha on false statements, −alpha on true ones. The normalised effect (the "
           "paper's) is the share of the way to the pushed end, (p_after − p_before) / (∓1 − p_before) with "
           "p = P(TRUE) − P(FALSE), averaged over the statements. Flip = judged right before (score vs the "
           "threshold, the midpoint of the train true/false mean scores) and wrong after.")
alpha_values = sorted(result.transfer["alpha"].unique())
alpha = st.select_slider("alpha", alpha_values, value=alpha_values[0], key="tr_alpha")
h1, h2 = st.columns(2)
h1.altair_chart(named_chart(charts.transfer_heatmap(result.transfer, alpha), pair.name), width="content")
h2.altair_chart(named_chart(charts.transfer_heatmap(result.transfer, alpha, "flip_rate"), pair.name), width="content")
st.caption("Compare the rows: if the base direction moves the post-trained model as much as the post direction "
           "does, the direction transfers. A normalised effect > 0 means the score moved the way it was pushed.")
st.dataframe(named_table(result.transfer[result.transfer["alpha"] == alpha], pair.name), hide_index=True)
st.caption(f"Thresholds per model: {thresholds_text(result.thresholds)}. The 270M demo model judges statements weakly in a few-shot "
           "prompt (its unsteered accuracy is in the table), so read changes of the score, not only flips.")

st.subheader("Your statement")
statement = st.text_input("A statement to score", "The city of Paris is in France.", key="tr_statement")
top = st.slider("alpha range (±)", 0.5, 16.0, 4.0, 0.5, key="tr_alpha_range")
if st.button("Score as alpha moves", key="tr_score"):
    try:
        grid = [round(top * k / 4, 3) for k in range(-4, 5)]
        with st.spinner(f"Scoring the statement at {len(grid)} alphas for each model and direction…", show_time=True):
            st.session_state["tr_curve"] = (result_key, score_curve(pair, result, statement, grid))
    except SteeringError as e:
        st.error(str(e))
curve_key, curve = st.session_state.get("tr_curve", (None, None))
if curve is not None and curve_key == result_key:  # a curve of another result is stale
    st.altair_chart(named_chart(charts.alpha_curve(curve), pair.name))
    st.caption("Positive alpha pushes towards TRUE: the score should rise with alpha for every model and direction.")

st.header("3 · Generalisation across datasets")
n_per_set = st.number_input("Statements per set", min_value=4, value=GeneralConfig.n_per_set, step=20,
                            key="tr_general_n")
if st.button("Train on the other sets, test on each held-out one", key="tr_general"):
    run_with_progress("tr_general_table", lambda progress: (pair.fingerprint("base"), generalisation(
        pair, GeneralConfig(n_per_set=int(n_per_set)), progress)))
general_pair, general_table = st.session_state.get("tr_general_table", (None, None))
if general_table is not None and general_pair == pair.fingerprint("base"):
    st.altair_chart(named_chart(charts.generalisation(general_table), pair.name))
    st.caption("High accuracy on a held-out set means the truth direction is shared across topics, not learnt "
               "per dataset.")

downloads(STUDY, result)
