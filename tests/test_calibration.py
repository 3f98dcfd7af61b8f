import json
import math

import pytest
import torch
from numeric import assert_close, assert_replies_agree, logit_tolerance, logprob_tolerance
from tiny import tiny_model, tiny_tokenizer

from steering.calibration import Behaviour, Calibration, DamageBudget, Setting, calibrate, pick_setting
from steering.calibration_passes import kl_from, repetition
from steering.directions import Direction, DirectionInfo
from steering.errors import IncompatibleDirectionError, InvalidInputError, LayerOutOfRangeError, SettingError
from steering.generation import DecodingSettings, SteeringSpec, format_prompts
from steering.model_view import ModelView
from steering.tokens import encode

NEUTRAL = ["the cat is a dog .", "w1 w2 w3 w4 w5"]


def _direction(n_layers=3, d=32):
    g = torch.Generator().manual_seed(0)
    return Direction(torch.randn(n_layers, d, generator=g), DirectionInfo("tiny", "toy", "h"),
                     torch.full((n_layers,), 3.0))


def _behaviour(tok):
    return Behaviour.tokens(tok.convert_tokens_to_ids(["true"]), tok.convert_tokens_to_ids(["false"]))


def _setting(layer, alpha, effect, kl=0.0, perplexity=2.0, repetition=0.0):
    return Setting(layer, alpha, effect, effect, kl, perplexity, repetition)


BASELINE = Setting(-1, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.1)


def test_the_rule_picks_the_largest_effect_within_the_budget():
    frontier = [
        _setting(0, 0.1, 1.0, kl=0.05, perplexity=3.0),
        _setting(0, 0.2, 3.0, kl=0.2),  # over the KL budget
        _setting(1, 0.1, 2.0, kl=0.08),  # the pick: the largest effect within it, and the smaller alpha of a tie
        _setting(1, 0.2, 2.0, kl=0.01),
        _setting(2, 0.3, 5.0, repetition=0.6),  # a loop: over the repetition budget
        _setting(2, 0.05, 4.0, perplexity=7.0),  # 3.5x the unsteered perplexity: over that budget
    ]
    pick = pick_setting(frontier, BASELINE, DamageBudget(), "log-odds")
    assert (pick.layer, pick.alpha) == (1, 0.1)
    assert pick.reason.startswith("Layer 1, alpha 0.1: the largest effect (+2 log-odds)")
    assert "3 of 6 settings" in pick.reason
    wider = pick_setting(frontier, BASELINE, DamageBudget(max_kl=0.3), "log-odds")
    assert (wider.layer, wider.alpha) == (0, 0.2)
    looser = pick_setting(frontier, BASELINE, DamageBudget(max_kl=1, max_perplexity_ratio=4, max_repetition=1))
    assert (looser.layer, looser.alpha) == (2, 0.3)


def test_the_rule_picks_nothing_when_nothing_helps_within_the_budget():
    frontier = [_setting(0, 0.1, -1.0), _setting(0, 0.5, 3.0, kl=2.0)]
    pick = pick_setting(frontier, BASELINE, DamageBudget(), "log-odds")
    assert pick.layer is None and pick.alpha is None
    assert pick.reason.startswith("No setting moves the behaviour within the damage budget")


def test_repetition_sees_a_loop():
    assert repetition([5, 6, 7, 8, 9]) == 0.0
    assert repetition([5, 6, 5, 6, 5, 6, 5]) == pytest.approx(1 - 2 / 6)
    assert math.isnan(repetition([5, 6]))


def test_refusal_score_is_the_refusal_studys_log_odds():
    from analyses.refusal.scores import refusal_log_odds

    log_probs = torch.log_softmax(torch.randn(4, 50, generator=torch.Generator().manual_seed(1)), dim=-1)
    ours = Behaviour.refusal([3, 7, 9]).score(log_probs)
    assert torch.equal(ours, refusal_log_odds(log_probs, [3, 7, 9]))
    truth = Behaviour.truth(3, 7).score(log_probs)
    assert torch.allclose(truth, log_probs[:, 3].exp() - log_probs[:, 7].exp())


