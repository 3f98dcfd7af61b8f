"""The shipped confidence result (assets/demo/results/confidence/) against a cheap slice recomputed now on the demo
pair with the study's own functions: the weight scores of every neuron, the first batch of questions for the base
model, and the mean ablation of one candidate neuron of the base model."""
import numpy as np
import pandas as pd
import pytest

from analyses.confidence import STUDY, Config, geometries, heldout_texts, score_model
from analyses.confidence import ablation as abl
from analyses.confidence import calibration as cal

pytestmark = pytest.mark.demo
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def demo(demo_pair):
    return demo_pair


@pytest.fixture(scope="module")
def result(shipped_result):
    return shipped_result(STUDY)


def _close(ours: pd.Series, theirs: pd.Series) -> None:
    assert np.allclose(ours.to_numpy(float), theirs.to_numpy(float), rtol=TOLERANCE, atol=TOLERANCE)


def test_weight_scores_and_candidates_match(demo, result):
    config = Config()
    geometry = geometries(demo.models())
    for role, model in demo.models().items():
        scores, spectrum, chosen = score_model(model, result.layer, config, geometry[role])
        stored = result.neurons[result.neurons["model"] == role].reset_index(drop=True)
        assert chosen == result.candidates[role]
        assert (stored["neuron"] == scores["neuron"]).all() and (stored["candidate"] == scores["candidate"]).all()
        for column in ("norm", "logit_var", "null_frac"):
            _close(scores[column], stored[column])
        _close(spectrum["singular_value"], result.spectrum[result.spectrum["model"] == role]["singular_value"])


def test_first_batch_of_questions_matches_for_the_base_model(demo, result):
    config = Config()
    batch = 4 * config.batch_size  # one batch exactly as the run made it, so padding is the same
    questions = cal.question_set(config.n_questions, config.seed).iloc[:batch]
    ours = cal.score_questions(demo.base, demo.tokenizer, questions, batch, lambda done, total: None)
    stored = result.questions[result.questions["model"] == "base"].iloc[:batch].reset_index(drop=True)
    assert list(ours["question"]) == list(stored["question"])
    assert list(ours["correct"]) == list(stored["correct"])
    for column in ("confidence", "p_answer", "entropy"):
        _close(ours[column], stored[column])


def test_one_candidate_ablation_matches_for_the_base_model(demo, result):
    config = Config()
    batches = abl.text_batches(demo.tokenizer, heldout_texts(), config.max_tokens, config.batch_size)
    clean = abl.clean_run(demo.base, batches, result.layer)
    neuron = result.candidates["base"][0]
    ours = abl.ablate_one(demo.base, batches, result.layer, neuron, clean)
    table = result.ablation
    [stored] = table[(table["model"] == "base") & (table["group"] == "candidate") & (table["neuron"] == neuron)
                     ].to_dict("records")
    assert all(abs(ours[k] - stored[k]) < TOLERANCE for k in ours), (ours, stored)
    text = result.text_confidence.set_index("model").loc["base"]
    assert text["n_tokens"] == len(clean.stats["loss"])
    assert abs(text["mean_entropy"] - float(clean.stats["entropy"].mean())) < TOLERANCE
