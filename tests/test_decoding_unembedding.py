"""The unembedding laid out for decoding (steering.model_view.decoding_unembedding): the transposed float32 product
keeps greedy replies (parting, if ever, only at a near tie), bfloat16 logits stay within bfloat16's rounding, the
model is left as it was, and an unknown choice is refused."""
import pytest
import torch
from numeric import EPS, assert_replies_agree
from tiny import tiny_model, tiny_tokenizer

from steering.errors import InvalidInputError
from steering.generation import DecodingSettings, format_prompts, generate
from steering.model_view import ModelView, decoding_unembedding

PROMPTS = ["the cat is", "w1 w2 w3 dog", "a dog is true ."]


@pytest.fixture(scope="module")
def setup():
    return tiny_model("gemma3_text", seed=3), tiny_tokenizer()


def _logits_and_hidden(model, tok, kind):
    batch = tok(format_prompts(tok, PROMPTS), return_tensors="pt", padding=True)
    with torch.no_grad(), decoding_unembedding(model, kind):
        out = model(**batch, output_hidden_states=True)
    return out.logits, out.hidden_states[-1]


def test_transposed_float32_keeps_greedy_replies(setup):
    model, tok = setup
    texts = format_prompts(tok, PROMPTS)
    plain = generate(model, tok, texts, decoding=DecodingSettings(max_new_tokens=8))
    transposed = generate(model, tok, texts, decoding=DecodingSettings(max_new_tokens=8, unembedding="transposed"))
    assert_replies_agree(model, tok, texts, transposed, plain, max_new_tokens=8)


def test_transposed_logits_are_the_same_product_to_float32_rounding(setup):
    model, tok = setup
    plain, hidden = _logits_and_hidden(model, tok, "plain")
    transposed, _ = _logits_and_hidden(model, tok, "transposed")
    weight = ModelView.of(model).unembedding_weight()
    # two summation orders of d terms: each within d·eps·Σ|x·w| of the exact sum (softcap only shrinks gaps)
    bound = 2 * hidden.shape[-1] * EPS * (hidden.abs() @ weight.abs().T)
    assert ((transposed - plain).abs() <= bound + 1e-30).all()


def test_bfloat16_logits_stay_within_bfloat16_rounding(setup):
    model, tok = setup
    plain, hidden = _logits_and_hidden(model, tok, "plain")
    fast, _ = _logits_and_hidden(model, tok, "bfloat16")
    weight = ModelView.of(model).unembedding_weight()
    # x and w each rounded to 8 significant bits (relative 2^-8), products summed in float32
    bound = (2 * 2.0 ** -8 + 2.0 ** -16 + hidden.shape[-1] * EPS) * (hidden.abs() @ weight.abs().T)
    assert ((fast - plain).abs() <= bound).all()
    assert not torch.equal(fast, plain)  # it did compute in bfloat16


def test_the_model_is_left_as_it_was(setup):
    model, tok = setup
    head = ModelView.of(model).unembedding
    before, _ = _logits_and_hidden(model, tok, "plain")
    for kind in ("transposed", "bfloat16"):
        _logits_and_hidden(model, tok, kind)
        assert "forward" not in head.__dict__
    after, _ = _logits_and_hidden(model, tok, "plain")
    assert torch.equal(before, after)


def test_an_unknown_unembedding_is_refused_before_any_work(setup):
    model, tok = setup
    with pytest.raises(InvalidInputError, match="Unknown unembedding 'int4'"):
        generate(model, tok, format_prompts(tok, PROMPTS), decoding=DecodingSettings(unembedding="int4"))
