"""Integration: entropy-neuron candidates on the real demo pair, from the weights alone (no ablation, fast)."""
import pytest

from analyses.confidence import Config, geometries, score_model
from analyses.confidence.weights import iou, score_correlations
from steering import load_pair

pytestmark = pytest.mark.demo


def test_demo_pair_has_the_same_null_space_entropy_neurons_in_both_models():
    pair = load_pair("demo")
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
