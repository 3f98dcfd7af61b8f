"""app_pages/ui/progress.py: a study's computation run from a page with a progress bar; errors shown, never raised."""
from streamlit.testing.v1 import AppTest


def _page() -> None:
    import streamlit as st

    from app_pages.ui.progress import run_with_progress
    from steering import InvalidInputError

    def compute(progress):
        progress(0.5, "half way")
        if st.session_state.get("fail"):
            raise InvalidInputError("Layer 99 is out of range.")
        return "a result"

    returned = run_with_progress("result", compute)
    st.write(f"returned: {returned}")


def test_a_result_is_kept_and_an_error_clears_it():
    at = AppTest.from_function(_page, default_timeout=60).run()
    assert not at.exception and not at.error
    assert at.session_state["result"] == "a result"
    at.session_state["fail"] = True
    at.run()
    assert not at.exception
    assert at.error and "out of range" in at.error[0].value
    assert "result" not in at.session_state
    assert "returned: None" in [m.value for m in at.markdown]
