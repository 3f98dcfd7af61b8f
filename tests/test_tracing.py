"""The batched patching engine on tiny models: restoring the clean state gives the clean output, corruption moves
it, and batched grids equal a one-pass-per-cell loop built on interventions.patch."""
import functools

import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from steering.errors import InvalidInputError
from steering.model_view import ModelView
from steering.tracing import (Readout, clean_states, full_grid, noise_corruption, paired_corruption, restorer,
                              run_embeds,
                              trace_cell_loop, trace_grid, window_layers)

pytestmark = pytest.mark.numeric  # batched grids against per-cell loops


def _ids(text: str) -> torch.Tensor:
    return torch.tensor(tiny_tokenizer()(text).input_ids)


@functools.lru_cache
def _model(model_type: str):
    return tiny_model(model_type)


@pytest.fixture(params=["gemma3_text", "llama"])
def setup(request):
    return _setup(request.param)


def _setup(model_type: str):
    model = _model(model_type)
    ids = _ids("the cat w3 w4 is a dog")
    obj = tiny_tokenizer().convert_tokens_to_ids("true")
    return model, ids, Readout((obj,), (1.0,))


def test_noise_lowers_and_full_restore_gives_back_the_clean_probability(setup) -> None:
    model, ids, readout = setup
    n_layers = ModelView.of(model).n_layers
    inp = noise_corruption(model, ids, [2, 3], std=3.0, n_samples=2, seed=0)
    clean = run_embeds(model, inp.clean[None], readout)
    corrupted = run_embeds(model, inp.corrupted, readout)
    assert (corrupted - clean).abs().min() > 1e-4  # the corruption moves the output
    states = clean_states(model, inp, "resid", range(n_layers))
    # the whole clean residual stream (every token) at any layer gives the clean output
    every = list(range(len(ids)))
    for layer in range(n_layers):
        point = f"resid_pre.{layer}"
        restored = run_embeds(model, inp.corrupted, readout,
                              [(point, restorer(states[point], [0] * len(every) + [1] * len(every), every * 2))])
        torch.testing.assert_close(restored, clean.expand(2), atol=1e-6, rtol=1e-5)


def test_restoring_the_only_corrupted_token_at_the_input_gives_clean_exactly(setup) -> None:
    model, ids, readout = setup
    inp = noise_corruption(model, ids, [3], std=3.0, n_samples=3, seed=1)
    states = clean_states(model, inp, "resid", [0])
    restored = trace_grid(model, inp, states, [(3, 0)], "resid", readout)
    clean = run_embeds(model, inp.clean[None], readout)
    torch.testing.assert_close(restored[:, 0], clean.expand(3), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("model_type,component", [("gemma3_text", "resid"), ("gemma3_text", "mlp"),
                                                  ("llama", "attn")])
def test_batched_grid_equals_the_per_cell_loop(model_type: str, component: str) -> None:
    model, ids, readout = _setup(model_type)
    n_layers = ModelView.of(model).n_layers
    inp = noise_corruption(model, ids, [2, 3], std=3.0, n_samples=2, seed=0)
    states = clean_states(model, inp, component, range(n_layers))
    cells = full_grid(range(len(ids)), n_layers)
    batched = trace_grid(model, inp, states, cells, component, readout, window=2, batch_size=7)
    loop = trace_cell_loop(model, inp, states, cells, component, readout, window=2)
    torch.testing.assert_close(batched, loop, atol=1e-5, rtol=0)
    corrupted = run_embeds(model, inp.corrupted, readout)
    assert torch.equal(batched[:, 0], corrupted)  # tokens before the subject: the corrupted score, not computed


def test_paired_corruption_and_cross_model_states() -> None:
    base, post = tiny_model("gemma3_text", seed=1), tiny_model("gemma3_text", seed=2)
    clean_ids, wrong_ids = _ids("the cat w3 is a dog"), _ids("the cat w7 is a dog")
    readout = Readout(tuple(tiny_tokenizer().convert_tokens_to_ids(["true", "false"])), (1.0, -1.0))
    inp_post = paired_corruption(post, clean_ids, wrong_ids)
    assert inp_post.first_corrupted == 2 == clean_ids.tolist().index(tiny_tokenizer().convert_tokens_to_ids("w3"))
    states_base = clean_states(base, paired_corruption(base, clean_ids, wrong_ids), "resid", range(3))
    cells = full_grid(range(6), 3)
    batched = trace_grid(post, inp_post, states_base, cells, "resid", readout, batch_size=5, same_model=False)
    loop = trace_cell_loop(post, inp_post, states_base, cells, "resid", readout)
    torch.testing.assert_close(batched, loop, atol=1e-5, rtol=0)
    with pytest.raises(InvalidInputError, match="same token length"):
        paired_corruption(post, clean_ids, _ids("the cat w3 w4 is a dog"))


def test_window_is_clipped_at_the_edges() -> None:
    assert window_layers(0, 18, "mlp", 10) == list(range(0, 5))
    assert window_layers(9, 18, "attn", 10) == list(range(4, 14))
    assert window_layers(17, 18, "mlp", 10) == list(range(12, 18))
    assert window_layers(5, 18, "resid", 10) == [5]
