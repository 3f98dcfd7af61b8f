"""The residual-stream hook points after a layer and before the final norm, and run_until (the decoder stack run
only as far as one hook point), on tiny models of every architecture, with Hugging Face's hidden states as oracle."""
import pytest
import torch
from tiny import MODEL_TYPES, tiny_model, tiny_tokenizer

from steering.errors import InvalidInputError
from steering.interventions import record, run_until
from steering.model_view import ModelView
from steering.neurons import final_norm_input

PROMPTS = ["w1 w2 the cat is", "dog is", "w5 w6 w7 w8 w9 w10 w11 a"]


def _batch():
    return tiny_tokenizer()(PROMPTS, return_tensors="pt", padding=True)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_run_until_reads_the_residual_stream_as_hidden_states_do_and_stops_there(model_type):
    model = tiny_model(model_type)
    view, batch = ModelView.of(model), _batch()
    with torch.no_grad():
        expected = model(**batch, output_hidden_states=True).hidden_states
    for layer in range(view.n_layers):  # hidden_states[l] is the input of layer l for l < n_layers
        later = [f"resid_post.{layer}", "resid_final"]
        with torch.no_grad(), record(model, [f"resid_pre.{layer}", *later], positions="all") as rec:
            run_until(model, f"resid_pre.{layer}", input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        torch.testing.assert_close(rec.get(f"resid_pre.{layer}"), expected[layer])
        assert all(rec.activations[point] == [] for point in later)  # layer `layer` itself never ran


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_resid_post_is_the_next_layers_input_and_resid_final_the_final_norms(model_type):
    model = tiny_model(model_type)
    view, batch = ModelView.of(model), _batch()
    last = view.n_layers - 1
    points = [f"resid_post.{layer}" for layer in range(view.n_layers)] + ["resid_final"]
    with torch.no_grad(), record(model, points, positions="all") as rec:
        expected = model(**batch, output_hidden_states=True).hidden_states
    for layer in range(last):
        torch.testing.assert_close(rec.get(f"resid_post.{layer}"), expected[layer + 1])
    torch.testing.assert_close(rec.get("resid_final"), rec.get(f"resid_post.{last}"))
    with torch.no_grad():  # Hugging Face's last hidden state is after the final norm
        torch.testing.assert_close(view.final_norm(rec.get("resid_final")), expected[-1])


def test_run_until_after_a_layer_runs_it_and_nothing_later():
    model = tiny_model("gemma3_text")
    batch = _batch()
    with torch.no_grad(), record(model, ["mlp_out.1", "resid_pre.2", "resid_final"], positions="all") as rec:
        run_until(model, "resid_post.1", input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    assert len(rec.activations["mlp_out.1"]) == 1
    assert rec.activations["resid_pre.2"] == [] and rec.activations["resid_final"] == []


def test_final_norm_input_records_each_pass_and_removes_its_hook_even_after_an_error():
    model, batch = tiny_model("llama"), _batch()
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), final_norm_input(model) as store:
        model(**batch)
        raise RuntimeError("boom")
    with torch.no_grad():
        model(**batch)
    assert len(store) == 1 and store[0].shape == (len(PROMPTS), batch.input_ids.shape[1], 32)


def test_unknown_hook_point_names_the_known_ones():
    model = tiny_model("llama")
    with pytest.raises(InvalidInputError, match="resid_post.L.*resid_final"):
        run_until(model, "resid_mid.1", input_ids=torch.tensor([[6, 7]]))
    with pytest.raises(InvalidInputError, match="Unknown hook point"):
        run_until(model, "resid_final.2", input_ids=torch.tensor([[6, 7]]))
