"""Integration on the real demo pair: entropy-neuron candidates from the weights alone, and the fast last-layer
ablation against the reference (today's path) on two neurons."""
import pytest
from numeric import assert_close
from test_confidence_speed import ablation_tolerance

from analyses.confidence import Config, geometries, score_model
from analyses.confidence.weights import iou, score_correlations
from steering import load_pair

pytestmark = pytest.mark.demo


@pytest.fixture(scope="module")
def pair():
    return load_pair("demo")


def test_demo_pair_has_the_same_null_space_entropy_neurons_in_both_models(pair):
    layer, config = pair.n_layers - 1, Config()
    geometry = geometries(pair.models())  # one SVD: the LoRA fine-tune left the unembedding and final norm alone
    assert geometry["base"] is geometry["post"]
    scored = {role: score_model(model, layer, config, geometry[role]) for role, model in pair.models().items()}
    (base, _, base_ids), (post, _, post_ids) = scored["base"], scored["post"]
    assert iou(base_ids, post_ids) >= 0.8
    for scores in (base, post):  # measured: neurons 1650 and 1026 put 0.99 / 0.97 of their weight in the null space
        strong = scores[scores["candidate"] & (scores["null_frac"] > 0.9)]["neuron"].tolist()
        assert {1650, 1026} <= set(strong)
        assert scores["null_frac"].median() < 0.2
    assert (score_correlations(base, post)[["pearson", "spearman"]] > 0.99).all().all()


@pytest.mark.numeric
def test_fast_ablation_matches_the_reference_on_the_demo_base(pair):
    from analyses.confidence import ablation as abl
    from analyses.confidence import heldout_texts
    config = Config()
    # the first two batches: the comparison is per token, so a slice of the texts tests the same arithmetic
    batches = abl.text_batches(pair.tokenizer, heldout_texts(), config.max_tokens, config.batch_size)[:2]
    layer = pair.n_layers - 1
    clean = abl.clean_run(pair.base, batches, layer)
    groups = {"candidate": [1026], "random": [7]}  # the strongest entropy neuron (measured) and a control
    fast = abl.ablation_table(pair.base, batches, layer, groups, clean, lambda d, t: None)
    reference = abl.ablation_table(pair.base, batches, layer, groups, clean, lambda d, t: None, fast=False)
    columns = [c for c in fast.columns if c.startswith("d_")]
    assert_close(fast[columns], reference[columns], ablation_tolerance(pair.base, pair.tokenizer, clean), "effects")
    assert fast.loc[0, "d_entropy_total"] > 0.01  # measured 0.039: the neuron does move the entropy
