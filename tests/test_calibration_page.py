"""The Playground's calibration panel (app_pages/ui/calibration.py) in AppTest on the tiny pair: the frontier
drawn, the pick and its reason shown, a new budget re-picking without a new run, bad input as one error."""
import json

import pytest


@pytest.fixture
def page(open_page):
    at = open_page("1_Playground.py", timeout=180)
    at.text_area(key="pg_prompts").input("the cat is")
    at.radio(key="pg_source").set_value("Your two lists")
    at.run()
    at.text_area(key="pg_pos").input("the cat is true\nw1 w2 true\nw3 a dog is true")
    at.text_area(key="pg_neg").input("the cat is false\nw1 w2 false\nw3 a dog is false")
    at.number_input(key="pg_max_new").set_value(4)
    at.button(key="pg_generate").click().run()
    at.radio(key="pg_cal_behaviour").set_value("tokens").run()
    at.text_input(key="pg_cal_towards").input("true")
    at.text_input(key="pg_cal_away").input("false")
    at.text_area(key="pg_cal_prompts_tokens").input("the cat is\nw1 w2 dog")
    at.text_area(key="pg_cal_neutral").input("the cat is a dog .\nw1 w2 w3 w4")
    at.multiselect(key="pg_cal_layers").set_value([0, 2])
    at.text_input(key="pg_cal_alphas").input("1, 4")
    at.number_input(key="pg_cal_tokens").set_value(4)
    return at


def _charts(at):
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def test_the_panel_draws_the_frontier_and_says_why_it_picked(page):
    at = page.button(key="pg_cal_run").click().run()
    assert not at.exception and not at.error
    _, found = at.session_state["pg_cal"]  # (the direction it was made for, the calibration)
    assert [(s.layer, s.alpha) for s in found.settings] == [(0, 1.0), (0, 4.0), (2, 1.0), (2, 4.0)]
    reasons = [m.value for m in [*at.success, *at.warning]]
    assert found.pick.reason in reasons
    frontier = [c for c in _charts(at) if "effect" in json.dumps(c)]
    assert frontier, "no frontier chart"
    assert any("one line per layer" in c.value for c in at.caption)
    # a wider budget re-picks from the same measurements: the kept record is not recomputed
    at.number_input(key="pg_cal_kl").set_value(1e5)
    at.number_input(key="pg_cal_ppl").set_value(1e5)
    at.number_input(key="pg_cal_rep").set_value(1.0).run()
    assert at.session_state["pg_cal"][1] is found
    wide = found.with_budget(found.budget.__class__(1e5, 1e5, 1.0)).pick
    assert wide.reason in [m.value for m in [*at.success, *at.warning]]


@pytest.mark.parametrize("setup, words", [
    (lambda at: at.text_input(key="pg_cal_alphas").input("1, lots"), "Strengths must be numbers"),
    (lambda at: at.text_input(key="pg_cal_alphas").input("0, 1"), "Leave alpha 0 out"),
    (lambda at: at.multiselect(key="pg_cal_layers").set_value([]), "at least one layer"),
    (lambda at: at.radio(key="pg_cal_behaviour").set_value("refusal"), "refusal tokens"),
    (lambda at: at.text_input(key="pg_cal_towards").input("zzz"), "towards words"),
])
def test_bad_input_is_one_error_and_the_page_stays(page, setup, words):
    setup(page)
    at = page.run().button(key="pg_cal_run").click().run()
    assert not at.exception
    assert [e.value for e in at.error if words in e.value], [e.value for e in at.error]
    assert "pg_cal" not in at.session_state


def test_the_panel_calibrates_the_affine_ablation_as_the_library_does(page, tiny_request):
    from steering import load_pair
    from steering.calibration import DamageBudget, calibrate_ablation
    from steering.generation import format_prompts
    from steering.playground import mean_residuals, reference_prompts

    page.radio(key="pg_cal_steering").set_value("affine").run()
    page.number_input(key="pg_cal_source").set_value(1)
    page.text_input(key="pg_cal_alphas_affine").input("0.5, 1")
    at = page.button(key="pg_cal_run").click().run()
    assert not at.exception and not at.error
    _, found = at.session_state["pg_cal"]
    assert found.steering == "affine" and found.pick.reason in [m.value for m in [*at.success, *at.warning]]
    assert [(s.layer, s.alpha) for s in found.settings] == [(0, 0.5), (0, 1.0), (2, 0.5), (2, 1.0)]
    # the library on the same inputs: the direction of layer 1, its reference from harmless instructions
    pair = load_pair(base=tiny_request.base, post=tiny_request.post)
    direction = at.session_state["pg_result"].directions["post"]
    vector = direction.at(1).float()
    texts, position = reference_prompts(pair, None)
    mean = mean_residuals(pair, texts, position)["post"]
    reference = {layer: float(mean[layer] @ (vector / vector.norm())) for layer in range(mean.shape[0])}
    ours = calibrate_ablation(pair.post, pair.tokenizer, vector, reference, found.behaviour,
                              format_prompts(pair.tokenizer, ["the cat is", "w1 w2 dog"]),
                              ["the cat is a dog .", "w1 w2 w3 w4"], layers=[0, 2], strengths=[0.5, 1.0],
                              budget=DamageBudget(), max_new_tokens=4)
    # the same model files, inputs and machine: the same numbers
    assert [(s.score, s.kl) for s in ours.settings] == [(s.score, s.kl) for s in found.settings]


@pytest.mark.parametrize("supported", [True, False])
def test_the_panel_says_how_to_calibrate_faster_only_where_bfloat16_is_fast(page, monkeypatch, supported):
    import steering.model_view as model_view

    monkeypatch.setattr(model_view, "bf16_matmul_is_fast", lambda: supported)
    at = page.run()
    hinted = any("multiplies bfloat16 in hardware" in c.value for c in at.caption)
    assert hinted is supported  # the tiny pair runs in float32
