"""The knowledge page driven by AppTest on a tiny pair: trace one fact, run the dataset, and bad input shown as an
error element, never an exception."""
import pandas as pd
import pytest

import analyses.knowledge as kn

FACTS = pd.DataFrame({"item": [0, 1, 2], "subject": ["w3 w4", "w5", "w9"],
                      "prompt": ["the w3 w4 is a", "the cat w5 is a", "a w9 dog is"],
                      "object": [" dog", " true", " false"]})


@pytest.fixture
def page(open_page, monkeypatch):
    monkeypatch.setattr(kn, "default_items", lambda config, tok: FACTS)
    monkeypatch.setattr(kn, "is_right", lambda screen, config: True)  # random tiny models get nothing right
    at = open_page("4_Knowledge.py", timeout=180)
    at.number_input(key="kn_window").set_value(2)
    at.number_input(key="kn_n_items").set_value(1)
    at.number_input(key="kn_n_screen").set_value(3)
    at.number_input(key="kn_samples").set_value(1)
    at.multiselect(key="kn_components").set_value(["resid", "mlp"])
    return at.run()


def test_trace_a_fact_and_the_dataset(page):
    at = page.button(key="kn_trace_fact").click().run()
    assert not at.exception and not at.error
    assert len(at.get("vega_lite_chart")) == 4  # resid and mlp: both models side by side + difference
    at = at.button(key="kn_run").click().run()
    assert not at.exception and not at.error
    # fact: 4; dataset: 2 averages + 2 differences + cross + recovery
    assert len(at.get("vega_lite_chart")) == 10
    assert any(m.label.startswith("Kept (base)") for m in at.metric)
    assert len(at.get("download_button")) == 4


def test_a_subject_missing_from_the_prompt_is_an_error(page):
    page.toggle(key="kn_typed").set_value(True).run()
    page.text_input(key="kn_prompt").input("the cat w5 is a").run()
    page.text_input(key="kn_subject").input("w7").run()
    at = page.button(key="kn_trace_fact").click().run()
    assert not at.exception
    assert at.error and "does not occur" in at.error[0].value
