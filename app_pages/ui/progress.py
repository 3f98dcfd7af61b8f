"""Running a study's computation from a page: a progress bar while it works, its result kept in the session, and a
library error shown in the page (the previous result is dropped so no stale chart stays on screen)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from steering import SteeringError

T = TypeVar("T")


def run_with_progress(key: str, compute: Callable[[Callable[[float, str], None]], T]) -> T | None:
    """`compute(progress)` with a progress bar; its result goes to st.session_state[key] and is returned. On a
    SteeringError the message is shown with st.error, st.session_state[key] is cleared and None is returned."""
    bar = st.progress(0.0, "starting")
    try:
        result = compute(lambda fraction, message: bar.progress(min(max(fraction, 0.0), 1.0), message))
    except SteeringError as e:
        st.session_state.pop(key, None)
        st.error(str(e))
        return None
    finally:
        bar.empty()
    st.session_state[key] = result
    return result
