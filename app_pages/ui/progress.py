"""Running a study's computation from a page: a progress bar while it works, partial results drawn under it as
they come, its result kept in the session, and a library error shown in the page (the previous result is dropped
so no stale chart stays on screen)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from steering import SteeringError

T = TypeVar("T")


class PageProgress:
    """The progress callback a page hands to a study: the bar, and one chart slot per partial-result key."""

    def __init__(self, partial_chart: Callable[[str, Any], Any] | None = None):
        self.bar = st.progress(0.0, "starting")
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
        self.bar.empty()
        for slot in self.slots.values():
            slot.empty()


def run_with_progress(key: str, compute: Callable[[Callable[[float, str], None]], T],
                      partial_chart: Callable[[str, Any], Any] | None = None) -> T | None:
    """`compute(progress)` with a progress bar (and the partial results it reports drawn with `partial_chart`, until
    it ends); its result goes to st.session_state[key] and is returned. On a SteeringError the message is shown with
    st.error, st.session_state[key] is cleared and None is returned."""
    progress = PageProgress(partial_chart)
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
