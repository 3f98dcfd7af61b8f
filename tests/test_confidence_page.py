"""The confidence page driven by AppTest on a tiny pair: Run gives every chart and table; bad input is an error."""
import pytest

import analyses.confidence as conf

TEXTS = ["the cat is a dog .", "w1 w2 w3 the dog is true .", "a cat is false . w4 w5"]


@pytest.fixture
def page(open_page, monkeypatch):
    monkeypatch.setattr(conf, "heldout_texts", lambda: TEXTS)
    at = open_page("5_Confidence.py", timeout=120)
    at.number_input(key="cf_null_dims").set_value(4)
    at.number_input(key="cf_n_candidates").set_value(3)
    at.number_input(key="cf_n_random").set_value(1)
    at.number_input(key="cf_max_tokens").set_value(30)
    at.number_input(key="cf_n_questions").set_value(4)
    return at


def test_run_shows_charts_tables_and_downloads(page):
    at = page.button[0].click().run()
    assert not at.exception and not at.error
    assert len(at.get("vega_lite_chart")) == 5  # scatter, null fraction, overlap, ablation, reliability
    assert len(at.dataframe) == 3 and len(at.get("download_button")) == 4
    assert any("IoU" in m.label for m in at.metric)


def test_a_layer_out_of_range_is_an_error_not_an_exception(page):
    page.number_input(key="cf_layer").set_value(9)
    at = page.button[0].click().run()
    assert not at.exception
    assert at.error and "out of range" in at.error[0].value
