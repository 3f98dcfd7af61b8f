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


def _page_with_partials() -> None:
    import altair as alt
    import pandas as pd
    import streamlit as st

    from analyses.common import Steps
    from app_pages.ui.progress import run_with_progress

    drawn = st.session_state.setdefault("drawn", [])

    def chart(key, table):
        drawn.append((key, len(table)))
        return alt.Chart(table).mark_bar().encode(x="layer:O", y="score:Q")

    def compute(progress):
        steps = Steps(progress, {"score": 1})
        for n in (1, 2):
            steps.partial("candidates", pd.DataFrame({"layer": range(n), "score": range(n)}))
        return "done"

    run_with_progress("result", compute, partial_chart=chart)


def test_partial_results_are_drawn_while_a_study_runs():
    at = AppTest.from_function(_page_with_partials, default_timeout=60).run()
    assert not at.exception and not at.error
    assert at.session_state["drawn"] == [("candidates", 1), ("candidates", 2)]
    assert at.session_state["result"] == "done"


def _page_with_stop() -> None:
    import streamlit as st

    from app_pages.ui.progress import run_with_progress, stopped_notice

    stopped_notice("result")
    if st.session_state.get("run"):
        run_with_progress("result", lambda progress: progress(0.5, "half way") or "a result")
    st.write(f"shown: {st.session_state.get('result')}")


def test_stop_is_a_button_of_the_run_and_leaves_a_usable_page_that_says_so():
    import app_pages.ui.progress as progress

    at = AppTest.from_function(_page_with_stop, default_timeout=60)
    at.session_state["run"] = True
    at.run()
    assert not at.exception and at.session_state["result"] == "a result"
    assert not at.get("progress") and not [b for b in at.button if b.label == "Stop"]  # gone once the run ends
    # the Stop button's callback, as a click during the run fires it before the rerun it causes
    at.session_state["run"] = False
    at.session_state[progress._stopped("result")] = True
    at.run()
    assert [i.value for i in at.info] == ["Run stopped: nothing new was computed or stored, and the page is as it "
                                          "was before the run."]
    assert "shown: a result" in [m.value for m in at.markdown]  # the previous result is still there, usable
    assert not at.run().info  # said once
