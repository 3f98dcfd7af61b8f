"""The shipped truthfulness result of the demo pair (assets/demo/results/truthfulness/), computed by the paper's
method (the study's default), against a cheap slice recomputed now with plain steps: one early layer's direction of
the base model (the translations, animals and elements sets, each centred on its own mean, pooled; mean(true) -
mean(false)), the few-shot lines, and a few scores before and after steering the post-trained model with the base
direction (the whole vector at every steered layer, the prompt in each statement's own shuffle).

Tolerances hold across machines (DESIGN.md): a float32 sum of n terms of size |x| is off by about sqrt(n)·ε·|x|
typically and n·ε·|x| at worst (ε = 1.2e-7), and another processor or thread count sums in another order. Each is
written relative to the magnitude compared."""
import math

import numpy as np
import pytest
import torch

from analyses.statements import statement_set
from analyses.truth_score import few_shot_prefix
from analyses.truthfulness import STUDY, steering_vectors
from analyses.truthfulness import steer as ts
from steering.extraction import collect_residuals
from steering.tokens import encode

pytestmark = [pytest.mark.demo, pytest.mark.numeric]

EPS = 1.2e-7
LAYER = 2  # early, so the activations stop there: seconds on a CPU
MLP_WIDTH = 2048  # Gemma 3 270M's longest dot product inside a block
N_STATEMENTS = 4


@pytest.fixture(scope="module")
def demo(demo_pair):
    return demo_pair


@pytest.fixture(scope="module")
def result(shipped_result):
    return shipped_result(STUDY)


@pytest.fixture(scope="module")
def config():
    return STUDY.Config()


def test_the_shipped_result_is_the_papers_method(result, config):
    assert config.method == "paper" and result.method == "paper" and result.spread == "full"
    assert result.train_sets == list(config.train_sets) and result.dataset == "cities"
    assert result.probe_layer == 8 and result.steer_layers == [5, 6, 7, 8]  # block outputs 7 and 4-7
    assert set(result.transfer["alpha"]) == {1.0}


def test_an_early_layers_direction_is_the_pooled_centred_mass_mean(demo, result, config):
    centred, labels, scale, n = [], [], 0.0, 0
    for name in config.train_sets:
        frame = statement_set(name)
        acts = collect_residuals(demo.base, demo.tokenizer, list(frame["statement"]), layers=[LAYER],
                                 positions=(-1,), batch_size=config.batch_size)[:, 0, 0].double()
        scale, n = max(scale, float(acts.abs().max())), n + len(frame)
        centred.append(acts - acts.mean(0))
        labels.append(torch.as_tensor(frame["label"].to_numpy().copy()))
    pooled, labels = torch.cat(centred), torch.cat(labels)
    expected = pooled[labels == 1].mean(0) - pooled[labels == 0].mean(0)
    got = result.directions["base"].at(LAYER).double()
    # each activation ends LAYER blocks of dot products at most MLP_WIDTH long, summed in another order on another
    # machine, then means of n of them, all relative to the largest activation. The worst case,
    # (LAYER·MLP_WIDTH + 2n)·ε·scale, is 0.87 here: half the direction's norm, since Gemma's few huge dimensions
    # are ~1000x its entries, so it could not fail. We take the typical case, sqrt(LAYER·MLP_WIDTH) + 2·sqrt(n),
    # with a margin of 4.
    tol = 4 * (math.sqrt(LAYER * MLP_WIDTH) + 2 * math.sqrt(n)) * EPS * scale
    assert float((got - expected).abs().max()) <= tol
    assert float(expected.norm()) > 10 * tol  # the check has teeth
    gap = result.direction_stats.set_index("layer").loc[LAYER, "gap_base"]
    assert float(got.norm()) == pytest.approx(gap, rel=1e-5)  # the same float32 vector's norm: ~sqrt(640)·ε


def test_the_few_shot_lines(demo, result, config):
    prefix = few_shot_prefix(statement_set(config.dataset), config.n_shots, config.seed, config.answers)
    assert result.prefix == prefix and "".join(result.shots) == prefix and len(result.shots) == config.n_shots


def test_a_few_scores_before_and_after_steering_the_post_model_with_the_base_direction(demo, result, config):
    rows = result.steered.query("direction == 'base' and model == 'post' and alpha == 1.0")
    rows = rows.groupby("label").head(N_STATEMENTS // 2)  # two true, two false
    prefixes = ["".join(result.shots[int(i)] for i in order.split()) for order in rows["order"]]
    statements, labels = list(rows["statement"]), rows["label"].to_numpy()
    kw = dict(prefix=prefixes, answers=tuple(result.answers), batch_size=config.batch_size)
    before = ts.steered_scores(demo.post, demo.tokenizer, statements, [], None, **kw)
    after = ts.steered_scores(demo.post, demo.tokenizer, statements, np.where(labels == 1, -1.0, 1.0),
                              steering_vectors(result)["base"], **kw)
    with torch.no_grad():  # the logits' magnitude, which the scores' tolerance is relative to
        prompts = [f"{p}{s} This statement is:" for p, s in zip(prefixes, statements)]
        logits = demo.post(**encode(demo.tokenizer, prompts)).logits[:, -1]
    # a logit is the end of a chain of dot products (18 blocks and the unembedding), each off by about
    # sqrt(MLP_WIDTH)·ε relative to its terms on another machine; a probability moves by at most a quarter of its
    # logits' change (the softmax's slope p(1 - p) <= 1/4), and a score is the difference of two probabilities
    tol = 2 * 0.25 * (demo.n_layers + 1) * math.sqrt(MLP_WIDTH) * EPS * float(logits.abs().max())
    assert np.abs(before - rows["score_before"].to_numpy()).max() <= tol
    assert np.abs(after - rows["score_after"].to_numpy()).max() <= tol
    assert np.abs(after - before).max() > 10 * tol  # the steering moved them beyond the tolerance
    effects = ts.normalised_effects(before, after, labels)
    np.testing.assert_allclose(effects, ts.normalised_effects(rows["score_before"].to_numpy(),
                                                              rows["score_after"].to_numpy(), labels),
                               atol=2 * tol / np.min(np.abs(np.where(labels == 1, -1, 1) - before)))
