"""Number fields that refuse an out-of-range value where it is typed.

st.number_input's own min_value/max_value turn a bad entry red in the browser and keep the previous value, so a
run goes ahead on a number the user did not choose, without a word. Here the field takes any number, a value out of
range is named in one sentence under the field, and the page disables its run button while any is."""
from __future__ import annotations

from typing import Any



class Checks:
    """The problems found in a page's fields this run; `ok` gates its run button."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.problems

    def number(self, where: Any, label: str, value: float | int, *, lo: float, hi: float, key: str,
               what: str | None = None, check: bool = True, **kwargs: Any) -> float | int:
        """A number field drawn in `where` (st or a column); out of [lo, hi] it says so and blocks the run (unless
        `check` is off: a disabled field the run does not read)."""
        chosen = where.number_input(label, value=value, key=key, **kwargs)
        if check and chosen is not None and not lo <= chosen <= hi:
            message = f"{what or label} must be between {lo:g} and {hi:g}, not {chosen:g}: nothing runs until it is."
            where.error(message)
            self.problems.append(message)
        return chosen
