"""The calibration generates replies only where its rule needs them (generate="frontier"): its pick is the one
generating at every setting gives, and what it did not generate is marked, never shown as measured."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numeric import assert_replies_agree, sum_tolerance
from test_calibration import NEUTRAL, _behaviour, _direction
from tiny import tiny_model, tiny_tokenizer

from steering.calibration import (CHUNK, FORMAT, Calibration, DamageBudget, Setting, calibrate, candidates,
                                  first_to_generate, frontier_beyond, pick_setting, still_to_generate)
from steering.generation import SteeringSpec, format_prompts

BASELINE_PERPLEXITY = 2.0

# a setting as the screen sees it (effect, KL) and what its replies would show (perplexity, repetition)
SETTING = st.tuples(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0]),  # few values: ties happen
                    st.sampled_from([0.0, 0.05, 0.1, 0.5, 2.0]),
                    st.sampled_from([1.5, 2.0, 5.0, 9.0]),
                    st.sampled_from([0.0, 0.2, 0.5]))
BUDGET = st.builds(DamageBudget, st.sampled_from([0.05, 0.1, 1.0]), st.sampled_from([2.0, 3.0, 10.0]),
                   st.sampled_from([0.1, 0.3, 1.0]))


def _grid(values: list[tuple[float, float, float, float]]) -> tuple[dict, dict]:
    """Settings at layers 0.. with alpha 0.1 (screened: no replies) and every one measured in full."""
    screened, full = {}, {}
    for i, (effect, kl, perplexity, rep) in enumerate(values):
        layer, alpha = i // 3, (0.1, 0.2, 0.3)[i % 3]
        screened[layer, alpha] = Setting(layer, alpha, effect, effect, kl, math.nan, math.nan, None, "", False)
        full[layer, alpha] = replace(screened[layer, alpha], perplexity=perplexity, repetition=rep, generated=True)
    return screened, full


@settings(max_examples=300, deadline=None)
@given(st.lists(SETTING, min_size=1, max_size=24), BUDGET)
def test_generating_where_the_rule_needs_it_picks_what_generating_everywhere_picks(values, budget):
    screened, full = _grid(values)
    baseline = Setting(-1, 0.0, 0.0, 0.0, 0.0, BASELINE_PERPLEXITY, 0.0, None, "", True)
    calls = [first_to_generate(screened.values(), budget)]
    for key in calls[0]:  # as calibrate does: the first call, then down the candidates until the pick is settled
        screened[key] = full[key]
    while pending := still_to_generate(screened.values(), budget, BASELINE_PERPLEXITY, CHUNK):
        assert len(pending) <= CHUNK and all(not screened[k].generated for k in pending)
        calls.append(pending)
        for key in pending:
            screened[key] = full[key]
    ours = pick_setting(list(screened.values()), baseline, budget)
    everywhere = pick_setting(list(full.values()), baseline, budget)
    assert (ours.layer, ours.alpha) == (everywhere.layer, everywhere.alpha)
    assert "no replies measured" not in ours.reason  # under its own budget nothing the rule needed was left out
    generated = [s for s in screened.values() if s.generated]
    # nothing beyond need: every generated setting is a candidate ahead of (or at) the pick, or on the frontier
    ahead = {(s.layer, s.alpha) for s in candidates(list(full.values()), budget)
             if ours.layer is None or (-s.effect, abs(s.alpha), s.layer) <= (
                 -full[ours.layer, ours.alpha].effect, abs(ours.alpha), ours.layer)}
    front = {(s.layer, s.alpha) for s in frontier_beyond(list(full.values()), budget, len(full))}
    extra = [(s.layer, s.alpha) for s in generated if (s.layer, s.alpha) not in ahead | front]
    assert len(extra) < CHUNK, f"generated beyond the rule's need: {extra}"  # at most the first call's spare


def test_a_record_repicked_under_another_budget_says_what_it_did_not_measure():
    screened, full = _grid([(1.0, 0.05, 2.0, 0.0), (3.0, 0.5, 2.0, 0.0)])
    measured = [full[0, 0.1], screened[0, 0.2]]  # the second was over the KL budget, so never generated
    baseline = Setting(-1, 0.0, 0.0, 0.0, 0.0, BASELINE_PERPLEXITY, 0.0, None, "", True)
    tight = pick_setting(measured, baseline, DamageBudget(max_kl=0.1))
    assert (tight.layer, tight.alpha) == (0, 0.1) and "no replies measured" not in tight.reason
    loose = pick_setting(measured, baseline, DamageBudget(max_kl=1.0))
    assert (loose.layer, loose.alpha) == (0, 0.1)  # the unmeasured one cannot be picked ...
    assert "1 setting(s) within the KL budget with a larger effect have no replies measured" in loose.reason
    alone = pick_setting([screened[0, 0.2]], baseline, DamageBudget(max_kl=1.0))
    assert alone.layer is None and "no replies measured" in alone.reason  # ... nor pass as within the budget


@pytest.mark.parametrize("arch", ["gemma3_text", "llama"])
def test_frontier_and_all_measure_the_same_and_frontier_marks_what_it_skipped(arch):
    model, tok = tiny_model(arch), tiny_tokenizer()
    direction, behaviour = _direction(), _behaviour(tok)
    prompts = format_prompts(tok, ["the cat is", "w5 w6 w7 w8 w9"])
    grid = dict(layers=[0, 1, 2], alphas=[-3.0, -1.0, 1.0, 3.0], max_new_tokens=5, budget=DamageBudget(max_kl=0.05))
    frontier = calibrate(model, tok, direction, behaviour, prompts, NEUTRAL, settle=[DamageBudget(max_kl=1e6)],
                         **grid)
    everywhere = calibrate(model, tok, direction, behaviour, prompts, NEUTRAL, generate="all", **grid)
    assert (frontier.generate, everywhere.generate) == ("frontier", "all")
    assert all(s.generated for s in everywhere.settings) and not all(s.generated for s in frontier.settings)
    for ours, theirs in zip(frontier.settings, everywhere.settings):
        # the same single-forward screen on the same machine: the very same numbers
        assert (ours.layer, ours.alpha, ours.score, ours.effect, ours.kl) == (
            theirs.layer, theirs.alpha, theirs.score, theirs.effect, theirs.kl)
        if not ours.generated:
            assert math.isnan(ours.perplexity) and math.isnan(ours.repetition) and ours.example == ""
            assert ours.refusal_rate is None
            continue
        # generated in another batch (other rows beside it): greedy tokens may part only at a near tie
        steer = SteeringSpec(direction, "add", (ours.layer,), ours.alpha)
        assert_replies_agree(model, tok, prompts[:1], [ours.example], [theirs.example],
                             intervention=lambda: steer.applied(model), max_new_tokens=5)
    frame = frontier.frame()
    assert not frame[~frame.generated].within_budget.any()
    # the budget it was told to settle too re-picks with nothing it needed left unmeasured
    assert "no replies measured" not in frontier.with_budget(DamageBudget(max_kl=1e6)).pick.reason


def test_a_record_of_the_first_format_still_reads_every_setting_as_generated():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    found = calibrate(model, tok, _direction(), _behaviour(tok), format_prompts(tok, ["the cat is"]), NEUTRAL,
                      layers=[1], alphas=[1.0], max_new_tokens=3, generate="all")
    body = json.loads(found.to_json())
    assert body["format"] == FORMAT and body["settings"][0]["generated"] is True
    body["format"] = "post-training-playground/calibration@1"
    for s in (*body["settings"], body["baseline"]):
        del s["generated"]
    del body["generate"]
    old = Calibration.from_json(json.dumps(body))
    assert all(s.generated for s in old.settings) and old.generate == "all"
    assert old.settings == found.settings and old.pick == found.pick


def test_the_kl_of_repeated_rows_is_the_kl_of_the_repeated_reference():
    from steering.calibration_passes import kl_from, kl_repeated

    g = torch.Generator().manual_seed(0)
    reference = torch.log_softmax(3 * torch.randn(4, 1000, generator=g), dim=-1)
    changed = torch.log_softmax(reference.repeat(3, 1) + torch.randn(12, 1000, generator=g), dim=-1)
    ours = kl_repeated(reference, reference.exp(), changed)
    theirs = kl_from(reference.repeat(3, 1), changed)
    # the same float32 products summed in two orders: each sum of 1,000 terms within the classic worst-case bound
    # (n eps sum|terms|) of the exact one, so the two within twice that
    terms = float((reference.exp().repeat(3, 1) * (reference.repeat(3, 1) - changed).abs()).sum(-1).max())
    assert float((ours - theirs).abs().max()) <= 2 * sum_tolerance(1000, terms, worst=True)
