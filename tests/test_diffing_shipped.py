"""The shipped diffing result (assets/demo/results/diffing/) against a cheap slice recomputed now on the demo pair
with the study's own functions: the harmless turn's per-token table and lens, the activation difference and its
reading at the layer where its relative norm peaks, and its cosines with the shipped study directions (read where
shown, not stored with the run).

The shipped numbers were computed on another processor: values are compared within tolerances written from the
float32 arithmetic (tests/numeric.py), and ranks, argmaxes and top-k lists agree up to near ties."""
import numpy as np
import pytest
import torch
from numeric import (assert_argmax_agrees, assert_close, assert_top_k_agree, forward_tolerance, logit_tolerance,
                     rank_slack, sum_tolerance)

from analyses.diffing import STUDY, Config, default_data
from analyses.diffing import difference as dif
from analyses.diffing.compare import study_directions
from analyses.diffing.divergence import diff_text
from steering.lens import stack_pass, token_ids
from steering.model_view import ModelView

pytestmark = [pytest.mark.demo, pytest.mark.numeric]


@pytest.fixture(scope="module")
def result(shipped_result):
    return shipped_result(STUDY)


@pytest.fixture(scope="module")
def logit_tol(demo_pair):
    """Δz: how far two machines' logits of the post-trained model may be apart."""
    return logit_tolerance(demo_pair.post, demo_pair.tokenizer)


def test_the_harmless_turn_matches(demo_pair, result, logit_tol):
    config, data = Config(), default_data(demo_pair, Config())
    text = dict(data.texts)["harmless"]
    assert result.texts["harmless"] == text
    ids = token_ids(demo_pair.tokenizer, text, list(demo_pair.models().values()))
    ours = diff_text(demo_pair.tokenizer, demo_pair.models(), ids, config.position, config.top_n)
    stored = result.tokens[result.tokens["text"] == "harmless"].reset_index(drop=True)
    assert list(ours.tokens["token"]) == list(stored["token"])
    # each log-probability moves by up to 2Δz and each p by p·2Δz: KL by up to 4Δz plus 2Δz of its own size;
    # TV = ½Σ|p − q| by up to 2Δz
    for column, tol in (("kl_post_base", 4 * logit_tol), ("kl_base_post", 4 * logit_tol), ("tv", 2 * logit_tol)):
        assert_close(ours.tokens[column], stored[column], tol + 2 * logit_tol * stored[column].abs().max(), column)
    # the lens position is KL's argmax: theirs is ours or a near tie
    assert_argmax_agrees(ours.tokens["kl_post_base"], result.positions["harmless"], 4 * logit_tol)
    # a next token's rank moves by at most the number of tokens whose logit is within 2Δz of its own
    view = ModelView.of(demo_pair.post)
    with torch.no_grad():
        logits = view.logits(stack_pass(demo_pair.post, ids, [0])[0]).float()
    for position, (mine, theirs) in enumerate(zip(ours.tokens["rank_post"][:-1], stored["rank_post"][:-1])):
        slack = rank_slack(logits[position], int(ids[0, position + 1]), logit_tol)
        assert abs(int(mine) - int(theirs)) <= slack, (position, mine, theirs, slack)
    if ours.position == result.positions["harmless"]:  # the lens was read at the same position: top tokens agree
        lens = result.lens[result.lens["text"] == "harmless"]
        for (model, layer), rows in ours.lens.groupby(["model", "layer"]):
            theirs = lens[(lens["model"] == model) & (lens["layer"] == layer)].sort_values("rank")
            rows = rows.sort_values("rank")
            assert_top_k_agree(rows["token_id"].tolist(), rows["prob"].tolist(), theirs["token_id"].tolist(),
                               theirs["prob"].tolist(), 2 * logit_tol)  # p moves by p·2Δz <= 2Δz


def test_the_activation_difference_and_its_reading_match(demo_pair, result, logit_tol):
    config, data = Config(), default_data(demo_pair, Config())
    direction, delta, norms = dif.activation_difference(demo_pair, data.plain, config.k, config.batch_size,
                                                        STUDY.data_hash(data), lambda done, total: None)
    resid = torch.tensor(norms["resid_norm"].to_numpy(), dtype=torch.float32)
    # a difference of two models' mean streams: each side is off by forward_tolerance of the stream's size
    relative_tol = 2 * forward_tolerance(demo_pair.post, 1.0)
    assert_close(direction.vectors, result.difference.vectors, relative_tol * float(resid.max()), "difference")
    assert_close(norms["relative"], result.difference_norms["relative"], relative_tol, "relative norm")
    layers = result.difference_norms.iloc[:-1]["relative"]
    assert_argmax_agrees(norms["relative"].iloc[:-1], int(layers.idxmax()), relative_tol)
    layer = int(layers.idxmax())
    read = dif.read_difference(demo_pair, delta[layer:layer + 1], resid[layer:layer + 1], config.reading,
                               config.top_n)
    stored = result.difference_tokens[result.difference_tokens["layer"] == layer]
    # the reading unembeds the normalised difference, whose direction is off by relative_tol · resid / |delta|
    scale = read["score"].abs().max() * relative_tol * float(resid[layer] / delta[layer].norm())
    for kind, rows in read.groupby("kind"):
        theirs = stored[stored["kind"] == kind].sort_values("rank")
        assert_top_k_agree(rows["token_id"].tolist(), rows["score"].tolist(), theirs["token_id"].tolist(),
                           theirs["score"].tolist(), scale + logit_tol)


def test_the_shipped_difference_compares_with_every_shipped_study_direction(demo_pair, result):
    """The page reads the cosines when it shows them: the shipped difference has the shape of every shipped study
    direction of the demo pair (one cosine per layer each), and a cosine of unit vectors is within [-1, 1] up to
    the rounding of a dot product and two norms over d terms of size <= 1."""
    shipped = [(label, d) for label, d in study_directions(demo_pair) if label.endswith("(shipped)")]
    assert shipped, "no shipped refusal or truthfulness direction for the demo pair"
    ours = dif.cosines(result.difference, shipped)
    assert len(ours) == len(shipped) * result.difference.n_layers
    tol = 3 * sum_tolerance(result.difference.d_model, 1.0, worst=True)
    assert np.isfinite(ours["cosine"]).all() and ours["cosine"].abs().max() <= 1 + tol
