"""The shape every study has: one `Study` record per package, listed in `analyses.STUDIES`.

    STUDY = Study(name="refusal", title="Refusal", about="…", version="refusal@4", Config=Config, Result=Result,
                  run=run, charts=charts, headline=headline, default_data=default_data, data_hash=data_hash)

    result = STUDY.run(pair, STUDY.Config(), data=None, progress=None)   # the method itself, never cached
    STUDY.charts(result)      # {name: altair chart}
    STUDY.headline(result)    # {"best_probe_accuracy/base": 0.99, ...}: flat, named scalars

Caching and the store live in `analyses.store` (`run_cached`), the command line in `analyses.cli`, the shared page
pieces in `app_pages/ui/study_page.py`; all of them take a Study and nothing else.

A Config is a frozen dataclass whose fields are declared with `setting(default, help, choices=...)`, so the page's
widgets and the CLI's options (and their help) come from one place."""
from __future__ import annotations

import argparse
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from .config_check import check_settings, checked_run

Scalar = float | int | str | bool | None
Progress = Callable[[float, str], None]


def setting(default: Any, help: str, *, choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None,
            label: str | None = None, at_least: float | None = None, above: float | None = None,
            at_most: float | None = None, below: float | None = None, special: str = "") -> Any:
    """A Config field with its help text (shown by --help and as the widget's tooltip), optional choices (a list
    or a function returning one) and an optional short widget label. The bounds (at_least/above, at_most/below:
    of each element for a tuple) and `special` (what a special value in them means, "0 = all") are enforced by
    `analyses.config_check` before any work; a float is always refused when it is NaN or infinite."""
    bounds = {"at_least": at_least, "above": above, "at_most": at_most, "below": below}
    return field(default=default, metadata={"help": help, "choices": choices, "label": label, "special": special,
                                            **{k: v for k, v in bounds.items() if v is not None}})


def help_of(f: Field) -> str:
    return f.metadata.get("help", "")


def choices_of(f: Field) -> list[Any] | None:
    choices = f.metadata.get("choices")
    if choices is None:
        return None
    return list(choices() if callable(choices) else choices)


def label_of(f: Field) -> str:
    return f.metadata.get("label") or f.name.replace("_", " ").capitalize()


def element_type(hint: Any) -> type:
    """The element type of a `tuple[X, ...]` field's annotation (str when it names none)."""
    args = [a for a in typing.get_args(hint) if a is not Ellipsis]
    return args[0] if args else str


def config_fields(config_cls: type) -> list[Field]:
    """The settings of a Config, each with a default (a study's Config has no required field)."""
    found = fields(config_cls)
    missing = [f.name for f in found if f.default is MISSING]
    if missing:
        raise TypeError(f"{config_cls.__qualname__}: every setting needs a default ({', '.join(missing)})")
    return list(found)


@dataclass(frozen=True)
class CliExtras:
    """What a study's command line has beyond its Config: options for the user's own data files, and extra
    outputs. `add_options(group)` adds them; `data(args)` returns the data they name (None for the built-in set);
    `write(args, pair, result, out)` writes anything beyond the tables, charts and direction files."""

    add_options: Callable[[argparse._ArgumentGroup], None] | None = None
    data: Callable[[argparse.Namespace], Any] | None = None
    write: Callable[[argparse.Namespace, Any, Any, Path], None] | None = None


@dataclass(frozen=True)
class Study:
    """One study of the paper, the same shape for every study.

    name      the registry key and the CLI's sub-command (`python -m analyses <name>`)
    title     the page's name; about: three sentences on the method, for a teacher
    version   bumped whenever the study's numbers would change: stored results of another version are stale
    Config    frozen dataclass of `setting()` fields; Result: dataclass of tables, tensors, Directions, JSON values
    run       run(pair, config, *, data=None, progress=None) -> Result: the method, uncached
    charts    charts(result) -> {name: altair chart}
    headline  headline(result) -> {name: scalar}: the few numbers the paper reports, per model ("…/base") or pair
    default_data(pair, config) -> the study's built-in data for this config; data_hash(data) -> str
    page      the Streamlit page that shows it (relative to the app), icon its emoji, summary its one-line link text
    partial_chart(key, value) -> altair chart or None: draws a partial result a run hands to `Steps.partial` while
              it works (the page shows it under the progress bar); None = partial results are not drawn
    work(pair, config, data) -> float: the run's cost in the study's own unit (its progress weights); with a
              measured run's seconds the page estimates how long a run with other settings takes; None = no estimate
    base_only True: the run reads the pair's base model alone (the lab loads the models it compares itself), so
              its results are keyed by the base and the CLI loads nothing else
    """

    name: str
    title: str
    about: str
    version: str
    Config: type
    Result: type
    run: Callable[..., Any]
    charts: Callable[[Any], Mapping[str, Any]]
    headline: Callable[[Any], Mapping[str, Scalar]]
    default_data: Callable[[Any, Any], Any]
    data_hash: Callable[[Any], str]
    page: str = ""
    icon: str = ""
    cli: CliExtras = CliExtras()
    summary: str = ""  # one line for the landing page's link; the first sentence of `about` when empty
    partial_chart: Callable[[str, Any], Any] | None = None
    work: Callable[[Any, Any, Any], float] | None = None
    base_only: bool = False

    def __post_init__(self) -> None:
        # every front door (page, CLI, bench, lab, a script calling STUDY.run) gets the generic settings check
        # before any work, and a new study gets it without a line of its own
        object.__setattr__(self, "run", checked_run(self.run))

    def check(self, config: Any) -> None:
        """SettingError, one sentence, for a setting outside its declared range or a non-finite float."""
        check_settings(config)

    def one_line(self) -> str:
        return self.summary or self.about.split(". ")[0].rstrip(".")

    def resolve_data(self, pair, config, data: Any = None) -> Any:
        """The data a run uses: the user's, or the study's built-in set for this config. The config is checked
        first: the store's lookup and the page's resolve the data before anything else, so a bad setting never
        reaches the store (not even to find an old result stored under it)."""
        self.check(config)
        return self.default_data(pair, config) if data is None else data
