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
    assert [s.label for s in at.main.status] == ["Preparing demo for its first use: a one-time conversion that takes "
                                                "about a minute on a 2-core CPU (later starts take seconds)"]
    at.session_state["finished"] = True
    at.run()
    assert not any("de-quantizing" in m.value for m in at.main.markdown)
    assert "page body" in [m.value for m in at.main.markdown]


def _slow_conversion() -> None:
    import time

    import streamlit as st

    from app_pages.ui.pair_picker import _FirstStart, _prepare_with_clock

    def prepare(report):
        report("Converting model.gguf: tokenizer")
        time.sleep(2.5)  # a step that reports nothing for a while
        report("Converting model.gguf: writing safetensors")
        return "folders"

    first = _FirstStart(st.empty(), "demo")
    heard = []
    st.session_state["returned"] = _prepare_with_clock(prepare, lambda m: (heard.append(m), first(m)), first)
    st.session_state["heard"] = heard


def test_the_first_start_clock_ticks_while_a_step_runs():
    at = AppTest.from_function(_slow_conversion, default_timeout=30).run()
    assert not at.exception
    assert at.session_state["returned"] == "folders"
    assert at.session_state["heard"] == ["Converting model.gguf: tokenizer",
                                         "Converting model.gguf: writing safetensors"]
    [clock] = [m.value for m in at.main.markdown if m.value.endswith(" s** so far")]
    assert int(clock.strip("*").split(" ")[0]) >= 2  # rewritten during the silent step, not only at its messages



def test_home_shows_its_title_and_introduction_above_the_first_starts_box(tiny_request):
    """The conversion's box is written into a slot the sidebar opens: on Home that slot comes after the title and
    the introduction, so a first visit reads what the app is while it waits."""
    from pathlib import Path

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.session_state["pair_request"] = tiny_request
    at.run()
    assert not at.exception
    title, intro, slot = list(at.main.children.values())[:3]
    assert title.type == "title" and title.value.startswith("How post-training")
    assert intro.type == "markdown" and "**base** model" in intro.value
    assert slot.type == "empty"  # where the first start's box goes (emptied once the pair is ready)
