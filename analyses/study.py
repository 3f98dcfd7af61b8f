"""The shape every study has: one `Study` record per package, listed in `analyses.STUDIES`.

Every study package has the same layout, and `study_of` builds its record from it by these names:

    config.py   Config (the settings), check(config, pair=None, data=None) (optional: what the generic range
                check cannot judge; it checks what it can with what it is given)
    compute.py  run, Result, work (optional)
    data.py     default_data, data_hash
    summary.py  headline
    charts.py   charts
    partial.py  partial_chart (optional)
    cli.py      CLI (optional: a CliExtras)

    STUDY = study_of(__name__, title="Refusal", about="…", version="refusal@5", page="app_pages/3_Refusal.py",
                     icon="🛑", lab=InLab(series=(...), caption="…", seconds=240.0))

    result = STUDY.run(pair, STUDY.Config(), data=None, progress=None)   # the method itself, never cached
    STUDY.charts(result)      # {name: altair chart}
    STUDY.headline(result)    # {"best_probe_accuracy/base": 0.99, ...}: flat, named scalars

Caching and the store live in `analyses.store` (`run_cached`), the command line in `analyses.cli`, the shared page
pieces in `app_pages/ui/study_page.py`; all of them take a Study and nothing else.

A Config is a frozen dataclass whose fields are declared with `setting(default, help, choices=...)`, so the page's
widgets and the CLI's options (and their help) come from one place."""
from __future__ import annotations

import argparse
import importlib
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
class InLab:
    """How a study runs in the post-training lab, and what the lab's timeline draws of it.

    settings  the settings that differ from the study's defaults at every stage of the road (lighter, the same at
              every stage, so stages compare with each other)
    series    the (metric, model) headline series its timeline panel draws: the ones the paper's comparisons read
              (the tidy table holds every headline number); empty = every headline number
    caption   what to look for in that panel
    seconds   its typical seconds per stage at those settings (the lab's progress weights; only ratios matter)"""

    settings: Mapping[str, Any] = field(default_factory=dict)
    series: tuple[tuple[str, str], ...] = ()
    caption: str = ""
    seconds: float = 60.0


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
    check_inputs(config, pair, data) -> None: the study's own check of what the generic range check cannot judge
              (a layer past the model's depth, an unknown data set); `check` runs both
    lab       InLab: how the study runs in the post-training lab and what its timeline draws
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
    check_inputs: Callable[[Any, Any, Any], None] | None = None
    lab: InLab = InLab()

    def __post_init__(self) -> None:
        # every front door (page, CLI, bench, lab, a script calling STUDY.run) gets the generic settings check
        # before any work, and a new study gets it without a line of its own
        object.__setattr__(self, "run", checked_run(self.run))

    def check(self, config: Any, pair: Any = None, data: Any = None) -> None:
        """SettingError, one sentence, for a setting outside its declared range or a non-finite float; then the
        study's own check (InvalidInputError, one sentence) with what is given: the config alone before a pair is
        loaded, the pair (its depth, its vocabulary) and the user's data (None: the built-in set) once it is. The
        page and the CLI call it the same way, before any work."""
        check_settings(config)
        if self.check_inputs is not None:
            self.check_inputs(config, pair, data)

    def one_line(self) -> str:
        return self.summary or self.about.split(". ")[0].rstrip(".")

    def resolve_data(self, pair, config, data: Any = None) -> Any:
        """The data a run uses: the user's, or the study's built-in set for this config. The config is checked
        first: the store's lookup and the page's resolve the data before anything else, so a bad setting never
        reaches the store (not even to find an old result stored under it)."""
        self.check(config)
        return self.default_data(pair, config) if data is None else data


# module of the package -> (name in it, required): the one layout every study package has
LAYOUT: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "config": (("Config", "Config", True), ("check", "check_inputs", False)),
    "compute": (("run", "run", True), ("Result", "Result", True), ("work", "work", False)),
    "data": (("default_data", "default_data", True), ("data_hash", "data_hash", True)),
    "summary": (("headline", "headline", True),),
    "charts": (("charts", "charts", True),),
    "partial": (("partial_chart", "partial_chart", False),),
    "cli": (("CLI", "cli", False),),
}


def study_of(package: str, *, title: str, about: str, version: str, **described: Any) -> Study:
    """The Study record of a study package, its parts found by the names in LAYOUT (see the module's docstring);
    `described` are the record's descriptive fields (page, icon, summary, base_only, lab). The record's name is the
    package's last name: `study_of("analyses.refusal", ...)` is the study `refusal`."""
    parts: dict[str, Any] = {}
    for module_name, names in LAYOUT.items():
        try:
            module = importlib.import_module(f"{package}.{module_name}")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.{module_name}" or any(required for _, _, required in names):
                raise
            continue
        for attr, key, required in names:
            if hasattr(module, attr):
                parts[key] = getattr(module, attr)
            elif required:
                raise TypeError(f"{package}.{module_name} has no `{attr}`: every study package has one "
                                "(see analyses/study.py)")
    return Study(name=package.rpartition(".")[2], title=title, about=about, version=version, **parts, **described)
