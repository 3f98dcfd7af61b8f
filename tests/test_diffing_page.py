"""The diffing page driven by AppTest: on a tiny pair Run gives every chart, the slider recomputes the lens live and
a bad setting is an error; on the demo pair the default page shows the shipped result's charts without a click."""
import json
from dataclasses import fields
from pathlib import Path

import pandas as pd

import pytest

from analyses.diffing import STUDY
from conftest import headline_cells

PAGE = "6_Diffing.py"


def chart_titles(at) -> list[str]:
    titles = []
    for chart in at.get("vega_lite_chart"):
        title = json.loads(chart.proto.spec).get("title", "")
        titles.append(title if isinstance(title, str) else title.get("text", ""))
    return titles


@pytest.fixture
def ran(open_page):
    at = open_page(PAGE, timeout=180)
    assert not at.exception and at.info  # no result for the tiny pair yet: press Run
    [run] = [b for b in at.button if b.label == "Run"]
    at = run.click().run()
    assert not at.exception and not at.error
    return at


def test_run_shows_the_charts_the_headline_and_the_downloads(ran):
    result = ran.session_state["diffing_stored"].result
    titles = chart_titles(ran)
    assert len(titles) == 5  # divergence, changes, lens, difference norms, difference tokens (no cosines here)
    assert f"Logit lens at position {result.positions['harmless']}" in titles
    assert headline_cells(ran) == STUDY.headline(result)
    assert any("No refusal or truth direction is stored" in c.value for c in ran.caption)
    n_tables = sum(isinstance(getattr(result, f.name), pd.DataFrame) for f in fields(result))
    assert len(ran.get("download_button")) == 1 + n_tables + 1  # the headline, the tables, the difference
    assert [r.value for r in ran.radio if r.key == "diffing_which_text"] == ["harmless"]


def test_the_slider_recomputes_the_lens_at_another_position(ran):
    result = ran.session_state["diffing_stored"].result
    chosen = result.positions["harmless"]
    other = 0 if chosen else 1
    at = ran.slider(key="diffing_position_harmless").set_value(other).run()
    assert not at.exception and not at.error
    assert f"Logit lens at position {other}" in chart_titles(at)
    at = at.radio(key="diffing_which_text").set_value("harmful").run()
    assert not at.exception and f"Logit lens at position {result.positions['harmful']}" in chart_titles(at)


def test_a_k_longer_than_the_plain_texts_is_an_error_not_an_exception(open_page):
    at = open_page(PAGE, timeout=180)
    at.number_input(key="diffing_k").set_value(999)
    at = at.button[0].click().run()
    assert not at.exception
    assert at.error and "k = 999 is more than the shortest plain text" in at.error[0].value


@pytest.mark.demo
def test_on_the_demo_pair_the_default_page_shows_its_charts_without_a_click(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    from app_pages.ui.pair_picker import PairRequest

    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app_pages" / PAGE), default_timeout=300)
    at.session_state["pair_request"] = PairRequest("demo")
    at.run()
    assert not at.exception and not at.error
    assert any("shipped with the project" in c.value for c in at.caption)
    assert len(chart_titles(at)) >= 5


def test_the_difference_is_listed_for_the_playground_and_one_click_opens_it_there(ran):
    from analyses.study_directions import directions_for

    result = ran.session_state["diffing_stored"].result
    pair = ran.session_state["pair"]
    found = [(label, d) for label, d in directions_for(pair) if label.startswith("diffing · difference")]
    assert len(found) == 1 and bool((found[0][1].vectors == result.difference.vectors).all())
    [send] = [b for b in ran.button if b.key == "diffing_send"]
    at = send.click().run()
    assert not at.exception and any("open the Playground page" in i.value for i in at.info)  # no app.py here
    assert at.session_state["pg_source"] == "From a study's result"
    assert directions_for(pair)[at.session_state["pg_study_direction"]][0] == found[0][0]


def test_in_the_app_one_click_opens_the_playground_on_the_difference(tiny_request, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=180)
    at.session_state["pair_request"] = tiny_request
    at = at.run().switch_page("app_pages/6_Diffing.py").run()
    at = [b for b in at.button if b.label == "Run"][0].click().run()
    assert not at.exception and not at.error
    at = [b for b in at.button if b.key == "diffing_send"][0].click().run()
    assert not at.exception
    assert at.radio(key="pg_source").value == "From a study's result"  # the playground is on screen
    chosen = at.selectbox(key="pg_study_direction")
    assert chosen.format_func(chosen.value).startswith("diffing · difference")
