"""The playground page driven by AppTest on a tiny pair: typed lists -> direction -> four generations, and every
bad input shown as an error element, never an exception."""
import pytest
from streamlit.testing.v1 import AppTest


PAGE = "../pages/1_Playground.py"


@pytest.fixture
def page(open_page):
    at = open_page("1_Playground.py", timeout=120)
    at.text_area(key="pg_prompts").input("the cat is\nw1 w2 dog")
    at.toggle(key="pg_chat").set_value(False)
    at.radio(key="pg_source").set_value("Your two lists")
    at.run()
    at.text_area(key="pg_pos").input("the cat is true\nw1 w2 true\nw3 a dog is true")
    at.text_area(key="pg_neg").input("the cat is false\nw1 w2 false\nw3 a dog is false")
    at.number_input(key="pg_max_new").set_value(6)
    return at


def _generate(at: AppTest, alpha: float | None = None) -> AppTest:
    if alpha is not None:
        at.number_input(key="pg_alpha").set_value(alpha)
    at.button(key="pg_generate").click().run()
    return at


def _outputs(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def test_typed_lists_give_four_generations_per_prompt(page):
    at = _generate(page, alpha=50.0)
    assert not at.exception and not at.error
    outputs = _outputs(at)
    assert len(outputs) == 8  # 2 prompts x (base, base steered, post, post steered)
    headers = [m.value for m in at.markdown if m.value.startswith("**") and "Prompt" not in m.value]
    assert headers[:4] == ["**Base**", "**Base · steered**", "**Post-trained**", "**Post-trained · steered**"]
    assert outputs[0] != outputs[1] or outputs[2] != outputs[3]  # a large alpha changes the text
    assert any("Reproduce" in e.label for e in at.expander)


def test_alpha_zero_changes_nothing(page):
    outputs = _outputs(_generate(page, alpha=0.0))
    assert outputs[0::2] == outputs[1::2]


def test_ablation_and_transfer_run(page):
    page.radio(key="pg_mode").set_value("ablate")
    page.radio(key="pg_read_from").set_value("post")
    at = _generate(page)
    assert not at.exception and not at.error and len(_outputs(at)) == 8


@pytest.mark.parametrize("setup, message", [
    (lambda at: at.text_area(key="pg_neg").input(""), "empty"),
    (lambda at: at.text_area(key="pg_prompts").input("   "), "empty"),
    (lambda at: at.text_area(key="pg_pos").input("prompt,label\nthe cat,1\n,0"), "line 3"),
    (lambda at: at.text_area(key="pg_pos").input("prompt,label\nthe cat,1,extra"), "line 2"),
    (lambda at: at.text_area(key="pg_prompts").input(" ".join(["w1"] * 200)), "context"),
])
def test_bad_input_is_an_error_element_and_keeps_what_was_typed(page, setup, message):
    setup(page)
    typed = page.text_area(key="pg_prompts").value
    at = _generate(page)
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert at.text_area(key="pg_prompts").value == typed


def test_a_direction_file_from_a_model_of_another_shape_is_refused(page, tmp_path):
    import torch

    from steering.directions import Direction, DirectionInfo

    path = Direction(torch.randn(5, 48), DirectionInfo("other", "d", "h")).save(tmp_path / "other")
    page.radio(key="pg_source").set_value("The direction cache").run()
    from steering.direction_cache import DirectionCache

    DirectionCache().put("k", Direction.load(path))
    at = page.run()
    at = _generate(at)
    assert not at.exception
    assert any("Choose a direction file or a cached direction" in e.value for e in at.error)


@pytest.mark.demo
def test_the_page_on_the_demo_pair_shows_four_generations():
    at = AppTest.from_file(PAGE, default_timeout=600).run()
    assert not at.exception
    at.number_input(key="pg_max_new").set_value(6)
    at.button(key="pg_generate").click().run()
    assert not at.exception and not at.error
    assert len(at.text) == 8  # the two default prompts x four generations
    assert any("Typical residual norm at layer 9" in c.value for c in at.caption)
