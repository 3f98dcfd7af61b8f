"""Per-row vectors in add and affine_ablate: a batch whose rows carry their own direction gives each row what the
one-direction intervention gives it, a zero addition leaves its row exactly as it is, and a wrong row count is
refused."""
import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from steering.errors import InvalidInputError
from steering.interventions import add, affine_ablate
from steering.model_view import ModelView

pytestmark = pytest.mark.numeric  # per-row interventions against single rows

PROMPTS = ["w1 w2 the cat is", "dog is", "w5 w6 w7 w8 w9 w10 w11 a"]


def _final(model, batch):
    view = ModelView.of(model)
    return view.decoder_stack(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                              use_cache=False).last_hidden_state


@pytest.mark.parametrize("model_type", ["gemma3_text", "llama", "gpt2"])
@torch.no_grad()
def test_per_row_addition_is_each_rows_own_addition(model_type):
    model, batch = tiny_model(model_type), tiny_tokenizer()(PROMPTS, return_tensors="pt", padding=True)
    vectors = torch.randn(3, ModelView.of(model).d_model, generator=torch.Generator().manual_seed(0))
    vectors[1] = 0.0
    clean = _final(model, batch)
    with add(model, {1: vectors}):
        got = _final(model, batch)
    for row in (0, 2):
        with add(model, {1: vectors[row]}):
            torch.testing.assert_close(got[row], _final(model, batch)[row], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(got[row], clean[row], atol=1e-3)
    assert torch.equal(got[1], clean[1])  # a zero row adds exactly nothing


@pytest.mark.parametrize("positions", [(-2, -1), range(-2, 10_000)])
@torch.no_grad()
def test_per_row_affine_ablation_is_each_rows_own_ablation(positions):
    model, batch = tiny_model("gemma3_text"), tiny_tokenizer()(PROMPTS, return_tensors="pt", padding=True)
    view = ModelView.of(model)
    directions = torch.randn(3, view.d_model, generator=torch.Generator().manual_seed(1))
    reference = {layer: torch.tensor([0.5 * layer, -1.0, 2.0 + layer]) for layer in range(view.n_layers)}
    with affine_ablate(model, directions, reference, positions=positions):
        got = _final(model, batch)
    for row in range(3):
        own = {layer: float(c[row]) for layer, c in reference.items()}
        with affine_ablate(model, directions[row], own, positions=positions):
            torch.testing.assert_close(got[row], _final(model, batch)[row], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_per_row_vectors_must_match_the_batch():
    model, batch = tiny_model("llama"), tiny_tokenizer()(PROMPTS, return_tensors="pt", padding=True)
    two = torch.randn(2, ModelView.of(model).d_model)
    with pytest.raises(InvalidInputError, match="per-row"), add(model, {0: two}):
        _final(model, batch)
    with pytest.raises(InvalidInputError, match="per-row"), affine_ablate(model, two, {0: torch.zeros(2)}):
        _final(model, batch)
