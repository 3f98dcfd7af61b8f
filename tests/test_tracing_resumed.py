"""The resumed batched engine (steering.tracing.trace_grids) against the references on every tiny architecture:
trace_grid (batched from layer 0) and trace_cell_loop (one pass per cell with interventions.patch)."""
import functools

import pytest
import torch
from tiny import MODEL_TYPES, tiny_model, tiny_tokenizer

from steering.errors import InvalidInputError
from steering.model_view import ModelView
from steering.tracing import (Grid, Readout, clean_states, clean_states_of, corrupted_stream, full_grid,
                              noise_corruption, plan_rows, run_embeds, trace_cell_loop, trace_grid, trace_grids,
                              window_layers)

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


def test_corrupted_stream_resumes_to_the_corrupted_output() -> None:
    model = _model("llama")
    inp, readout = _inputs(model)
    stream = corrupted_stream(model, inp)
    assert stream.shape == (ModelView.of(model).n_layers, 2, inp.n_tokens, ModelView.of(model).d_model)
    corrupted = run_embeds(model, inp.corrupted, readout)
    # with no cell restored, every start layer gives the corrupted score back
    empty = [Grid([], "resid", {})]
    assert trace_grids(model, inp, empty, readout, corrupted_scores=corrupted, stream=stream)[0].shape == (2, 0)
    torch.testing.assert_close(stream[0], inp.corrupted, atol=0, rtol=0)  # llama: layer 0's input is the embedding


def test_plan_sorts_rows_by_start_layer_and_skips_exact_no_ops() -> None:
    n_layers, window = 6, 4
    cells = full_grid(range(5), n_layers)
    grids = [Grid(cells, "resid", {}), Grid(cells, "mlp", {}), Grid(cells[:n_layers], "resid", {}, same_model=False)]
    batches = plan_rows(grids, n_layers, n_samples=2, first_corrupted=2, window=window, batch_size=7)
    rows = [row for batch in batches for row in batch]
    assert all(len(b) == 7 for b in batches[:-1]) and 0 < len(batches[-1]) <= 7
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)  # a batch resumes at its first row's start
    # resid and mlp cells from token 2 on (3 tokens), both samples; the cross grid's token-0 cells are computed
    assert len(rows) == 2 * (2 * 3 * n_layers + n_layers) == len(set(rows))
    for start, g, _, c in rows:
        token, layer = grids[g].cells[c]
        assert start == window_layers(layer, n_layers, grids[g].component, window)[0]
        assert token >= 2 or not grids[g].same_model


def test_missing_states_are_named() -> None:
    model = _model("llama")
    inp, readout = _inputs(model)
    states = clean_states_of(model, inp, ["resid"])
    with pytest.raises(InvalidInputError, match="No clean states cached for mlp_out"):
        trace_grids(model, inp, [Grid([(3, 1)], "mlp", states)], readout, window=2)
