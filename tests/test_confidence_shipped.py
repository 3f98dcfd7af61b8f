"""The shipped confidence result (assets/demo/results/confidence/) against a cheap slice recomputed now on the demo
pair with the study's own functions: the weight scores of every neuron, the first batch of questions for the base
model, and the mean ablation of one candidate neuron of the base model.

The shipped numbers were computed on another processor: values are compared within tolerances written from the
arithmetic (tests/numeric.py), and the candidate neurons and correct answers agree up to near ties."""
import numpy as np
import pytest
import torch
from numeric import assert_close, assert_top_k_agree, logit_tolerance

from analyses.confidence import STUDY, Config, geometries, heldout_texts, score_model
from analyses.confidence import ablation as abl
from analyses.confidence import calibration as cal

pytestmark = [pytest.mark.demo, pytest.mark.numeric]
EPS64 = float(torch.finfo(torch.float64).eps)


@pytest.fixture(scope="module")
def demo(demo_pair):
    return demo_pair


@pytest.fixture(scope="module")
def result(shipped_result):
    return shipped_result(STUDY)


@pytest.fixture(scope="module")
def dz(demo):
    """Δz of the base model's logits: a probability p is off by up to p·2Δz, a log-probability by 2Δz."""
    return logit_tolerance(demo.base, demo.tokenizer)


def test_weight_scores_and_candidates_match(demo, result):
    """The weight scores are float64 sums of the same float32 weights on every machine: the Gram matrix G = W_UᵀW_U
    is off by about r = 2·√vocab·ε64 of ‖G‖ = σ_max², its eigenvalues by as much (so σ by up to √r·σ_max), its
    bottom eigenvectors by r·σ_max²/gap (Davis-Kahan), and the candidates agree up to near ties."""
    config = Config()
    geometry = geometries(demo.models())
    for role, model in demo.models().items():
        scores, spectrum, chosen = score_model(model, result.layer, config, geometry[role])
        stored = result.neurons[result.neurons["model"] == role].reset_index(drop=True)
        assert (stored["neuron"] == scores["neuron"]).all()
        r, sv = 2 * np.sqrt(geometry[role].vocab) * EPS64, geometry[role].singular_values.numpy()
        k = config.null_dims
        g_norm, gap = sv[0] ** 2, sv[-k - 1] ** 2 - sv[-k] ** 2
        w2 = float(stored["norm"].max()) ** 2
        tols = {"norm": r * np.sqrt(w2),
                "logit_var": r * g_norm * w2 / geometry[role].vocab,  # of the second moment wᵀGw / vocab
                "null_frac": 2 * r * g_norm / gap}
        for column, tol in tols.items():
            assert_close(scores[column], stored[column], tol, column)
        variance = scores.set_index("neuron")["logit_var"]  # candidates: lowest logit variance first
        assert_top_k_agree(chosen, [-variance[n] for n in chosen], result.candidates[role],
                           [-variance[n] for n in result.candidates[role]], tols["logit_var"])
        values = result.spectrum[result.spectrum["model"] == role]["singular_value"]
        assert_close(spectrum["singular_value"], values, np.sqrt(r) * sv[0], "singular values")


def test_first_batch_of_questions_matches_for_the_base_model(demo, result, dz):
    config = Config()
    batch = 4 * config.batch_size  # one batch exactly as the run made it, so padding is the same
    questions = cal.question_set(config.n_questions, config.seed).iloc[:batch]
    ours = cal.score_questions(demo.base, demo.tokenizer, questions, batch, lambda done, total: None)
    stored = result.questions[result.questions["model"] == "base"].iloc[:batch].reset_index(drop=True)
    assert list(ours["question"]) == list(stored["question"])
    for column in ("confidence", "p_answer"):  # probabilities: p·2Δz
        assert_close(ours[column], stored[column], 2 * dz * stored[column].max(), column)
    # entropy -Σ p log p: each log p off by 2Δz and each p by p·2Δz, so H by 2Δz (1 + H)
    assert_close(ours["entropy"], stored["entropy"], 2 * dz * (1 + stored["entropy"].max()), "entropy")
    # correct = the answer is the argmax: where the verdicts differ, the answer must tie with the top token here
    differ = ours["correct"] != stored["correct"]
    assert ((ours["confidence"] - ours["p_answer"])[differ] <= 4 * dz * ours["confidence"][differ]).all()


def test_one_candidate_ablation_matches_for_the_base_model(demo, result, dz):
    config = Config()
    batches = abl.text_batches(demo.tokenizer, heldout_texts(), config.max_tokens, config.batch_size)
    clean = abl.clean_run(demo.base, batches, result.layer)
    neuron = result.candidates["base"][0]
    ours = abl.ablate_one(demo.base, batches, result.layer, neuron, clean)
    table = result.ablation
    [stored] = table[(table["model"] == "base") & (table["group"] == "candidate") & (table["neuron"] == neuron)
                     ].to_dict("records")
    # means of differences of entropies (off by 2Δz (1 + H) each) or losses (-log p, off by 2Δz each)
    size = 1 + max(float(clean.stats["entropy"].max()), float(clean.stats["loss"].max()))
    assert all(abs(ours[k] - stored[k]) <= 4 * dz * size for k in ours), (ours, stored, 4 * dz * size)
    text = result.text_confidence.set_index("model").loc["base"]
    assert text["n_tokens"] == len(clean.stats["loss"])
    entropy = float(clean.stats["entropy"].mean())
    assert abs(text["mean_entropy"] - entropy) <= 2 * dz * (1 + float(clean.stats["entropy"].max()))
