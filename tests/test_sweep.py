import math

import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from steering.directions import Direction, DirectionInfo
from steering.errors import IncompatibleDirectionError
from steering.generation import DecodingSettings, SteeringSpec, generate
from steering.sweep import alignment_per_layer, alpha_sweep, continuation_perplexity, distinct_ngrams


def _direction(n_layers=3):
    g = torch.Generator().manual_seed(0)
    return Direction(torch.randn(n_layers, 32, generator=g), DirectionInfo("tiny", "toy", "h"),
                     torch.full((n_layers,), 3.0))


def test_sweep_rows_equal_single_steered_generations():
    model, tok = tiny_model("gemma3_text"), tiny_tokenizer()
    decoding = DecodingSettings(max_new_tokens=5)
    table = alpha_sweep(model, tok, "the cat is", _direction(), alphas=[0.0, 3.0], layers=[0, 2], decoding=decoding)
    assert list(zip(table.layer, table.alpha)) == [(0, 0.0), (0, 3.0), (2, 0.0), (2, 3.0)]
    for row in table.itertuples():
        spec = SteeringSpec(_direction(), "add", layers=(row.layer,), alpha=row.alpha)
        assert generate(model, tok, ["the cat is"], steering=spec, decoding=decoding)[0] == row.text
    assert table.perplexity.notna().all()
    assert table.distinct_2.tolist() == [distinct_ngrams(t) for t in table.text]


def test_distinct_ngrams_sees_the_loop_that_perplexity_misses():
    assert distinct_ngrams("siti siti siti siti siti siti") == pytest.approx(1 / 5)
    assert distinct_ngrams("Mix the flour with water and knead the dough") == 1.0
    assert distinct_ngrams("a b a b a b", n=2) == pytest.approx(2 / 5)
    assert math.isnan(distinct_ngrams("word"))


def test_continuation_perplexity_matches_a_hand_computation():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    ppl = continuation_perplexity(model, tok, ["the cat", "w1 w2 w3"], [" is true", ""])
    ids = tok(["the cat is true"], return_tensors="pt").input_ids
    logp = torch.log_softmax(model(ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    assert ppl[0] == pytest.approx(math.exp(-logp[-2:].mean().item()), rel=1e-4)
    assert math.isnan(ppl[1])


def test_alignment_is_one_for_the_residual_itself_and_checks_shape():
    from steering.extraction import collect_residuals

    model, tok = tiny_model("llama"), tiny_tokenizer()
    acts = collect_residuals(model, tok, ["the cat is"])[0, :, 0]
    own = Direction(acts, DirectionInfo("tiny", "self", "h"))
    table = alignment_per_layer(model, tok, ["the cat is"], own)
    assert table.cosine.tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    with pytest.raises(IncompatibleDirectionError):
        alignment_per_layer(model, tok, ["the cat is"], _direction(n_layers=5))
