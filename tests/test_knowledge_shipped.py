"""The shipped knowledge result (assets/demo/results/knowledge/) against a cheap recomputation on the demo pair: the
noise unit, the screening of the first traced fact, and its residual-stream cells at the last subject token, self
(base) and cross-model (base -> post), with the study's own functions."""
import numpy as np
import pytest
import torch

from analyses.knowledge import STUDY, Config, default_data
from analyses.knowledge import trace as kt
from analyses.knowledge.screen import build_items
from steering.model_view import ModelView
from steering.tracing import clean_states, trace_grid

pytestmark = pytest.mark.demo
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def demo(demo_pair):
    return demo_pair


@pytest.fixture(scope="module")
def result(shipped_result):
    return shipped_result(STUDY)


@pytest.fixture(scope="module")
def first(demo, result):
    """The first traced fact, rebuilt as the study builds it, with the noise unit over every screened item."""
    config = Config()
    items, _ = build_items(default_data(demo, config).head(config.n_screen), demo.tokenizer, config)
    std = config.noise_scale * kt.subject_embedding_std(demo.base, items)
    item = next(it for it in items if it.item == int(result.grids["item"].iloc[0]))
    inputs = {role: kt.corrupt(model, item, std, config.n_samples, config.seed + item.item)
              for role, model in demo.models().items()}
    screens = {role: kt.screen_many(model, [item], {item.item: inputs[role]}, config.batch_size)[item.item]
               for role, model in demo.models().items()}
    return config, std, item, inputs, screens


def test_the_noise_unit_matches(result, first):
    assert abs(first[1] - result.noise_std) < TOLERANCE


def test_the_screening_of_the_first_fact_matches(result, first):
    _, _, item, _, screens = first
    kept = result.kept[result.kept["item"] == item.item].set_index("model")
    for role, screen in screens.items():
        assert abs(screen["clean"] - kept.loc[role, "clean"]) < TOLERANCE
        assert abs(screen["corrupted"] - kept.loc[role, "corrupted"]) < TOLERANCE
        assert screen["rank"] == kept.loc[role, "rank"] and screen["label"] == kept.loc[role, "label"]


def _last_subject_cells(demo, first, source: str, target: str):
    """The target's corrupted run with the source's clean residual stream restored at the last subject token."""
    config, _, item, inputs, screens = first
    n_layers = ModelView.of(demo.models()[target]).n_layers
    cells = [(item.subject[-1], layer) for layer in range(n_layers)]
    states = clean_states(demo.models()[source], inputs[source], "resid", range(n_layers))
    with torch.no_grad():
        scores = trace_grid(demo.models()[target], inputs[target], states, cells, "resid", item.readout,
                            window=config.window, batch_size=config.batch_size,
                            corrupted_scores=screens[target]["corrupted_samples"], same_model=source == target)
    return kt.grid_frame(item, cells, scores, screens[target]["clean"], screens[target]["corrupted"])


def test_the_base_models_own_cells_match(demo, result, first):
    mine = _last_subject_cells(demo, first, "base", "base")
    grids = result.grids
    theirs = grids[(grids["model"] == "base") & (grids["component"] == "resid") & (grids["item"] == first[2].item)
                   & (grids["position"] == first[2].subject[-1])].sort_values("layer")
    assert len(theirs) == len(mine) > 0
    np.testing.assert_allclose(mine["norm"].to_numpy(), theirs["norm"].to_numpy(), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(mine["score"].to_numpy(), theirs["score"].to_numpy(), rtol=0, atol=TOLERANCE)


def test_cross_model_cells_match(demo, result, first):
    mine = _last_subject_cells(demo, first, "base", "post")
    cross = result.cross
    theirs = cross[(cross["direction"] == "base→post") & (cross["item"] == first[2].item)
                   & (cross["position"] == first[2].subject[-1])].sort_values("layer")
    assert len(theirs) == len(mine) > 0
    np.testing.assert_allclose(mine["norm"].to_numpy(), theirs["norm"].to_numpy(), rtol=0, atol=TOLERANCE)