@torch.no_grad()
def _reference(model, tok, direction, behaviour, prompts, layer, alpha, max_new_tokens):
    """One setting measured on its own, prompt by prompt (no batch, no padding), through the playground's
    SteeringSpec: the score, the KL per neutral text (with each one's tolerance), the reply, its perplexity."""
    view = ModelView.of(model)
    spec = SteeringSpec(direction, "add", (layer,), alpha)
    out = []
    for prompt in prompts:
        batch = encode(tok, [prompt])
        with spec.applied(model):
            gen = model.generate(**batch, **DecodingSettings(max_new_tokens=max_new_tokens).generate_kwargs(),
                                 return_dict_in_generate=True, output_logits=True)
        first = torch.log_softmax(gen.logits[0].float(), dim=-1)
        new = gen.sequences[0, batch.input_ids.shape[1]:].tolist()
        stops = {tok.eos_token_id} | set([model.generation_config.eos_token_id]
                                         if isinstance(model.generation_config.eos_token_id, int)
                                         else model.generation_config.eos_token_id or [])
        n = next((i for i, t in enumerate(new) if t in stops), len(new))
        ids = torch.tensor([batch.input_ids[0].tolist() + new[:n]])
        lp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        reply_lp = lp[-n:].gather(-1, ids[0, -n:, None]).squeeze(-1) if n else torch.empty(0)
        out.append({"score": float(behaviour.score(first)[0]), "dz": logprob_tolerance(model, first),
                    "text": tok.decode(new, skip_special_tokens=True),
                    "perplexity": math.exp(-float(reply_lp.mean())) if n else math.nan,
                    "repetition": repetition(new[:n]), "ppl_dz": logprob_tolerance(model, lp) if n else 0.0})
    kls = []
    for text in NEUTRAL:
        batch = encode(tok, [text])
        clean = torch.log_softmax(view.logits(view.decoder_stack(**batch).last_hidden_state[:, -1]).float(), -1)
        with spec.applied(model):
            steered = torch.log_softmax(view.logits(view.decoder_stack(**batch).last_hidden_state[:, -1]).float(), -1)
        dz = max(logprob_tolerance(model, clean), logprob_tolerance(model, steered))
        spread = float((clean.exp() * (clean - steered).abs()).sum())
        kls.append((float(kl_from(clean, steered)[0]), 2 * dz * spread + 4 * dz))
    return out, kls


def test_the_batched_sweep_equals_each_setting_measured_alone():
    model, tok = tiny_model("gemma3_text"), tiny_tokenizer()
    direction, behaviour = _direction(), _behaviour(tok)
    prompts = format_prompts(tok, ["the cat is", "w5 w6 w7 w8 w9"])
    found = calibrate(model, tok, direction, behaviour, prompts, NEUTRAL, layers=[0, 2], alphas=[-2.0, 3.0],
                      max_new_tokens=6, generate="all")
    assert [(s.layer, s.alpha) for s in found.settings] == [(0, -2.0), (0, 3.0), (2, -2.0), (2, 3.0)]
    base, _ = _reference(model, tok, direction, behaviour, prompts, 0, 0.0, 6)
    base_score = sum(r["score"] for r in base) / len(base)
    assert_close(found.baseline.score, base_score, 4 * max(r["dz"] for r in base), "baseline score")
    for setting in found.settings:
        ref, kls = _reference(model, tok, direction, behaviour, prompts, setting.layer, setting.alpha, 6)
        what = f"layer {setting.layer} alpha {setting.alpha}"
        score = sum(r["score"] for r in ref) / len(ref)
        # a log-probability moves by at most 2 dz, so a difference of two log-sum-exps by 4 dz
        assert_close(setting.score, score, 4 * max(r["dz"] for r in ref), f"{what}: score")
        assert_close(setting.effect, score - base_score, 4 * max(r["dz"] for r in ref + base), f"{what}: effect")
        assert_close(setting.kl, sum(k for k, _ in kls) / len(kls), max(t for _, t in kls), f"{what}: KL")
        steer = SteeringSpec(direction, "add", (setting.layer,), setting.alpha)
        # the first prompt's reply is kept as the example; greedy tokens may part only at a near tie
        assert_replies_agree(model, tok, prompts[:1], [setting.example], [ref[0]["text"]],
                             intervention=lambda: steer.applied(model), max_new_tokens=6)
        if setting.example == ref[0]["text"] and all(not math.isnan(r["perplexity"]) for r in ref):
            ppl = sum(r["perplexity"] for r in ref) / len(ref)
            tol = max(r["perplexity"] * math.expm1(2 * r["ppl_dz"]) for r in ref)
            assert_close(setting.perplexity, ppl, tol, f"{what}: perplexity")


def test_the_record_round_trips_through_json_and_repicks():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    prompts = format_prompts(tok, ["the cat is"])
    found = calibrate(model, tok, _direction(), _behaviour(tok), prompts, NEUTRAL, layers=[1], alphas=[1.0, 4.0],
                      max_new_tokens=4, aim="lower")
    text = found.to_json()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not plain JSON"))
    again = Calibration.from_json(text)
    assert again.to_json() == text
    assert again.pick == found.pick and again.frame().shape == found.frame().shape
    assert all(s.effect == pytest.approx(found.baseline.score - s.score) for s in found.settings)  # aim lower
    strict = found.with_budget(DamageBudget(max_kl=0.0, max_perplexity_ratio=1.0, max_repetition=0.0))
    assert strict.pick.layer is None or strict.frame().query("picked").within_budget.all()
    with pytest.raises(InvalidInputError, match="Not a calibration record"):
        Calibration.from_json('{"format": "something else"}')


