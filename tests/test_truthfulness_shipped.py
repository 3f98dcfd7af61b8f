"""The shipped truthfulness result of the demo pair (assets/demo/results/truthfulness/) against a cheap slice
recomputed now with the study's own functions: one early layer's truth direction of the base model, the few-shot
prompt and the base model's threshold, a few unsteered scores and a few steered ones at the largest alpha."""
import numpy as np
import pytest
import torch

from analyses.truth_score import few_shot_prefix, shot_facts
from analyses.truthfulness import STUDY, balanced, default_data, steering_vectors
from analyses.truthfulness import probes as tp
from analyses.truthfulness import steer as ts
from steering.extraction import collect_residuals

pytestmark = pytest.mark.demo

LAYER = 3  # early, so the activations stop there: seconds on a CPU


@pytest.fixture(scope="module")
def demo(demo_pair):
    return demo_pair


@pytest.fixture(scope="module")
def result(shipped_result):
    return shipped_result(STUDY)


@pytest.fixture(scope="module")
def config():
    return STUDY.Config()


def test_an_early_layers_direction_is_the_mass_mean_of_the_train_statements(demo, result, config):
    frame = default_data(demo, config)
    train = balanced(frame[frame["split"] == "train"], config.n_train, config.seed)
    acts = collect_residuals(demo.base, demo.tokenizer, list(train["statement"]), layers=[LAYER], positions=(-1,),
                             batch_size=config.batch_size)[:, 0, 0]
    labels = torch.as_tensor(train["label"].to_numpy().copy())
    direction = result.directions["base"]
    assert torch.allclose(tp.mass_mean(acts[:, None], labels)[0], direction.at(LAYER), atol=1e-4)
    assert float(direction.resid_norms[LAYER]) == pytest.approx(float(acts.norm(dim=-1).mean()), abs=1e-3)
    gap = result.direction_stats.set_index("layer").loc[LAYER, "gap_base"]
    assert float(direction.at(LAYER).norm()) == pytest.approx(gap, abs=1e-4)


def test_the_prompt_and_the_base_threshold(demo, result, config):
    frame = default_data(demo, config)
    prefix = few_shot_prefix(frame, config.n_shots, config.seed, config.answers)
    assert prefix == result.prefix
    pool = frame[~frame["fact"].isin(shot_facts(prefix, frame))]
    calib = balanced(pool[pool["split"] == "train"], config.n_calib, config.seed + 1)
    scores = ts.steered_scores(demo.base, demo.tokenizer, list(calib["statement"]), [], None, prefix=prefix,
                               answers=tuple(config.answers), batch_size=config.batch_size)
    assert ts.threshold(scores, calib["label"].to_numpy()) == pytest.approx(result.thresholds["base"], abs=1e-4)


def test_a_few_scores_before_and_after_steering_the_post_model_with_the_base_direction(demo, result, config):
    top = result.transfer["alpha"].max()
    rows = result.steered.query("direction == 'base' and model == 'post' and alpha == @top")
    rows = rows.groupby("label").head(2)  # two true, two false
    statements, labels = list(rows["statement"]), rows["label"].to_numpy()
    kw = dict(prefix=result.prefix, answers=tuple(result.answers), batch_size=config.batch_size)
    before = ts.steered_scores(demo.post, demo.tokenizer, statements, [], None, **kw)
    after = ts.steered_scores(demo.post, demo.tokenizer, statements, np.where(labels == 1, -top, top),
                              steering_vectors(result)["base"], **kw)
    assert np.allclose(before, rows["score_before"], atol=1e-4)
    assert np.allclose(after, rows["score_after"], atol=1e-4)
