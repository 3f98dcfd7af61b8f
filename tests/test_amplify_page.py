"""The Diffing page's amplification section (app_pages/ui/amplify.py) in AppTest on the tiny pair."""
import json

import pytest
from test_lab import tiny_road  # noqa: F401  (a tiny pair with a road of five stages)

PAGE = "6_Diffing.py"


@pytest.fixture
def ran(open_page):
    at = open_page(PAGE, timeout=180)
    [run] = [b for b in at.button if b.label == "Run"]
    at = run.click().run()
    assert not at.exception and not at.error
    at.text_area(key="diffing_amp_prompts").input("the cat is\nw1 w2 dog")
    at.number_input(key="diffing_amp_tokens").set_value(4)
    return at


def test_amplify_draws_the_rate_against_alpha_and_every_reply(ran):
    labels = ran.selectbox(key="diffing_amp_a").options
    assert labels == ["Base (loaded)", "Post-trained (loaded)"]  # a pair without a road: its two models
    ran.text_input(key="diffing_amp_alphas").input("0, 3")
    at = ran.button(key="diffing_amp_run").click().run()
    assert not at.exception and not at.error
    found = at.session_state["diffing_amp"]
    assert list(found["rates"].alpha) == [0.0, 3.0] and list(found["rates"].n) == [2, 2]
    assert len(found["replies"]) == 4 and list(found["replies"].prompt) == ["the cat is", "w1 w2 dog"] * 2
    titles = [json.loads(c.proto.spec).get("title", {}) for c in at.get("vega_lite_chart")]
    assert any("Refusals of B + α (B − A)" in (t if isinstance(t, str) else t.get("text", "")) for t in titles)


@pytest.mark.parametrize("alphas, words", [("0, -1", "from 0 to"), ("one", "α values must be numbers")])
def test_a_bad_alpha_is_one_error_and_the_page_stays(ran, alphas, words):
    ran.text_input(key="diffing_amp_alphas").input(alphas)
    at = ran.button(key="diffing_amp_run").click().run()
    assert not at.exception
    assert [e.value for e in at.error if words in e.value]
    assert "diffing_amp" not in at.session_state


def test_the_lab_amplifies_between_any_two_stages_of_its_road(tiny_road):  # noqa: F811  (test_lab's fixture)
    """On a road the Lab page offers every stage as A and B, with no lab run needed."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from app_pages.ui.pair_picker import PairRequest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app_pages" / "7_Lab.py"),
                           default_timeout=180)
    at.session_state["pair_request"] = PairRequest("tiny")
    at.run()
    assert not at.exception
    assert at.selectbox(key="lab_amp_a").options == ["Base (loaded)", "Post-trained (loaded)", "stage base",
                                                     "stage step2", "stage sft", "stage dpo-step1", "stage dpo"]
    at.selectbox(key="lab_amp_a").set_value("stage sft")
    at.selectbox(key="lab_amp_b").set_value("stage dpo")
    at.text_area(key="lab_amp_prompts").input("the cat is\nw1 w2 dog")
    at.number_input(key="lab_amp_tokens").set_value(3)
    at.text_input(key="lab_amp_alphas").input("0, 2")
    at = at.button(key="lab_amp_run").click().run()
    assert not at.exception and not at.error
    found = at.session_state["lab_amp"]
    assert (found["a"], found["b"]) == ("stage sft", "stage dpo")
    assert list(found["rates"].alpha) == [0.0, 2.0] and len(found["replies"]) == 4
