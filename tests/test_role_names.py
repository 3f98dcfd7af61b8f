"""app_pages/ui/names.py: the models are named by their stages where a pair of the demo road is loaded."""
from app_pages.ui.names import role_names


def test_a_registered_pair_is_base_and_post_trained():
    assert role_names("demo") == {"base": "Base", "post": "Post-trained"}


def test_a_road_pair_is_named_by_its_stages():
    assert role_names("demo@step108..dpo") == {"base": "step108 (as base)", "post": "dpo"}
    assert role_names("demo@step36") == {"base": "Base", "post": "Post-trained, step36"}


def _picker() -> None:
    import streamlit as st

    from app_pages.ui.pair_picker import _pick

    st.session_state["picked"] = _pick().name


def test_the_picker_opens_on_the_loaded_road_pair_not_on_demo():
    from streamlit.testing.v1 import AppTest

    from app_pages.ui.pair_picker import TWO_STAGES, PairRequest

    at = AppTest.from_function(_picker, default_timeout=60)
    at.session_state["pair_loaded_request"] = PairRequest("demo@step108..dpo")
    at.run()
    assert not at.exception
    assert at.selectbox[0].value == TWO_STAGES
    assert [s.value for s in at.selectbox[1:3]] == ["step108", "dpo"]
    assert at.session_state["picked"] == "demo@step108..dpo"
