"""A first start's one-time conversions show in the page's main area, with the time so far, and go once done."""
from streamlit.testing.v1 import AppTest


def _page() -> None:
    import streamlit as st

    from app_pages.ui.pair_picker import _FirstStart

    first = _FirstStart(st.empty(), "demo")
    first("Converting model.gguf: de-quantizing the weights")
    if st.session_state.get("finished"):
        first.done()
    st.write("page body")


def test_the_conversion_is_shown_in_the_main_area_until_it_is_done():
    at = AppTest.from_function(_page, default_timeout=30).run()
    assert not at.exception
    shown = [m.value for m in at.main.markdown]
    assert any("de-quantizing the weights" in m and " s · " in m for m in shown)
    assert [s.label for s in at.main.status] == ["Preparing demo for its first use: a one-time conversion that takes a "
                                                "few minutes on a 2-core CPU (later starts take seconds)"]
    at.session_state["finished"] = True
    at.run()
    assert not any("de-quantizing" in m.value for m in at.main.markdown)
    assert "page body" in [m.value for m in at.main.markdown]
