"""The confidence page driven by AppTest on a tiny pair: Run gives every chart and table; bad input is an error."""
import pytest
from streamlit.testing.v1 import AppTest
from tiny import save_tiny_pair

import analyses.confidence as conf
from pages.ui.pair_picker import PairRequest

PAGE = "../pages/5_Confidence.py"
TEXTS = ["the cat is a dog .", "w1 w2 w3 the dog is true .", "a cat is false . w4 w5"]


@pytest.fixture(scope="module")
def tiny_request(tmp_path_factory):
    base, post = save_tiny_pair(tmp_path_factory.mktemp("cf-pair"))
    return PairRequest(None, base=base, post=post)


@pytest.fixture
def page(tiny_request, tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path))
    monkeypatch.setattr(conf, "heldout_texts", lambda: TEXTS)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["pair_request"] = tiny_request
    at.run()
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
