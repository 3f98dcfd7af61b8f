"""Running a study's computation from a page: a progress bar while it works, partial results drawn under it as
they come, its result kept in the session, and a library error shown in the page (the previous result is dropped
so no stale chart stays on screen).

Beside the bar sits a Stop button of the page's own. Streamlit's toolbar Stop ends the script where it is, and the
browser keeps the bar frozen and the rest of the page greyed out. A click on this button instead makes Streamlit
rerun the page (a widget event interrupts the run at its next progress update), so the page is drawn afresh as it
was before the run, with one line saying the run was stopped."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from steering import SteeringError

T = TypeVar("T")


def _stopped(key: str) -> str:
    return f"{key}__stopped"


def _request_stop(key: str) -> None:
    st.session_state[_stopped(key)] = True


def stopped_notice(key: str) -> bool:
    """Say, once, that the run kept under `key` was stopped by its Stop button (True if it was)."""
    if not st.session_state.pop(_stopped(key), False):
        return False
    st.info("Run stopped: nothing new was computed or stored, and the page is as it was before the run.")
    return True


class PageProgress:
    """The progress callback a page hands to a study: the bar with its Stop button (when `stop_key` names the
    run), and one chart slot per partial-result key."""

    def __init__(self, partial_chart: Callable[[str, Any], Any] | None = None, stop_key: str | None = None):
        self.controls = st.empty()
        with self.controls.container():
            self.bar = st.progress(0.0, "starting")
            if stop_key is not None:
                st.button("Stop", key=f"{stop_key}__stop", on_click=_request_stop, args=(stop_key,),
                          help="Stop this run and keep the page usable (the toolbar's Stop leaves it greyed out).")
        self.partial_chart = partial_chart
        self.area = st.container()
        self.slots: dict[str, Any] = {}

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.progress(min(max(fraction, 0.0), 1.0), message)

    def partial(self, key: str, value: Any) -> None:
        chart = self.partial_chart(key, value) if self.partial_chart else None
        if chart is None:
            return
        if key not in self.slots:
            self.slots[key] = self.area.empty()
        self.slots[key].altair_chart(chart, width="stretch")

    def clear(self) -> None:
        self.controls.empty()
        for slot in self.slots.values():
            slot.empty()


def run_with_progress(key: str, compute: Callable[[Callable[[float, str], None]], T],
                      partial_chart: Callable[[str, Any], Any] | None = None) -> T | None:
    """`compute(progress)` with a progress bar (and the partial results it reports drawn with `partial_chart`, until
    it ends); its result goes to st.session_state[key] and is returned. On a SteeringError the message is shown with
    st.error, st.session_state[key] is cleared and None is returned."""
    st.session_state.pop(_stopped(key), None)  # a stop of an earlier run says nothing about this one
    progress = PageProgress(partial_chart, stop_key=key)
    try:
        result = compute(progress)
    except SteeringError as e:
        st.session_state.pop(key, None)
        st.error(str(e))
        return None
    finally:
        progress.clear()
    st.session_state[key] = result
    return result
