"""The refusal result shipped for the demo pair (assets/demo/results/refusal/) against a cheap recomputation with
the study's own functions: one selection cell on the validation split, and three test conditions of the
post-trained model on the test split's first batch.

The shipped numbers were computed on another processor: scores are compared within tolerances written from the
float32 arithmetic (tests/numeric.py), and greedy replies agree up to near ties."""
import pytest
import torch
from numeric import assert_replies_agree, logprob_tolerance

from analyses.refusal import STUDY, builtin_data, candidate_norms, steering_of
from analyses.refusal.evaluate import intervention_for
from analyses.refusal.scores import generate_scored, kl_divergence, last_logits, refusal_log_odds, refusal_token_ids
from analyses.refusal.selection import ablation_for, addition_vector
from steering.generation import format_prompts
from steering.interventions import add

pytestmark = [pytest.mark.demo, pytest.mark.numeric]


@pytest.fixture(scope="module")
def demo(demo_pair, shipped_result):
    return demo_pair, shipped_result(STUDY)


def test_the_selected_cell_scores_as_shipped(demo):
    """The post-trained model's selected candidate, scored again on the validation split (what score_candidates
    does for one cell, on the same batches)."""
    pair, result = demo
    config, tok, model = STUDY.Config(), pair.tokenizer, pair.post
    data, ids = builtin_data(), refusal_token_ids(tok)
    row = result.selected.set_index("model").loc["post"]
    layer, p = int(row.layer), result.positions.index(int(row.position))
    vector = result.candidate_directions[f"post@{int(row.position)}"].vectors[layer]
    norm = float(candidate_norms(result, "post")[layer, p])
    harmful, harmless = (format_prompts(tok, data.get(side, "val", config.n_val)) for side in ("harmful", "harmless"))
    reference = last_logits(model, tok, harmless)
    ablated = last_logits(model, tok, harmful + harmless, intervention=ablation_for(
        model, vector, result.harmless_means["post"], result.positions, config.ablation))
    added = last_logits(model, tok, harmless, intervention=lambda: add(
        model, {layer: addition_vector(vector, norm, config.alpha)}))
    got = {"ablation_score": refusal_log_odds(ablated[:len(harmful)], ids).mean().item(),
           "addition_score": refusal_log_odds(added, ids).mean().item(),
           "kl": kl_divergence(reference, ablated[len(harmful):]).mean().item()}
    cells = result.candidates[(result.candidates.model == "post") & (result.candidates.layer == layer)
                              & (result.candidates.position == int(row.position))]
    # log-odds and KL read log-probabilities, each off by up to 2Δz: a log-odds by 2Δz, KL by 4Δz and 2Δz of itself
    dz = max(logprob_tolerance(model, x) for x in (reference, ablated, added))
    tols = {"ablation_score": 2 * dz, "addition_score": 2 * dz, "kl": 4 * dz + 2 * dz * abs(got["kl"])}
    for name, value in got.items():
        assert value == pytest.approx(float(cells[name].iloc[0]), abs=tols[name]), name
        assert value == pytest.approx(float(row[name]), abs=tols[name]), name
    assert torch.equal(result.directions["post"].at(layer), vector)


@pytest.mark.parametrize("mode, source, side", [("none", None, "harmful"), ("ablate", "post", "harmful"),
                                                ("add", "base", "harmless")])
def test_test_split_replies_and_scores_as_shipped(demo, mode, source, side):
    """Unsteered, own ablation and forward-transfer addition on the post-trained model: the first batch of test
    prompts (the run's own batch) gives the same greedy replies and refusal log-odds."""
    pair, result = demo
    config, tok, model = STUDY.Config(), pair.tokenizer, pair.post
    prompts = builtin_data().get(side, "test", config.n_test)[:config.batch_size]
    steering = steering_of(result)
    hook = intervention_for(model, mode, steering.get(source), steering["post"], result.positions, config.alpha,
                            config.ablation)
    replies, scores = generate_scored(model, tok, format_prompts(tok, prompts), refusal_token_ids(tok),
                                      intervention=hook, max_new_tokens=config.max_new_tokens,
                                      batch_size=config.batch_size)
    gens = result.generations
    want = gens[(gens.model == "post") & (gens.intervention == mode) & (gens.prompts == side)
                & (gens.direction_from == (source or "none"))].head(len(prompts))
    assert list(want.prompt) == prompts
    formatted = format_prompts(tok, prompts)
    assert_replies_agree(model, tok, formatted, replies, list(want.reply), hook, config.max_new_tokens)
    # a log-odds of the first step's log-probabilities: off by up to 2Δz (Δz from that step's logits)
    dz = logprob_tolerance(model, last_logits(model, tok, formatted, intervention=hook))
    assert scores == pytest.approx(list(want.refusal_score), abs=2 * dz)
