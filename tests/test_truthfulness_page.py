"""The truthfulness page driven by AppTest on a tiny pair: Run gives the headline, every chart, the typed statement's
curve and the generalisation chart; a malformed pasted CSV is an error element naming the line, never an
exception."""
import pytest

from analyses.truthfulness import STUDY
from conftest import headline_cells


def small_settings(at):
    """Small settings typed into the form (they count once the form's Run button is clicked in the same run)."""
    for name, value in (("n_train", 24), ("n_test", 12), ("n_steer", 4), ("n_calib", 4), ("n_shots", 2)):
        at.number_input(key=f"truthfulness_{name}").set_value(value)
    at.text_input(key="truthfulness_alphas").input("1, 2")
    at.text_input(key="truthfulness_answers").input("true, false")
    return at


@pytest.fixture
def page(open_page):
    return small_settings(open_page("2_Truthfulness.py", timeout=180))


def _run_button(at):
    return next(b for b in at.button if b.label == "Run")


def test_before_run_the_page_says_to_press_run(page):
    assert not page.exception and not page.error
    assert any("press **Run**" in i.value for i in page.info)
    assert not page.get("vega_lite_chart")


def test_run_shows_headline_charts_curve_generalisation_and_downloads(page):
    at = _run_button(page).click().run()
    assert not at.exception and not at.error
    assert len(at.get("vega_lite_chart")) == 7  # probes, transfer of probes, cosine, dominant dims, PCA, 2 heatmaps
    cells = headline_cells(at)
    assert "best_probe_accuracy_logistic/base" in cells and "mean_change/base->post" in cells
    assert cells == STUDY.headline(at.session_state["truthfulness_stored"].result)
    # headline, dominant dimensions, the 2x2 table; downloads: headline, five tables, two directions
    assert len(at.dataframe) == 3 and len(at.get("download_button")) == 1 + 5 + 2
    at.select_slider(key="tr_alpha").set_value(2.0).run()
    assert not at.exception and len(at.get("vega_lite_chart")) == 7
    at.text_input(key="tr_statement").input("the cat is a dog .")
    at.button(key="tr_score").click().run()
    assert not at.exception and not at.error and len(at.get("vega_lite_chart")) == 8
    at.number_input(key="tr_general_n").set_value(6)
    at.button(key="tr_general").click().run()
    assert not at.exception and not at.error and len(at.get("vega_lite_chart")) == 9


def test_a_malformed_csv_is_an_error_naming_the_line(page):
    page.selectbox(key="tr_dataset").set_value("your own CSV (statement,label)")
    page.run()
    page.text_area(key="tr_paste").input("statement,label\nthe cat is a dog .,1\nthe dog is a cat .,maybe\n")
    at = page.run()
    assert not at.exception
    assert at.error and "line 3" in at.error[0].value


def test_pasted_statements_run_the_study_on_them_with_the_settings_kept(page):
    at = _run_button(page).click().run()  # the small settings are committed by this Run
    at.selectbox(key="tr_dataset").set_value("your own CSV (statement,label)")
    at.run()  # the settings form is not drawn while the CSV is awaited
    rows = [f"the w{i} is a w{i + (0 if i % 2 else 30)} .,{i % 2}" for i in range(16)]
    at.text_area(key="tr_paste").input("statement,label\n" + "\n".join(rows) + "\n")
    at = _run_button(at.run()).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    stored = at.session_state["truthfulness_stored"]
    assert stored.result.dataset == "upload:the pasted CSV"
    assert set(stored.result.steered["statement"]) <= {r.rsplit(",", 1)[0] for r in rows}
    assert stored.manifest["config"]["n_steer"] == 4 and stored.manifest["config"]["answers"] == ["true", "false"]


def test_a_probe_layer_out_of_range_is_one_sentence_before_any_activation_is_read(page, monkeypatch):
    import analyses.truthfulness.compute as compute

    monkeypatch.setattr(compute, "collect_residuals", lambda *a, **k: pytest.fail("activations were read"))
    page.number_input(key="truthfulness_probe_layer").set_value(99)
    at = _run_button(page).click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [at.error[0].value] and "probe_layer 99" in at.error[0].value
    assert "truthfulness_stored" not in at.session_state  # no result shown for settings that cannot run
