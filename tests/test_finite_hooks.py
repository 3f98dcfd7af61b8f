"""Issue 27 §2: rows an intervention does not steer are never touched, so even a non-finite vector (which
Direction refuses, but a raw tensor can still carry) cannot reach them: they stay bit-identical to a run without
hooks. The hooks select the steered tokens; they do not multiply a 0/1 mask by the vector (0 x NaN is NaN)."""
import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from steering.interventions import ablate, add, affine_ablate, record
from steering.model_view import ModelView

PROMPTS = ["w1 w2 the cat is", "dog is", "w5 w6 w7 w8 a", "the dog"]
STEERED = [2, 3]


def _final(model, batch) -> torch.Tensor:
    return ModelView.of(model).decoder_stack(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                             use_cache=False).last_hidden_state


def _setup(model_type: str = "llama"):
    model = tiny_model(model_type)
    batch = tiny_tokenizer()(PROMPTS, return_tensors="pt", padding=True)
    nan = torch.full((ModelView.of(model).d_model,), float("nan"))
    return model, batch, nan


def _interventions(model, nan: torch.Tensor):
    d = nan.shape[0]
    return {
        "add": lambda: add(model, {0: nan, 1: nan}, rows=STEERED),
        "add per-row alpha": lambda: add(model, {1: nan}, [0.0, 0.0, 1.0, 2.0]),
        "add per-row vectors": lambda: add(model, {1: torch.cat([torch.zeros(2, d), nan.expand(2, d)])},
                                           rows=STEERED),
        "ablate": lambda: ablate(model, nan, rows=STEERED),
        "affine": lambda: affine_ablate(model, nan, {0: 0.5, 2: 1.0}, rows=STEERED),
        "affine per-row": lambda: affine_ablate(model, nan.expand(4, d).clone(),
                                                {1: torch.tensor([0.0, 0.0, 1.0, 1.0])}, rows=STEERED,
                                                positions=range(-2, 10_000)),
    }


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
@torch.no_grad()
def test_unsteered_rows_are_bit_identical_with_a_nan_vector(model_type):
    model, batch, nan = _setup(model_type)
    clean = _final(model, batch)
    for name, intervention in _interventions(model, nan).items():
        with intervention():
            got = _final(model, batch)
        assert torch.equal(got[:2], clean[:2]), name  # untouched: not even 0 x NaN
        assert torch.isnan(got[STEERED]).any(), name  # the steered rows did get the (NaN) vector


@torch.no_grad()
def test_unsteered_rows_stay_identical_through_generation():
    model, batch, nan = _setup()
    clean = model.generate(**batch, max_new_tokens=4, do_sample=False)
    with add(model, {1: nan}, rows=STEERED, positions="all"):
        steered = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert torch.equal(steered[:2], clean[:2])


@torch.no_grad()
def test_positions_outside_the_selection_are_untouched():
    model, batch, nan = _setup()
    with record(model, ["resid_pre.2"], positions="all") as clean:
        _final(model, batch)
    with add(model, {2: nan}, positions=(-1,)), record(model, ["resid_pre.2"], positions="all") as got:
        _final(model, batch)  # the recorder runs after the adder: it sees the stream the layer gets
    clean, got = clean.get("resid_pre.2"), got.get("resid_pre.2")
    assert torch.equal(got[:, :-1], clean[:, :-1])
    assert torch.isnan(got[:, -1]).all()
