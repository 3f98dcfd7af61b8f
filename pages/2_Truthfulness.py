"""Truthfulness: truth directions, probes, interventions and their transfer, base vs post-trained."""
import streamlit as st

from analyses import truthfulness_charts as charts
from analyses.contrast_sets import decode_upload
from analyses.statements import describe, parse_statement_csv, statement_set_names
from analyses.truthfulness import Config, run, score_curve
from analyses.truthfulness_general import GeneralConfig, generalisation
from pages.ui.pair_picker import current_pair, sidebar
from pages.ui.progress import run_with_progress
from steering import InvalidInputError, SteeringError

UPLOAD = "your own CSV (statement,label)"

st.set_page_config(page_title="Truthfulness", page_icon="⚖️", layout="wide")
sidebar()
st.title("Truthfulness: one direction in both models?")
st.caption("Du et al. 2025 (after Marks & Tegmark's Geometry of Truth): true and false statements separate along "
           "a direction of the residual stream, nearly the same before and after post-training, and a direction "
           "taken from one model steers the other. Activations are read at the statement's last token (its "
           "period), the statement alone; the intervention scores P(TRUE) − P(FALSE) after a few-shot prompt.")
pair = current_pair()
if pair is None:
    st.stop()


def _uploaded_frame(choice: str, upload, pasted: str):
    """None for a built-in set; the parsed statements for an upload or pasted CSV (InvalidInputError if bad)."""
    if choice != UPLOAD:
        return None
    if upload is not None:
        return parse_statement_csv(decode_upload(upload.getvalue(), upload.name), upload.name)
    if pasted.strip():
        return parse_statement_csv(pasted, "the pasted CSV")
    raise InvalidInputError("Upload a CSV file or paste one (header 'statement,label') to use your own statements.")


