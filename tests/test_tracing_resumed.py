"""The resumed batched engine (steering.tracing.trace_grids: each batch from its rows' smallest start layer and
token, over the corrupted run's KV cache) against the references on every tiny architecture: trace_grid (batched
from layer 0, every token) and trace_cell_loop (one pass per cell with interventions.patch)."""
import functools

import pytest
import torch
from tiny import MODEL_TYPES, tiny_model, tiny_tokenizer

from steering.errors import InvalidInputError
from steering.model_view import ModelView
from steering.resume import resume_at
from steering.tracing import (Grid, Readout, clean_states, clean_states_of, corrupted_run, corrupted_stream,
                              full_grid, noise_corruption, plan_cost, plan_rows, run_embeds, trace_cell_loop,
                              trace_grid, trace_grids, window_layers)

pytestmark = pytest.mark.numeric  # the fast engine against its references

COMPONENTS = ("resid", "mlp", "attn")


@functools.lru_cache
def _model(model_type: str, seed: int = 0):
    return tiny_model(model_type, seed=seed)


def _inputs(model):
    tok = tiny_tokenizer()
    ids = torch.tensor(tok("the cat w3 w4 is a dog").input_ids)
    readout = Readout((tok.convert_tokens_to_ids("true"),), (1.0,))
    return noise_corruption(model, ids, [2, 3], std=3.0, n_samples=2, seed=0), readout


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_resumed_grids_equal_the_batched_reference_on_every_architecture(model_type: str) -> None:
    model, other = _model(model_type), _model(model_type, seed=1)
    inp, readout = _inputs(model)
    n_layers = ModelView.of(model).n_layers
    cells = full_grid(range(inp.n_tokens), n_layers)
    states = clean_states_of(model, inp, COMPONENTS)
    foreign = clean_states_of(other, _inputs(other)[0], ["resid"])
    grids = [Grid(cells, c, states) for c in COMPONENTS] + [Grid(cells[n_layers:], "resid", foreign, False)]
    fast = trace_grids(model, inp, grids, readout, window=2, batch_size=5)
    for grid, got in zip(grids, fast):
        ref = trace_grid(model, inp, grid.states, grid.cells, grid.component, readout, window=2, batch_size=5,
                         same_model=grid.same_model)
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
        assert got.shape == (2, len(grid.cells)) and float(got.max() - got.min()) > 1e-6  # not constant


@pytest.mark.parametrize("model_type,component", [("gemma3_text", "mlp"), ("llama", "attn"), ("gpt2", "resid")])
def test_resumed_grid_equals_the_per_cell_loop(model_type: str, component: str) -> None:
    model = _model(model_type)
    inp, readout = _inputs(model)
    cells = full_grid(range(inp.n_tokens), ModelView.of(model).n_layers)
    states = clean_states_of(model, inp, [component])
    fast, = trace_grids(model, inp, [Grid(cells, component, states)], readout, window=2, batch_size=64)
    loop = trace_cell_loop(model, inp, states, cells, component, readout, window=2)
    torch.testing.assert_close(fast, loop, atol=1e-5, rtol=0)


def test_clean_states_of_equals_clean_states_per_component() -> None:
    model = _model("gemma3_text")
    inp, _ = _inputs(model)
    together = clean_states_of(model, inp, COMPONENTS)
    n_layers = ModelView.of(model).n_layers
    for component in COMPONENTS:
        for name, value in clean_states(model, inp, component, range(n_layers)).items():
            assert torch.equal(together[name], value)
    assert len(together) == 3 * n_layers


