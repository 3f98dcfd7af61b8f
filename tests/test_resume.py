"""steering/resume.py: resuming a pass at layer l from the stored stream gives the full pass's outputs, on tiny
models of every architecture, and the skipped layers never run."""
import pytest
import torch
from tiny import MODEL_TYPES, tiny_model, tiny_tokenizer

from steering.errors import InvalidInputError, LayerOutOfRangeError
from steering.interventions import add, record
from steering.model_view import ModelView
from steering.resume import resume_at

pytestmark = pytest.mark.numeric  # resumed passes against full passes

PROMPTS = ["w1 w2 the cat is", "dog is", "w5 w6 w7 w8 w9 w10 w11 a"]


def _batch():
    return tiny_tokenizer()(PROMPTS, return_tensors="pt", padding=True)


def _final(model, batch):
    view = ModelView.of(model)
    return view.decoder_stack(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                              use_cache=False).last_hidden_state


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@torch.no_grad()
def test_resuming_at_any_layer_gives_the_full_pass_with_an_addition_there(model_type):
    model, batch = tiny_model(model_type), _batch()
    view = ModelView.of(model)
    vector = torch.randn(view.d_model, generator=torch.Generator().manual_seed(1))
    for layer in range(view.n_layers):
        with record(model, [f"resid_pre.{layer}"], positions="all") as rec:
            clean = _final(model, batch)
        with add(model, {layer: vector}):
            expected = _final(model, batch)
        with resume_at(model, layer, rec.get(f"resid_pre.{layer}")):
            torch.testing.assert_close(_final(model, batch), clean, atol=1e-5, rtol=1e-5)
            with add(model, {layer: vector}):
                torch.testing.assert_close(_final(model, batch), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_final(model, batch), clean)  # the layers run again after the block


@torch.no_grad()
def test_skipped_layers_never_run_and_bad_input_is_refused():
    model, batch = tiny_model("gemma3_text"), _batch()
    view = ModelView.of(model)
    with record(model, ["resid_pre.2"], positions="all") as rec:
        _final(model, batch)
    ran = []
    handles = [view.attn_out(i).register_forward_hook(lambda *a, i=i: ran.append(i)) for i in range(3)]
    try:
        with resume_at(model, 2, rec.get("resid_pre.2")):
            _final(model, batch)
    finally:
        for h in handles:
            h.remove()
    assert ran == [2]
    with pytest.raises(InvalidInputError, match="stored stream"), resume_at(model, 2, rec.get("resid_pre.2")[:1]):
        _final(model, batch)
    with pytest.raises(LayerOutOfRangeError):
        with resume_at(model, 3, rec.get("resid_pre.2")):
            pass
