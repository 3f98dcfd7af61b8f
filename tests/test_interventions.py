"""The interventions on tiny random models of every supported architecture, against Hugging Face as oracle."""
import pytest
import torch
from tiny import MODEL_TYPES, tiny_model, tiny_tokenizer

from steering.errors import LayerOutOfRangeError, UnsupportedArchitectureError
from steering.interventions import ablate, add, patch, record
from steering.model_view import ModelView

PROMPTS = ["w1 w2 the cat is", "dog is", "w5 w6 w7 w8 w9 w10 w11 a"]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _inputs(tok, prompts=PROMPTS):
    return tok(prompts, return_tensors="pt", padding=True)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_record_matches_hidden_states(model_type, tok):
    model = tiny_model(model_type)
    view = ModelView.of(model)
    batch = _inputs(tok)
    points = [f"resid_pre.{layer}" for layer in range(view.n_layers)]
    with torch.no_grad(), record(model, points, positions="all") as rec:
        out = model(**batch, output_hidden_states=True)
    for layer in range(view.n_layers):  # hidden_states[l] is the input of layer l for l < n_layers
        torch.testing.assert_close(rec.get(f"resid_pre.{layer}"), out.hidden_states[layer])


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_ablation_leaves_no_component_anywhere(model_type, tok):
    model = tiny_model(model_type)
    view = ModelView.of(model)
    direction = torch.randn(view.d_model)
    unit = direction / direction.norm()
    points = [f"resid_pre.{layer}" for layer in range(view.n_layers)]
    with torch.no_grad(), ablate(model, direction), record(model, points, positions="all") as rec:
        out = model(**_inputs(tok), output_hidden_states=True)
    for layer in range(view.n_layers):
        assert rec.get(f"resid_pre.{layer}") @ unit == pytest.approx(0, abs=1e-4)
    with torch.no_grad(), ablate(model, direction), record(model, ["resid_final"], positions="all") as final:
        model(**_inputs(tok))  # the stream after the last layer (the final norm's input)
    assert (final.get("resid_final") @ unit).abs().max() < 1e-4
    assert not torch.allclose(out.logits, model(**_inputs(tok)).logits)  # and it did change the output


@pytest.mark.parametrize("model_type", ["gemma3_text", "llama", "gpt2"])
def test_add_moves_projection_by_alpha_at_that_layer(model_type, tok):
    model = tiny_model(model_type)
    layer, alpha = 1, 2.5
    unit = torch.nn.functional.normalize(torch.randn(ModelView.of(model).d_model), dim=0)
    point = f"resid_pre.{layer}"
    with torch.no_grad():
        with record(model, [point], positions="all") as clean:
            model(**_inputs(tok))
        with add(model, {layer: unit}, alpha), record(model, [point], positions="all") as steered:
            model(**_inputs(tok))
    delta = steered.get(point) - clean.get(point)
    torch.testing.assert_close(delta @ unit, torch.full(delta.shape[:2], alpha), atol=1e-4, rtol=0)
    torch.testing.assert_close(delta, alpha * unit.expand_as(delta), atol=1e-4, rtol=0)  # nothing else moved


def test_add_only_at_chosen_positions_and_rows(tok):
    model = tiny_model("llama")
    unit = torch.nn.functional.normalize(torch.randn(32), dim=0)
    with torch.no_grad():
        with record(model, ["resid_pre.2"], positions="all") as clean:
            model(**_inputs(tok))
        with add(model, {0: unit}, 1.0, positions=[-1], rows=[1]), record(model, ["resid_pre.0"], positions="all") as rec, \
                record(model, ["resid_pre.2"], positions="all") as later:
            model(**_inputs(tok))
    changed = (later.get("resid_pre.2") - clean.get("resid_pre.2")).norm(dim=-1) > 1e-5
    assert changed[1, -1] and changed.sum() == 1  # causal: only the last token of row 1 is affected
    assert rec.get("resid_pre.0").shape == clean.get("resid_pre.2").shape


