"""The truthfulness page driven by AppTest on a tiny pair: Run gives every chart, the typed statement's curve and
the generalisation chart; a malformed pasted CSV is an error element naming the line, never an exception."""
import pytest


@pytest.fixture
def page(open_page):
    at = open_page("2_Truthfulness.py", timeout=180)
    at.number_input(key="tr_n_train").set_value(24)
    at.number_input(key="tr_n_test").set_value(12)
    at.number_input(key="tr_n_steer").set_value(4)
    at.number_input(key="tr_n_shots").set_value(2)
    at.text_input(key="tr_alphas").input("1, 2")
    at.text_input(key="tr_answers").input("true, false")
    return at


def test_run_shows_charts_curve_generalisation_and_downloads(page):
    at = page.button[0].click().run()
    assert not at.exception and not at.error
    assert len(at.get("vega_lite_chart")) == 6  # probes, transfer of probes, cosine, PCA, two heatmaps
    assert len(at.metric) == 4 and len(at.dataframe) == 1 and len(at.get("download_button")) == 4
    at.select_slider(key="tr_alpha").set_value(2.0).run()
    assert not at.exception and len(at.get("vega_lite_chart")) == 6
    at.text_input(key="tr_statement").input("the cat is a dog .")
    at.button(key="tr_score").click().run()
    assert not at.exception and not at.error and len(at.get("vega_lite_chart")) == 7
    at.number_input(key="tr_general_n").set_value(6)
    at.button(key="tr_general").click().run()
    assert not at.exception and not at.error and len(at.get("vega_lite_chart")) == 8


def test_a_malformed_csv_is_an_error_naming_the_line(page):
    page.selectbox(key="tr_dataset").set_value("your own CSV (statement,label)")
    page.text_area(key="tr_paste").input("statement,label\nthe cat is a dog .,1\nthe dog is a cat .,maybe\n")
    at = page.button[0].click().run()
    assert not at.exception
    assert at.error and "line 3" in at.error[0].value
