"""The confidence page driven by AppTest on a tiny pair: Run gives every chart and table; bad input is an error."""
from dataclasses import fields

import pandas as pd
import pytest

import analyses.confidence.data as conf_data
from analyses.confidence import STUDY
from conftest import headline_cells

TEXTS = ["the cat is a dog .", "w1 w2 w3 the dog is true .", "a cat is false . w4 w5"]


@pytest.fixture
def page(open_page, monkeypatch):
    monkeypatch.setattr(conf_data, "heldout_texts", lambda: TEXTS)
    at = open_page("5_Confidence.py", timeout=120)
    assert not at.exception and at.info  # no result for the tiny pair yet: press Run
    at.number_input(key="confidence_null_dims").set_value(4)
    at.number_input(key="confidence_n_candidates").set_value(3)
    at.number_input(key="confidence_n_random").set_value(1)
    at.number_input(key="confidence_max_tokens").set_value(30)
    at.number_input(key="confidence_n_questions").set_value(4)
    return at


def test_run_shows_charts_tables_and_downloads(page):
    [run] = [b for b in page.button if b.label == "Run"]
    at = run.click().run()
    assert not at.exception and not at.error
    assert len(at.get("vega_lite_chart")) == 5  # scatter, null fraction, overlap, ablation, reliability
    n_tables = sum(f.type in ("pd.DataFrame", pd.DataFrame) for f in fields(STUDY.Result))
    assert len(at.dataframe) == 1 + 3 and len(at.get("download_button")) == 1 + n_tables  # + the headline
    cells = headline_cells(at)
    assert cells == STUDY.headline(at.session_state["confidence_stored"].result)
    assert {"entropy_neuron_iou", "ece/base", "ece/post", "ablation_d_entropy_candidate/post"} <= set(cells)
    assert any("IoU" in m.label for m in at.metric)


def test_a_layer_out_of_range_is_an_error_not_an_exception(page):
    page.number_input(key="confidence_layer").set_value(9)
    at = page.button[0].click().run()
    assert not at.exception
    assert at.error and "out of range" in at.error[0].value


@pytest.mark.parametrize("layer", [-99, 9])
def test_a_layer_out_of_range_is_named_as_typed(page, layer):
    page.number_input(key="confidence_layer").set_value(layer)
    at = page.button[0].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [f"MLP layer {layer} is out of range: this model has 3 layers, 0..2 "
                                           "(or -1..-3 from the end)."]