def test_hooks_are_removed_after_an_exception(tok):
    model = tiny_model("gemma3_text")
    reference = model(**_inputs(tok)).logits
    with pytest.raises(RuntimeError, match="boom"):
        with ablate(model, torch.randn(32)), add(model, {0: torch.randn(32)}):
            raise RuntimeError("boom")
    hooked = [m for m in model.modules() if m._forward_hooks or m._forward_pre_hooks]
    assert hooked == []
    torch.testing.assert_close(model(**_inputs(tok)).logits, reference)


def test_batched_equals_one_at_a_time_with_left_padding(tok):
    model = tiny_model("gemma3_text")
    points = ["resid_pre.0", "resid_pre.2"]
    with torch.no_grad(), record(model, points, positions=(-2, -1)) as batched:
        model(**_inputs(tok))
    for i, prompt in enumerate(PROMPTS):
        with torch.no_grad(), record(model, points, positions=(-2, -1)) as single:
            model(**_inputs(tok, [prompt]))
        for point in points:
            torch.testing.assert_close(batched.get(point)[i], single.get(point)[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model_type", ["gemma3_text", "llama", "gpt_neox"])
def test_steered_generate_with_cache_equals_recompute(model_type, tok):
    model = tiny_model(model_type)
    batch = _inputs(tok)
    vector = 4.0 * torch.nn.functional.normalize(torch.randn(32), dim=0)
    n_new, prompt_len = 6, batch.input_ids.shape[1]
    kwargs = dict(max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        plain = model.generate(**batch, **kwargs)
        with add(model, {1: vector}, positions="all"):
            cached = model.generate(**batch, **kwargs, use_cache=True)
        with add(model, {1: vector}, positions="all"):
            uncached = model.generate(**batch, **kwargs, use_cache=False)
        # reference: grow the sequence by hand, re-running everything each step
        ids, mask = batch.input_ids, batch.attention_mask
        for _ in range(n_new):
            with add(model, {1: vector}, positions="all", prompt_length=prompt_len):
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    assert torch.equal(cached, ids) and torch.equal(uncached, ids)
    assert not torch.equal(plain, cached)  # the steering did something


def test_generated_only_positions_leave_the_prompt_alone(tok):
    model = tiny_model("llama")
    batch = _inputs(tok)
    vector = {0: 5 * torch.randn(32)}
    with torch.no_grad():
        with record(model, ["resid_pre.1"], positions="prompt") as clean:
            model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=0)
        with add(model, vector, positions="generated"), record(model, ["resid_pre.1"], positions="prompt") as steered:
            model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=0)
    torch.testing.assert_close(steered.activations["resid_pre.1"][0], clean.activations["resid_pre.1"][0])


def test_patch_restores_a_clean_state(tok):
    model = tiny_model("qwen2")
    clean, corrupt = _inputs(tok, ["w1 w2 the cat"]), _inputs(tok, ["w1 w3 the cat"])
    with torch.no_grad():
        with record(model, ["resid_pre.2"], positions=[-4, -3, -2, -1]) as rec:
            clean_logits = model(**clean).logits
        with patch(model, {"resid_pre.2": rec.get("resid_pre.2")}, positions=[-4, -3, -2, -1]):
            patched = model(**corrupt).logits
    torch.testing.assert_close(patched, clean_logits, atol=1e-5, rtol=1e-4)


def test_errors_name_the_problem():
    model = tiny_model("llama")
    with pytest.raises(LayerOutOfRangeError, match="0..2"):
        with add(model, {7: torch.randn(32)}):
            pass
    model.config.model_type = "bloom"
    with pytest.raises(UnsupportedArchitectureError, match="gemma3_text"):
        ModelView.of(model)


def test_add_with_one_alpha_per_row_equals_separate_runs(tok):
    model = tiny_model("llama")
    unit = torch.nn.functional.normalize(torch.randn(32), dim=0)
    batch = _inputs(tok, ["the cat is"] * 3)
    with torch.no_grad():
        with add(model, {1: unit}, [0.0, 2.0, -3.0]):
            together = model(**batch).logits
        for row, alpha in enumerate([0.0, 2.0, -3.0]):
            with add(model, {1: unit}, alpha):
                alone = model(**_inputs(tok, ["the cat is"])).logits
            torch.testing.assert_close(together[row], alone[0], atol=1e-5, rtol=1e-4)
