"""The refusal page driven by AppTest on a tiny pair: the user's two lists -> Run -> headline, charts, tables,
downloads and a live generation; bad input shows an error element, never an exception."""
import pytest
from conftest import headline_cells

HARMFUL = "\n".join(f"w{i} w{i + 1} the cat" for i in range(10))
HARMLESS = "\n".join(f"w{i + 40} w{i + 41} a dog" for i in range(10))


@pytest.fixture
def page(open_page):
    at = open_page("3_Refusal.py", timeout=180)
    at.radio(key="rf_data").set_value("Your two lists").run()
    return at


def run_button(at):
    return next(b for b in at.button if b.label == "Run")


def test_run_shows_charts_tables_and_a_live_generation(page):
    at = page
    at.text_area(key="rf_harmful").input(HARMFUL)
    at.text_area(key="rf_harmless").input(HARMLESS).run()
    assert not at.error and any("No result for these settings" in i.value for i in at.info)
    at.text_area(key="rf_phrases").input("w1\nw2")  # the tiny vocabulary has no "I" or "Sorry"
    at.number_input(key="refusal_n_val").set_value(2)
    at.number_input(key="refusal_layer_step").set_value(2)
    at.number_input(key="refusal_max_new_tokens").set_value(3)
    run_button(at).click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    charts = at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")
    assert len(charts) == 4  # refusal rate, refusal score, cosine, candidate heatmap
    assert len(at.dataframe) == 4  # headline, selected directions, harmless and harmful example generations
    harmless, harmful = at.dataframe[2].value, at.dataframe[3].value
    assert set(harmless.prompt) <= set(HARMLESS.splitlines()) and set(harmful.prompt) <= set(HARMFUL.splitlines())
    assert len(harmless) and len(harmful)
    assert any(e.label.startswith("Harmful instructions") for e in at.expander)
    # the live generation opens on the post-trained model with its own direction: the paper's effect
    assert at.selectbox(key="rf_live_model").value == "post" and at.selectbox(key="rf_live_source").value == "post"
    result = at.session_state["refusal_stored"].result
    n_candidates = 2 * len(result.positions)  # a direction file per model and post-instruction position
    assert len(result.candidate_directions) == n_candidates
    # headline, six tables, the two selected directions and every candidate position's
    assert len(at.get("download_button")) == 1 + 6 + 2 + n_candidates
    assert "selected_layer/post" in headline_cells(at)
    assert len(at.caption) >= 5
    at.selectbox(key="rf_live_source").set_value("post")
    at.radio(key="rf_live_mode").set_value("add")
    at.text_input(key="rf_live_prompt").input("w3 w4 the cat")
    at.button(key="rf_live_go").click().run()
    assert not at.exception and not at.error
    assert len(at.text) == 2  # unsteered and steered replies
    at.radio(key="rf_live_mode").set_value("ablate")
    at.selectbox(key="rf_live_ablation").set_value("project")
    at.button(key="rf_live_go").click().run()
    assert not at.exception and not at.error
    assert any("ablate (project)" in m.value for m in at.markdown)  # the steered column names the ablation
    assert any("direction from Post-trained" in m.value for m in at.markdown)  # by its name, not the key "post"


def test_empty_list_is_an_error_not_an_exception(page):
    at = page
    at.text_area(key="rf_harmful").input("only one line").run()
    assert not at.exception
    assert at.error and "list" in at.error[0].value
    assert not [b for b in at.button if b.label == "Run"]  # nothing to run on until both lists are readable


def test_an_alpha_far_past_what_the_model_tolerates_is_allowed_but_flagged(page):
    at = page
    at.text_area(key="rf_harmful").input(HARMFUL)
    at.text_area(key="rf_harmless").input(HARMLESS).run()
    assert not any("far past" in w.value for w in at.warning)
    at.text_area(key="rf_phrases").input("w1\nw2")
    for key, value in (("n_val", 2), ("layer_step", 2), ("max_new_tokens", 3), ("alpha", 50.0)):
        at.number_input(key=f"refusal_{key}").set_value(value)
    at = run_button(at).click().run()  # the form's values reach the page when it is submitted
    assert any("alpha 50 is far past what these models tolerate" in w.value for w in at.warning)
    assert not at.exception and not at.error  # allowed: the user may want to see the noise


def test_a_test_size_below_one_is_named_not_kept_at_its_old_value(page):
    at = page
    at.text_area(key="rf_harmful").input(HARMFUL)
    at.text_area(key="rf_harmless").input(HARMLESS).run()
    at.number_input(key="refusal_n_train").set_value(0)
    at = run_button(at).click().run()
    assert any("n_train must be an integer of at least 1" in e.value for e in at.error), [e.value for e in at.error]