def _alphas(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise InvalidInputError(f"Alphas must be numbers separated by commas; got '{text}'.") from None
    if not values:
        raise InvalidInputError("Give at least one alpha.")
    return values


with st.form("tr_form"):
    c1, c2 = st.columns([1, 2])
    choice = c1.selectbox("Statements", statement_set_names() + [UPLOAD], key="tr_dataset",
                          format_func=lambda n: n if n == UPLOAD else f"{n}: {describe(n)}")
    upload = c2.file_uploader("CSV with columns statement,label (1/0 or true/false)", type=["csv", "txt"],
                              key="tr_upload")
    pasted = c2.text_area("…or paste it here", key="tr_paste", height=80)
    c3, c4, c5, c6 = st.columns(4)
    n_train = c3.number_input("Train statements (0 = all)", min_value=0, value=Config.n_train, step=50,
                              key="tr_n_train")
    n_test = c4.number_input("Test statements (0 = all)", min_value=0, value=Config.n_test, step=50, key="tr_n_test")
    probe_layer = c5.number_input("Probe layer (-1 = best)", min_value=-1, value=-1, key="tr_probe_layer")
    layer_start = c6.number_input("First steered layer (-1 = a third of the depth)", min_value=-1, value=-1,
                                  key="tr_layer_start")
    c7, c8, c9, c10 = st.columns(4)
    n_steer = c7.number_input("Statements steered", min_value=2, value=Config.n_steer, key="tr_n_steer")
    n_shots = c8.number_input("Few-shot examples", min_value=0, value=Config.n_shots, key="tr_n_shots")
    alphas = c9.text_input("Alphas (1 = one true/false gap)", ", ".join(f"{a:g}" for a in Config.alphas),
                           key="tr_alphas")
    answers = c10.text_input("Answer words (true, false)", ", ".join(Config.answers), key="tr_answers")
    submitted = st.form_submit_button("Run", type="primary")

def _run_study(progress) -> object:
    frame = _uploaded_frame(choice, upload, pasted)
    words = tuple(w.strip() for w in answers.split(","))
    if len(words) != 2 or not all(words):
        raise InvalidInputError("Give two answer words separated by a comma, e.g. 'TRUE, FALSE'.")
    config = Config(dataset=choice if frame is None else "upload", n_train=int(n_train), n_test=int(n_test),
                    probe_layer=int(probe_layer), layer_start=int(layer_start), n_steer=int(n_steer),
                    n_calib=max(2, int(n_steer) // 2), n_shots=int(n_shots), alphas=_alphas(alphas),
                    answers=words)
    return run(pair, config, progress, frame)


if submitted and run_with_progress("tr_result", _run_study) is not None:
    st.session_state.pop("tr_curve", None)

result = st.session_state.get("tr_result")
if result is None:
    st.stop()

st.header("1 · Probes per layer")
cols = st.columns(len(result.best) * 2)
for i, (role, methods) in enumerate(result.best.items()):
    for j, (method, (layer, acc)) in enumerate(methods.items()):
        cols[2 * i + j].metric(f"{role}, {method}: best layer {layer}", f"{acc:.1%}")
st.altair_chart(charts.probe_accuracy(result.probes))
st.caption("Look for the layers where both models' probes are near 100%: truth is linearly readable there.")
st.altair_chart(charts.probe_transfer(result.probes))
st.caption("Probes fit on one model and applied to the other: close to the model's own probe means a shared "
           "representation (a shifted threshold can sink the projection probe while the direction still agrees).")
st.altair_chart(charts.cosine(result.directions))
st.caption("Cosine of the base and post mass-mean directions per layer; near 1 means post-training kept the "
           "direction. 'cosine_scaled' first divides each dimension by its spread, so the few huge dimensions of "
           "the residual stream do not dominate.")

layers = sorted(result.pca["layer"].unique())
chosen = st.select_slider("PCA layer", layers, value=result.probe_layer, key="tr_pca_layer")
st.altair_chart(charts.pca_scatter(result.pca, chosen))
st.caption("Each point is a statement; true and false should fall apart along one axis in both panels.")

st.header("2 · Interventions and their transfer")
st.caption(f"Direction of layer {result.probe_layer} (mean true − mean false) added over layers "
           f"{result.steer_layers[0]}–{result.steer_layers[-1]}, split evenly, at token offsets {result.offsets}: "
           "+alpha on false statements, −alpha on true ones. Flip = judged right before (score vs the threshold, "
           "the midpoint of the train true/false mean scores) and wrong after.")
alpha_values = sorted(result.transfer["alpha"].unique())
alpha = st.select_slider("alpha", alpha_values, value=alpha_values[0], key="tr_alpha")
h1, h2 = st.columns(2)
h1.altair_chart(charts.transfer_heatmap(result.transfer, alpha))
h2.altair_chart(charts.transfer_heatmap(result.transfer, alpha, "flip_rate"))
st.caption("Compare the rows: if the base direction moves the post-trained model as much as the post direction "
           "does, the direction transfers. Mean change > 0 means the score moved the way it was pushed.")
st.dataframe(result.transfer[result.transfer["alpha"] == alpha], hide_index=True)
st.caption(f"Thresholds per model: {result.thresholds}. The 270M demo model judges statements weakly in a few-shot "
           "prompt (its unsteered accuracy is in the table), so read changes of the score, not only flips.")

st.subheader("Your statement")
statement = st.text_input("A statement to score", "The city of Paris is in France.", key="tr_statement")
top = st.slider("alpha range (±)", 0.5, 16.0, 4.0, 0.5, key="tr_alpha_range")
if st.button("Score as alpha moves", key="tr_score"):
    try:
        grid = [round(top * k / 4, 3) for k in range(-4, 5)]
        st.session_state["tr_curve"] = score_curve(pair, result, statement, grid)
    except SteeringError as e:
        st.error(str(e))
if "tr_curve" in st.session_state:
    st.altair_chart(charts.alpha_curve(st.session_state["tr_curve"]))
    st.caption("Positive alpha pushes towards TRUE: the score should rise with alpha for every model and direction.")

st.header("3 · Generalisation across datasets")
n_per_set = st.number_input("Statements per set", min_value=4, value=GeneralConfig.n_per_set, step=20,
                            key="tr_general_n")
if st.button("Train on the other sets, test on each held-out one", key="tr_general"):
    run_with_progress("tr_general_table",
                      lambda progress: generalisation(pair, GeneralConfig(n_per_set=int(n_per_set)), progress))
if "tr_general_table" in st.session_state:
    st.altair_chart(charts.generalisation(st.session_state["tr_general_table"]))
    st.caption("High accuracy on a held-out set means the truth direction is shared across topics, not learnt "
               "per dataset.")

cols = st.columns(4)
for col, name in zip(cols, ["probes", "directions", "transfer", "steered"]):
    col.download_button(f"{name}.csv", getattr(result, name).to_csv(index=False), f"truthfulness_{name}.csv",
                        "text/csv", key=f"tr_dl_{name}")
