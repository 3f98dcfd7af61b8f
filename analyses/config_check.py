"""The generic check of a study's settings, driven by the Config's dataclass fields, run before any work.

Every float (and every element of a tuple of floats) must be finite: a NaN alpha, noise scale or threshold
otherwise runs, is stored, and shows NaN beside numbers that look real. Fields declared with bounds
(`setting(..., at_least=0, special="0 = all")`) must lie in them; the message names the allowed range and what the
special values mean. `int | None` fields take None as "all". A new study's Config gets all of this by declaring its
fields with `setting()`: `Study` runs `check_settings` in front of its `run` (see analyses/study.py)."""
from __future__ import annotations

import functools
import math
import numbers
import typing
from collections.abc import Callable
from dataclasses import Field, fields, is_dataclass
from typing import Any

from steering.errors import SettingError


def check_settings(config: Any) -> None:
    """SettingError (one sentence naming the field and its allowed range) for the first bad setting."""
    if not is_dataclass(config):
        return
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        check_field(f, hints.get(f.name, Any), getattr(config, f.name))


def check_field(f: Field, hint: Any, value: Any) -> None:
    if value is None and _optional(hint):
        return
    kind = _numeric_kind(hint)
    if kind is None:
        return
    elements = value if isinstance(value, tuple) else (value,)
    for element in elements:
        _check_number(f, kind, element, value)


def checked_run(run: Callable[..., Any]) -> Callable[..., Any]:
    """`run` with the settings checked first (what Study puts in front of every study's run)."""
    if getattr(run, "settings_checked", False):
        return run

    @functools.wraps(run)
    def checked(pair, config, *args, **kwargs):
        check_settings(config)
        return run(pair, config, *args, **kwargs)

    checked.settings_checked = True
    return checked


def allowed_range(f: Field, kind: type) -> str:
    """The allowed values of a numeric field in words: "an integer of at least 0 (0 = all)"."""
    meta = f.metadata
    what = "an integer" if kind is int else "a finite number"
    parts = [f"of at least {_g(meta['at_least'])}" if "at_least" in meta else "",
             f"above {_g(meta['above'])}" if "above" in meta else "",
             f"at most {_g(meta['at_most'])}" if "at_most" in meta else "",
             f"below {_g(meta['below'])}" if "below" in meta else ""]
    text = " and ".join(p for p in parts if p)
    special = f" ({meta['special']})" if meta.get("special") else ""
    return f"{what}{' ' + text if text else ''}{special}"


def _check_number(f: Field, kind: type, element: Any, value: Any) -> None:
    ok_type = isinstance(element, numbers.Real) and not isinstance(element, bool) and (
        kind is float or isinstance(element, numbers.Integral))
    if not ok_type or not math.isfinite(element) or not _in_bounds(f.metadata, element):
        where = f" (in {', '.join(map(str, value))})" if isinstance(value, tuple) else ""
        every = "every value of " if isinstance(value, tuple) else ""
        raise SettingError(f"{every}{f.name} must be {allowed_range(f, kind)}, not {element!r}{where}.")


def _in_bounds(meta: typing.Mapping[str, Any], x: float) -> bool:
    return (("at_least" not in meta or x >= meta["at_least"]) and ("above" not in meta or x > meta["above"])
            and ("at_most" not in meta or x <= meta["at_most"]) and ("below" not in meta or x < meta["below"]))


def _numeric_kind(hint: Any) -> type | None:
    """int or float for a field of that type, `X | None`, or `tuple[X, ...]`; None for anything else (bool, str)."""
    args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
    if typing.get_origin(hint) is tuple or _optional(hint):
        return args[0] if len(set(args)) == 1 and args[0] in (int, float) else None
    return hint if hint in (int, float) else None


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint) and typing.get_origin(hint) is not tuple


def _g(x: float) -> str:
    return f"{x:g}"
