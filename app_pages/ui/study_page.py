"""What every study page has, built from its Study record: settings widgets from the Config fields and their help,
the Run button with its progress bar, the result found at once (this session, the user's store, or the demo pair's
shipped results) with a caption saying where it came from, the headline, and the downloads.

    stored = study_result(STUDY, pair, skip=("dataset",), extra={"dataset": chosen}, data=uploaded)
    if stored is None:
        st.stop()
    result = stored.result
    ... the page's own explanations and charts ...
    downloads(STUDY, result)
"""
from __future__ import annotations

import json
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

import streamlit as st

from analyses.csv_files import table_csv
from analyses.store import (MANIFEST, SHIPPED_ROOT, ResultStore, StoredResult, StoredResultError, named_directions,
                            pair_for, read_manifest, result_key, run_cached, shipped)
from analyses.study import Study, choices_of, config_fields, element_type, help_of, label_of
from steering import InvalidInputError, SteeringError, pair_names

from .names import PLAIN, role_names
from .progress import run_with_progress, stopped_notice


def settings(study: Study, *, skip: Sequence[str] = (), columns: int = 4) -> dict[str, Any]:
    """One widget per Config field not in `skip` (call it inside a form): the values as the user set them."""
    hints = typing.get_type_hints(study.Config)
    shown = [f for f in config_fields(study.Config) if f.name not in skip]
    values: dict[str, Any] = {}
    cols = st.columns(columns)
    for i, f in enumerate(shown):
        with cols[i % columns]:
            values[f.name] = _widget(study, f, hints[f.name])
    return values


def _widget(study: Study, f, hint) -> Any:
    key, label, help_text, default = f"{study.name}_{f.name}", label_of(f), help_of(f) or None, f.default
    choices = choices_of(f)
    if isinstance(default, bool):
        return st.checkbox(label, value=default, help=help_text, key=key)
    if choices is not None and not isinstance(default, tuple):
        return st.selectbox(label, choices, index=choices.index(default) if default in choices else 0,
                            help=help_text, key=key)
    if isinstance(default, float):
        return st.number_input(label, value=default, help=help_text, key=key, format="%g", **_limits(f, float))
    if isinstance(default, int):
        return st.number_input(label, value=default, step=1, help=help_text, key=key, **_limits(f, int))
    if default is None:  # `int | None`: empty means all
        # no min_value: the browser would keep the old value of a 0 without a word; the study's check names it
        return st.number_input(f"{label} (empty = all)", value=None, step=1, help=help_text, key=key)
    if isinstance(default, tuple):
        return st.text_input(f"{label} (comma-separated)", ", ".join(map(str, default)), help=help_text, key=key)
    return st.text_input(label, default, help=help_text, key=key)


def _limits(f, kind: type) -> dict[str, Any]:
    """The widget's min/max from the field's inclusive bounds (the check names the exclusive ones)."""
    meta = f.metadata
    return {name: kind(meta[bound]) for name, bound in (("min_value", "at_least"), ("max_value", "at_most"))
            if bound in meta}


def config_from(study: Study, values: Mapping[str, Any]) -> Any:
    """The Config for widget values (text of tuple fields parsed); InvalidInputError names a bad field."""
    hints = typing.get_type_hints(study.Config)
    parsed = {}
    for f in fields(study.Config):
        if f.name not in values:
            continue
        value = values[f.name]
        if isinstance(f.default, tuple) and isinstance(value, str):
            kind = element_type(hints[f.name])
            try:
                value = tuple(kind(v.strip()) for v in value.split(",") if v.strip())
            except ValueError:
                raise InvalidInputError(f"{label_of(f)}: '{value}' is not a comma-separated list of "
                                        f"{kind.__name__} values.") from None
        elif isinstance(f.default, int) and not isinstance(f.default, bool) and value is not None:
            value = int(value)
        parsed[f.name] = value
    return replace(study.Config(), **parsed)