@pytest.mark.parametrize("change, error, words", [
    (dict(prompts=[]), InvalidInputError, "held-out prompt"),
    (dict(neutral=["  "]), InvalidInputError, "neutral text"),
    (dict(layers=[7]), LayerOutOfRangeError, "out of range"),
    (dict(layers=[]), InvalidInputError, "at least one layer"),
    (dict(alphas=[float("nan")]), SettingError, "finite"),
    (dict(alphas=[0.0, 1.0]), InvalidInputError, "Leave alpha 0 out"),
    (dict(aim="up"), InvalidInputError, "Unknown aim"),
    (dict(max_new_tokens=0), SettingError, "max_new_tokens"),
    (dict(direction=_direction(n_layers=5)), IncompatibleDirectionError, "layers"),
    (dict(direction=Direction(torch.ones(3, 32), DirectionInfo("t", "d", "h"))), InvalidInputError, "norms"),
    (dict(behaviour=Behaviour.tokens([10_000], [5])), InvalidInputError, "vocabulary"),
])
def test_bad_inputs_are_named_before_any_work(change, error, words):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    args = dict(direction=_direction(), behaviour=_behaviour(tok), prompts=format_prompts(tok, ["the cat"]),
                neutral=NEUTRAL, layers=[0], alphas=[1.0], aim="raise", max_new_tokens=4) | change
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(error, match=words):
        calibrate(model, tok, args.pop("direction"), args.pop("behaviour"), args.pop("prompts"),
                  args.pop("neutral"), **args)
    assert not calls  # refused before any forward pass


@pytest.mark.parametrize("make, words", [
    (lambda: Behaviour("mood", (1,)), "Unknown behaviour"),
    (lambda: Behaviour.refusal([]), "at least one token"),
    (lambda: Behaviour.tokens([1], []), "both sides"),
    (lambda: Behaviour("truth", (1, 2), (3,)), "exactly one"),
    (lambda: Behaviour.tokens([1, 2], [2]), "both sides, towards and away"),
    (lambda: Behaviour.tokens([-1], [2]), "token ids"),
    (lambda: DamageBudget(max_kl=float("nan")), "max_kl"),
    (lambda: DamageBudget(max_perplexity_ratio=0.5), "max_perplexity_ratio"),
    (lambda: DamageBudget(max_repetition=2), "max_repetition"),
])
def test_bad_behaviours_and_budgets_are_named(make, words):
    with pytest.raises(InvalidInputError, match=words):
        make()


def test_measure_gives_one_intervention_the_sweeps_numbers():
    from steering.calibration import measure, unsteered
    from steering.interventions import add

    model, tok = tiny_model("llama"), tiny_tokenizer()
    direction, behaviour = _direction(), _behaviour(tok)
    prompts = format_prompts(tok, ["the cat is", "w5 w6 w7"])
    found = calibrate(model, tok, direction, behaviour, prompts, NEUTRAL, layers=[1], alphas=[2.0], max_new_tokens=5,
                      generate="all")
    plain = unsteered(model, tok, behaviour, prompts, NEUTRAL, max_new_tokens=5)
    none, _ = measure(model, tok, behaviour, prompts, NEUTRAL, None, plain=plain)
    assert (none.effect, none.kl) == (0.0, 0.0)
    vectors = direction.steering_vectors([1], 2.0)
    one, texts = measure(model, tok, behaviour, prompts, NEUTRAL, lambda: add(model, vectors), plain=plain,
                         max_new_tokens=5, label=(1, 2.0))
    swept = found.settings[0]
    # the same passes, but the vector scaled once (alpha x norm x unit) against per row (norm x unit, x alpha): a
    # rounding apart, so the logits are trusted to the forward tolerance and what is read off them as above
    dz = logit_tolerance(model, tok)
    assert_replies_agree(model, tok, prompts[:1], [texts[0]], [swept.example],
                         intervention=lambda: add(model, vectors), max_new_tokens=5)
    assert_close(one.score, swept.score, 4 * dz, "score")
    assert_close(one.effect, swept.effect, 8 * dz, "effect")
    assert_close(one.kl, swept.kl, 4 * dz * (1 + swept.kl) + 2 * dz, "KL")
    if texts[0] == swept.example and not math.isnan(swept.perplexity):
        assert_close(one.perplexity, swept.perplexity, swept.perplexity * math.expm1(2 * dz), "perplexity")


def test_a_measure_not_taken_is_null_in_json_and_nan_again():
    settings = (_setting(0, 0.1, 1.0, perplexity=math.nan), _setting(1, 0.1, 2.0))
    record = Calibration(Behaviour.refusal([3]), "raise", DamageBudget(), BASELINE, settings,
                         pick_setting(settings, BASELINE, DamageBudget()), (0, 1), (0.1,))
    body = json.loads(record.to_json())
    assert body["settings"][0]["perplexity"] is None and body["baseline"]["refusal_rate"] == 0.1
    again = Calibration.from_json(record.to_json())
    assert math.isnan(again.settings[0].perplexity) and again.settings[1] == settings[1]
    assert again.pick == record.pick == pick_setting(settings, BASELINE, DamageBudget())
