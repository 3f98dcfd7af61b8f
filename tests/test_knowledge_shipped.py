"""The shipped knowledge result (assets/demo/results/knowledge/) against a cheap recomputation on the demo pair: the
noise unit, the screening of the first traced fact, and its residual-stream cells at the last subject token, self
(base) and cross-model (base -> post), with the study's own functions.

The shipped numbers were computed on another processor: values are compared within tolerances written from the
float32 arithmetic (tests/numeric.py), and the answer's rank up to near ties."""
import pytest
import torch
from numeric import assert_close, logit_tolerance, rank_slack, sum_tolerance

from analyses.knowledge import STUDY, Config, default_data
from analyses.knowledge import trace as kt
from analyses.knowledge.screen import build_items
from steering.model_view import ModelView
from steering.tracing import clean_states, run_embeds, trace_grid

pytestmark = [pytest.mark.demo, pytest.mark.numeric]


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
    n_values = sum(len(it.subject) for it in items) * demo.base.config.hidden_size  # what the noise unit's std sums
    item = next(it for it in items if it.item == int(result.grids["item"].iloc[0]))
    inputs = {role: kt.corrupt(model, item, std, config.n_samples, config.seed + item.item)
              for role, model in demo.models().items()}
    screens = {role: kt.screen_many(model, [item], {item.item: inputs[role]}, config.batch_size)[item.item]
               for role, model in demo.models().items()}
    return config, std, item, inputs, screens, n_values


@pytest.fixture(scope="module")
def prob_tol(demo):
    """A probability p read from the logits is off by up to p·2Δz (tests/numeric.py); this is 2Δz."""
    return 2 * max(logit_tolerance(model, demo.tokenizer) for model in demo.models().values())


def test_the_noise_unit_matches(result, first):
    # a standard deviation over n embedding values: its sums are off by about √n·ε of its size, on each machine
    std, n_values = first[1], first[5]
    assert abs(std - result.noise_std) <= 2 * sum_tolerance(n_values, std)


def test_the_screening_of_the_first_fact_matches(demo, result, first, prob_tol):
    _, _, item, inputs, screens, _ = first
    kept = result.kept[result.kept["item"] == item.item].set_index("model")
    for role, screen in screens.items():
        assert abs(screen["clean"] - kept.loc[role, "clean"]) <= prob_tol * screen["clean"]
        assert abs(screen["corrupted"] - kept.loc[role, "corrupted"]) <= prob_tol * screen["clean"]
        assert screen["label"] == kept.loc[role, "label"]
        # the answer's rank moves by at most the number of tokens whose probability is a near tie with it
        with torch.no_grad():
            probs = run_embeds(demo.models()[role], inputs[role].clean[None], lambda p: p)[0]
        token = item.readout.token_ids[0]
        slack = rank_slack(probs, token, prob_tol * float(probs[token]))
        assert abs(screen["rank"] - kept.loc[role, "rank"]) <= slack, (role, screen["rank"], slack)


def _last_subject_cells(demo, first, source: str, target: str):
    """The target's corrupted run with the source's clean residual stream restored at the last subject token."""
    config, _, item, inputs, screens, _ = first
    n_layers = ModelView.of(demo.models()[target]).n_layers
    cells = [(item.subject[-1], layer) for layer in range(n_layers)]
    states = clean_states(demo.models()[source], inputs[source], "resid", range(n_layers))
    with torch.no_grad():
        scores = trace_grid(demo.models()[target], inputs[target], states, cells, "resid", item.readout,
                            window=config.window, batch_size=config.batch_size,
                            corrupted_scores=screens[target]["corrupted_samples"], same_model=source == target)
    return kt.grid_frame(item, cells, scores, screens[target]["clean"], screens[target]["corrupted"])


def _assert_cells_close(mine, theirs, prob_tol: float, screen: dict, scores: bool = True) -> None:
    """Scores are probabilities (off by p·2Δz); norm = (score - corrupted) / (clean - corrupted) moves by the
    errors of its three probabilities over the clean-corrupted gap."""
    p_tol = prob_tol * max(float(mine["score"].max()), screen["clean"])
    gap = screen["clean"] - screen["corrupted"]
    norm_tol = p_tol * (2 + 2 * mine["norm"].abs().max()) / abs(gap)
    assert_close(mine["norm"], theirs["norm"], norm_tol, "norm")
    if scores:
        assert_close(mine["score"], theirs["score"], p_tol, "score")


def test_the_base_models_own_cells_match(demo, result, first, prob_tol):
    mine = _last_subject_cells(demo, first, "base", "base")
    grids = result.grids
    theirs = grids[(grids["model"] == "base") & (grids["component"] == "resid") & (grids["item"] == first[2].item)
                   & (grids["position"] == first[2].subject[-1])].sort_values("layer")
    assert len(theirs) == len(mine) > 0
    _assert_cells_close(mine, theirs, prob_tol, first[4]["base"])


def test_cross_model_cells_match(demo, result, first, prob_tol):
    mine = _last_subject_cells(demo, first, "base", "post")
    cross = result.cross
    theirs = cross[(cross["direction"] == "base→post") & (cross["item"] == first[2].item)
                   & (cross["position"] == first[2].subject[-1])].sort_values("layer")
    assert len(theirs) == len(mine) > 0
    _assert_cells_close(mine, theirs, prob_tol, first[4]["post"], scores=False)
