"""affine_ablate (Marshall et al. 2024): the projection on u becomes c_l at the chosen positions, nothing else moves."""
import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from steering.errors import InvalidInputError
from steering.interventions import affine_ablate, record
from steering.model_view import ModelView

PROMPTS = ["w1 w2 the cat is", "dog is", "w5 w6 w7 w8 w9 w10 w11 a"]


@pytest.mark.parametrize("positions", [(-2, -1), range(-2, 10_000)])
def test_projection_equals_reference_at_chosen_positions_only(positions):
    model, tok = tiny_model("gemma3_text"), tiny_tokenizer()
    view = ModelView.of(model)
    torch.manual_seed(0)
    direction = torch.randn(view.d_model)
    unit = direction / direction.norm()
    reference = {layer: 0.5 * (layer + 1) for layer in range(view.n_layers)}
    points = [f"resid_pre.{layer}" for layer in range(view.n_layers)]
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad(), record(model, points, positions="all") as plain:
        model(**batch)
    with torch.no_grad(), affine_ablate(model, direction, reference, positions=positions), \
            record(model, points, positions="all") as rec:
        model(**batch)
    for layer in range(view.n_layers):
        got = rec.get(f"resid_pre.{layer}")
        assert torch.allclose(got[:, -2:] @ unit, torch.full((3, 2), reference[layer]), atol=1e-4)
        if layer == 0:  # before any change has flowed through a layer, other positions are untouched
            torch.testing.assert_close(got[:, :-2], plain.get("resid_pre.0")[:, :-2])
    torch.testing.assert_close(rec.get("resid_pre.2")[:, :-2], plain.get("resid_pre.2")[:, :-2])  # causal


def test_range_positions_reach_generated_tokens_and_missing_reference_raises():
    model, tok = tiny_model("gemma3_text"), tiny_tokenizer()
    direction = torch.randn(ModelView.of(model).d_model)
    unit = direction / direction.norm()
    batch = tok(PROMPTS[:1], return_tensors="pt")
    with torch.no_grad(), affine_ablate(model, direction, {1: 3.0}, positions=range(-1, 10_000)), \
            record(model, ["resid_pre.1"], positions="generated") as rec:
        model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    seen = torch.cat([a for a in rec.activations["resid_pre.1"] if a.shape[1]], dim=1)  # one per generated step
    assert seen.shape[1] == 2  # the first two generated tokens are fed back in; the third is only sampled
    assert torch.allclose(seen @ unit, torch.full(seen.shape[:2], 3.0), atol=1e-4)
    with pytest.raises(InvalidInputError, match="reference"):
        with affine_ablate(model, direction, {1: 3.0}, layers=[0, 1]):
            pass


def test_a_strength_moves_the_projection_that_share_of_the_way_and_one_per_row_is_each_alone():
    model, tok = tiny_model("gemma3_text"), tiny_tokenizer()
    view = ModelView.of(model)
    direction = torch.randn(view.d_model, generator=torch.Generator().manual_seed(1))
    unit = direction / direction.norm()
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    point = "resid_pre.1"

    def entering(**kwargs):
        with torch.no_grad(), affine_ablate(model, direction, {1: 2.0}, layers=[1], **kwargs), \
                record(model, [point], positions="all") as rec:
            model(**batch)
        return rec.get(point)

    with torch.no_grad(), record(model, [point], positions="all") as plain:
        model(**batch)
    before = plain.get(point) @ unit
    whole = entering()
    assert torch.equal(entering(strength=1.0), whole)  # strength 1 is the ablation, bit for bit
    assert torch.equal(entering(strength=0.0), plain.get(point))  # 0 changes nothing at all
    half = entering(strength=0.5) @ unit
    # the projection moves half way to c = 2: one dot product of d terms of size |h| apart
    assert torch.allclose(half, before + 0.5 * (2.0 - before), atol=1e-4 * float(before.abs().max() + 2))
    rows = entering(strength=[0.0, 0.5, 1.0])  # one strength per prompt: each row as if it ran alone
    torch.testing.assert_close(rows[0], plain.get(point)[0])
    torch.testing.assert_close(rows[1] @ unit, half[1])
    torch.testing.assert_close(rows[2], whole[2])
    with pytest.raises(InvalidInputError, match="one per batch row"):
        entering(strength=[0.5, 1.0])
    with pytest.raises(InvalidInputError, match="finite"):
        entering(strength=[0.5, float("nan"), 1.0])