def study_result(study: Study, pair, *, skip: Sequence[str] = (), extra: Mapping[str, Any] | None = None,
                 data: Any = None, columns: int = 4,
                 warn: Callable[[Any], str | None] | None = None,
                 quiet_when_missing: bool = False) -> StoredResult | None:
    """The settings form and the result for its settings.

    Run computes it live with a progress bar (and stores it). Without a click the page shows, at once, the result
    for the current settings when one exists: from this session, from the user's store (a CLI run finds its way
    here), or, for the demo pair on default settings, the shipped result. `extra` are values of the skipped fields
    set by the page's own widgets (or `data` for an upload); a bad value is shown as an error, nothing is lost.
    The record's check (`study.check(config, pair, data)`, the CLI's too) refuses a bad setting in one sentence
    before any lookup or work; `warn(config)` flags, in one sentence, settings that run but far outside what the model tolerates. `quiet_when_missing`: no
    result is None without a word (no "press Run", no "out of date"), for a page that shows something else then and
    says so in one message of its own."""
    with st.form(f"{study.name}_form"):
        with st.expander("Settings", expanded=False):
            values = settings(study, skip=skip, columns=columns)
        run = st.form_submit_button("Run", type="primary", help="compute it live with these settings")
    try:
        config = config_from(study, {**values, **(extra or {})})
        study.check(config, pair, data)  # one sentence, before any lookup or work: as the CLI checks
    except (SteeringError, TypeError, ValueError) as e:
        st.error(str(e))
        return None
    flagged = warn(config) if warn is not None else None
    if flagged:
        st.warning(flagged)
    state = f"{study.name}_stored"
    stopped_notice(state)
    estimate = run_estimate(study, pair, config, data)
    if estimate:
        st.caption(estimate)
    if run:
        return run_with_progress(state, lambda progress: run_cached(
            study, pair, config, data=data, progress=progress, refresh=True,
            notice=lambda message: st.warning(message)), partial_chart=study.partial_chart)
    return _found(study, pair, config, data, state, quiet_when_missing)


def run_estimate(study: Study, pair, config, data: Any = None) -> str | None:
    """How long a run with these settings takes, from the shipped default run's measured seconds scaled by the
    study's work; for a study without a work measure, the default run's seconds alone (None where no shipped run was
    measured on this pair or its road)."""
    timed = run_seconds(study, pair, config, data)
    if timed is None:
        return None
    seconds, manifest, own = timed
    whose = "the shipped result" if own else f"the {pair.name.partition('@')[0]} pair's shipped result"
    measured = (f"{float(manifest['seconds']):.0f} s for the defaults, load average "
                f"{manifest.get('load_average', '?')}")
    if study.work is None:
        return (f"A run with the default settings takes {duration(float(manifest['seconds']))} on a machine like "
                f"the one that computed {whose} (load average {manifest.get('load_average', '?')})" +
                ("; other settings take more or less in proportion to the prompts, layers and tokens they cover."
                 if seconds is None else "."))
    return (f"A run with these settings takes {duration(seconds)} on a machine like the one that computed {whose} "
            f"({measured}), scaled by the number of forward passes.")


def duration(seconds: float) -> str:
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.0f} min"


def run_seconds(study: Study, pair, config, data: Any = None) -> tuple[float | None, dict, bool] | None:
    """(seconds a run takes, the manifest they scale, whether it is this pair's own shipped run) or None; the
    seconds are None for a study without a work measure on other than its default settings."""
    try:
        found = shipped(study, pair)
        manifest = found.manifest if found is not None else _road_manifest(study, pair)
        if not manifest or not manifest.get("seconds"):
            return None
        seconds = float(manifest["seconds"])
        if study.work is None and study.name == "lab":  # its seconds are its last step's: the study runs were cached
            return None
        if study.work is not None:
            seconds *= study.work(pair, config, data) / study.work(pair, study.Config(), None)
        elif data is not None or config != study.Config():
            seconds = None
    except (SteeringError, StoredResultError, OSError, TypeError, ValueError, ZeroDivisionError):
        return None
    return seconds, manifest, found is not None


def _road_manifest(study: Study, pair) -> dict | None:
    """For stages of a registered pair's road ('demo@step108..dpo', same models in size and shape), the manifest of
    that pair's shipped run: its seconds time a run here as well (None for any other pair)."""
    registered, at, _ = str(getattr(pair, "name", "")).partition("@")
    if not at or registered not in pair_names():
        return None
    folder = SHIPPED_ROOT / study.name
    return read_manifest(folder) if (folder / MANIFEST).exists() else None


def _found(study: Study, pair, config, data, state: str, quiet: bool = False) -> StoredResult | None:
    try:
        keyed = pair_for(study, pair)  # the pair as run_cached keys it (the base alone for the lab)
        key = result_key(study, keyed, config, study.data_hash(study.resolve_data(keyed, config, data)))
    except SteeringError as e:
        st.error(str(e))
        return None
    current = st.session_state.get(state)
    if current is not None and current.manifest.get("key") == key:
        caption(current)
        return current
    try:
        stored = ResultStore().load(study, key)
    except StoredResultError as e:
        st.warning(f"{e} Press Run to compute it again.")
        stored = None
    if stored is None and data is None and config == study.Config():
        stored = _shipped(study, pair, quiet)
    if stored is None and quiet:
        return None
    if stored is None:
        st.info("No result for these settings yet: press **Run** to compute it (a progress bar shows how far "
                "it is).")
        return None
    st.session_state[state] = stored
    caption(stored)
    return stored


