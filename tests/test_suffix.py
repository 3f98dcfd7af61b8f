"""steering/suffix.py: the last k tokens run against the prefix's cache give the full pass's states there, with
or without an intervention on those tokens, on tiny models of every architecture (left padding included)."""
import pytest
import torch
from tiny import MODEL_TYPES, tiny_model, tiny_tokenizer

from steering.errors import InvalidInputError
from steering.interventions import add
from steering.model_view import ModelView
from steering.suffix import run_prefix, run_suffix

pytestmark = pytest.mark.numeric  # suffix passes against full passes

PROMPTS = ["w1 w2 the cat is", "dog is a", "w5 w6 w7 w8 w9 w10 w11 a"]


def _batch():
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    return tok(PROMPTS, return_tensors="pt", padding=True)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@torch.no_grad()
def test_the_suffix_pass_matches_the_full_pass_with_an_addition_on_it(model_type):
    model, batch = tiny_model(model_type), _batch()
    view = ModelView.of(model)
    vector = torch.randn(view.d_model, generator=torch.Generator().manual_seed(1))
    alphas = [0.5, -1.0, 2.0]  # one per prompt
    k = 2
    full = view.decoder_stack(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                              use_cache=False).last_hidden_state
    with add(model, {1: vector}, alpha=alphas, positions=[-2, -1]):
        steered = view.decoder_stack(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                     use_cache=False).last_hidden_state
    prefix = run_prefix(model, batch.input_ids, batch.attention_mask, k)
    torch.testing.assert_close(run_suffix(model, prefix), full[:, -k:], atol=1e-5, rtol=1e-5)
    repeated = [a for a in alphas for _ in range(2)]  # each prompt twice, adjacent
    with add(model, {1: vector}, alpha=repeated, positions=[-2, -1], prompt_length=prefix.length):
        out = run_suffix(model, prefix, repeats=2)
    torch.testing.assert_close(out[0::2], steered[:, -k:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1::2], steered[:, -k:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(run_suffix(model, prefix), full[:, -k:], atol=1e-5, rtol=1e-5)  # cache unchanged


def test_a_suffix_as_long_as_the_prompt_is_refused():
    model, batch = tiny_model("llama"), _batch()
    with pytest.raises(InvalidInputError, match="suffix"):
        run_prefix(model, batch.input_ids, batch.attention_mask, batch.input_ids.shape[1])
