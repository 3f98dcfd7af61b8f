"""The knowledge page driven by AppTest on a tiny pair: Run on the dataset, trace one fact, and bad input shown as
an error element, never an exception."""
import pandas as pd
import pytest

from analyses.knowledge import data as kd
from analyses.knowledge import screen
from conftest import headline_cells

FACTS = pd.DataFrame({"item": [0, 1, 2], "subject": ["w3 w4", "w5", "w9"],
                      "prompt": ["the w3 w4 is a", "the cat w5 is a", "a w9 dog is"],
                      "object": [" dog", " true", " false"]})


@pytest.fixture
def page(open_page, monkeypatch):
    monkeypatch.setattr(kd, "default_items", lambda config, tok: FACTS)
    monkeypatch.setattr(screen, "is_right", lambda found, config: True)  # random tiny models get nothing right
    at = open_page("4_Knowledge.py", timeout=180)
    at.number_input(key="knowledge_window").set_value(2)
    at.multiselect(key="knowledge_components").set_value(["resid", "mlp"])
    return at.run()


def run_button(at, **settings):
    """The form's Run button, its settings set first (a form sends them only with its submit)."""
    for name, value in settings.items():
        at.number_input(key=f"knowledge_{name}").set_value(value)
    return next(b for b in at.button if b.label == "Run")


def test_run_the_dataset_then_trace_a_fact(page):
    assert not page.exception and not page.get("vega_lite_chart")  # nothing computed yet for the tiny pair
    at = run_button(page, n_items=1, n_screen=3, n_samples=1).click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    # resid and mlp: average maps and their differences, cross-model maps, recovery bars
    assert len(at.get("vega_lite_chart")) == 6
    labels, cells = [m.label for m in at.metric], headline_cells(at)
    assert "Kept (base)" in labels and "pearson_roles/mlp" in cells and "mean_peak/base→post" in cells
    assert cells["n_traced"] == 1
    assert len(at.get("download_button")) == 9  # headline and eight tables
    at = at.button(key="kn_trace_fact").click().run()
    assert not at.exception and not at.error
    assert len(at.get("vega_lite_chart")) == 10  # + the fact's maps and differences, resid and mlp
    assert at.session_state["kn_fact"].n_traced == 1 and at.session_state["knowledge_n_samples"] == 1


def test_a_subject_missing_from_the_prompt_is_an_error(page):
    page.toggle(key="kn_typed").set_value(True).run()
    page.text_input(key="kn_prompt").input("the cat w5 is a").run()
    page.text_input(key="kn_subject").input("w7").run()
    at = page.button(key="kn_trace_fact").click().run()
    assert not at.exception
    assert at.error and "does not occur" in at.error[0].value


def test_no_component_is_an_error_not_an_exception(page):
    page.multiselect(key="knowledge_components").set_value([])
    at = run_button(page).click().run()
    assert not at.exception
    assert at.error and "Components" in at.error[0].value