def test_corrupted_run_keeps_every_layers_input_and_cache() -> None:
    model = _model("gemma3_text")  # sliding-window layers: their own cache would keep only the window
    inp, readout = _inputs(model)
    view = ModelView.of(model)
    run = corrupted_run(model, inp)
    assert run.stream.shape == (view.n_layers, 2, inp.n_tokens, view.d_model)
    torch.testing.assert_close(run.stream, corrupted_stream(model, inp), atol=1e-6, rtol=0)
    assert all(k.shape[0] == 2 and k.shape[2] == inp.n_tokens for k in run.keys)
    # the last tokens resumed at a layer over the cache of the first ones give the corrupted output back
    samples, first = torch.tensor([1, 0, 1]), 3
    with resume_at(model, 2, run.stream[2][samples][:, first:]):
        hidden = view.decoder_stack(inputs_embeds=inp.corrupted[samples][:, first:],
                                    cache=run.cache(model, samples, first), use_cache=True).last_hidden_state
    full = view.decoder_stack(inputs_embeds=inp.corrupted[samples], use_cache=False).last_hidden_state
    torch.testing.assert_close(hidden, full[:, first:], atol=1e-5, rtol=0)
    empty = [Grid([], "resid", {})]
    corrupted = run_embeds(model, inp.corrupted, readout)
    assert trace_grids(model, inp, empty, readout, corrupted_scores=corrupted, run=run)[0].shape == (2, 0)


def test_plan_keeps_every_row_once_and_runs_fewer_token_layers_than_sorting_by_layer() -> None:
    n_layers, window, n_tokens = 6, 4, 5
    cells = full_grid(range(n_tokens), n_layers)
    grids = [Grid(cells, "resid", {}), Grid(cells, "mlp", {}), Grid(cells[:n_layers], "resid", {}, same_model=False)]
    batches = plan_rows(grids, n_layers, n_samples=2, first_corrupted=2, window=window, batch_size=7,
                        n_tokens=n_tokens)
    rows = [row for batch in batches for row in batch]
    assert all(0 < len(b) <= 7 for b in batches)
    # resid and mlp cells from token 2 on (3 tokens), both samples; the cross grid's token-0 cells are computed
    assert len(rows) == 2 * (2 * 3 * n_layers + n_layers) == len(set(rows))
    for start, token, g, _, c in rows:
        assert (token, start) == (grids[g].cells[c][0],
                                  window_layers(grids[g].cells[c][1], n_layers, grids[g].component, window)[0])
        assert token >= 2 or not grids[g].same_model
    by_layer = sorted(rows)
    layer_sorted = [by_layer[i:i + 7] for i in range(0, len(by_layer), 7)]
    assert plan_cost(batches, n_layers, n_tokens) < plan_cost(layer_sorted, n_layers, n_tokens)


def test_missing_states_are_named() -> None:
    model = _model("llama")
    inp, readout = _inputs(model)
    states = clean_states_of(model, inp, ["resid"])
    with pytest.raises(InvalidInputError, match="No clean states cached for mlp_out"):
        trace_grids(model, inp, [Grid([(3, 1)], "mlp", states)], readout, window=2)


def test_plan_leaves_out_layer_0_residual_cells_at_clean_inputs() -> None:
    model = _model("llama")
    inp, _ = _inputs(model)  # noise on tokens 2 and 3
    assert inp.uncorrupted() == frozenset(range(inp.n_tokens)) - {2, 3}
    n_layers = ModelView.of(model).n_layers
    cells = full_grid(range(inp.n_tokens), n_layers)
    grids = [Grid(cells, "resid", {}), Grid(cells, "mlp", {}), Grid(cells, "resid", {}, same_model=False)]
    rows = [r for b in plan_rows(grids, n_layers, 2, inp.first_corrupted, 2, 8, inp.n_tokens, inp.uncorrupted())
            for r in b]
    layer_0 = {(g, grids[g].cells[c][0]) for _, _, g, _, c in rows if grids[g].cells[c][1] == 0}
    assert {t for g, t in layer_0 if g == 0} == {2, 3}  # own residual stream: only the corrupted tokens
    assert {t for g, t in layer_0 if g == 1} == set(range(2, inp.n_tokens))  # the MLP window mixes tokens
    assert {t for g, t in layer_0 if g == 2} == set(range(inp.n_tokens))  # another model's states: all