def _shipped(study: Study, pair, quiet: bool = False) -> StoredResult | None:
    try:
        found = shipped(study, pair)
    except StoredResultError as e:
        st.warning(f"The shipped result cannot be read: {e}")
        return None
    if found is None:
        return None
    if found.reason is not None:
        if quiet:
            return None
        st.warning(f"The shipped {study.title.lower()} result is out of date: {found.reason}. Press **Run** to "
                   "compute it again with the current code.")
        return None
    return found.stored


def caption(stored: StoredResult) -> None:
    m = stored.manifest
    where = "shipped with the project" if "assets" in stored.folder.parts else "from your result store"
    st.caption(f"Result {where}: computed by this project with `{m.get('command')}` on "
               f"{str(m.get('created_at', ''))[:10]}, in {m.get('seconds')} s on a {m.get('machine')} machine "
               f"(load {m.get('load_average', '?')}; study version {m.get('version')}). Press **Run** to compute it "
               "again live.")


def headline(study: Study, result: Any) -> None:
    """The study's headline numbers as one table: a row per measure, a column per model (or transfer direction);
    measures of the pair as a whole in the column "pair"."""
    import pandas as pd

    rows: dict[str, dict[str, Any]] = {}
    for name, value in study.headline(result).items():
        measure, _, who = name.rpartition("/") if "/" in name else (name, "", "pair")
        rows.setdefault(measure.replace("_", " "), {})[who] = value
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("measure")
    order = [c for c in ("base", "post") if c in table.columns] + [c for c in table.columns if c not in ("base",
                                                                                                       "post")]
    st.subheader("Headline")
    # A measure one model lacks is a dash. The browser draws a null cell as a grey "None" whatever a Styler says,
    # so the dash is a value; a column holding one is sent as text (each number written out in full, which the
    # page tests read back), and the Styler shows every number at 4 significant digits.
    shown = table[order].copy()
    for column in shown.columns[shown.isna().any()]:
        shown[column] = [_full(v) for v in shown[column]]
    pair = st.session_state.get("pair")
    if pair is not None and study.name != "lab":  # the lab's base and post are its road's base and each stage
        names = role_names(pair.name)
        shown = shown.rename(columns={"base": names["base"], "post": names["post"]} if names != PLAIN else {})
    st.dataframe(shown.style.format(_cell), width="stretch")


def _full(value: Any) -> str:
    """A cell of a column with a missing measure, as text: the dash, or the value written out in full."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return str(float(value)) if isinstance(value, float) else str(value)


def _cell(value: Any) -> str:
    """A headline number as a reader wants it: 4 significant digits, thousands separated."""
    if isinstance(value, str):
        try:
            value = float(value) if value not in ("True", "False", "—") else value
        except ValueError:
            return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def downloads(study: Study, result: Any) -> None:
    """Every table as CSV, the headline as JSON, every Direction as a direction file."""
    import pandas as pd

    items: list[tuple[str, bytes | str, str]] = [
        (f"{study.name}_headline.json", json.dumps(dict(study.headline(result)), indent=2), "application/json")]
    for f in fields(result):
        value = getattr(result, f.name)
        if isinstance(value, pd.DataFrame):
            items.append((f"{study.name}_{f.name}.csv", table_csv(value), "text/csv"))
    items += [(f"{name}.safetensors", direction.to_bytes(), "application/octet-stream")
              for name, direction in named_directions(study, result)]
    st.subheader("Downloads")
    cols = st.columns(4)
    for i, (name, content, mime) in enumerate(items):
        # the label is what differs between files (a long common prefix cut every label to the same words)
        cols[i % 4].download_button(_download_label(study, name), content, name, mime, key=f"{study.name}_dl_{name}",
                                    help=f"Saves {name}")


def _download_label(study: Study, file_name: str) -> str:
    stem, _, ext = file_name.rpartition(".")
    words = stem.removeprefix(f"{study.name}_").replace("_", " ")
    return f"{words[:1].upper()}{words[1:]} (.{ext})"
