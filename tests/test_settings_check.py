"""Issue 27 §2 and §4: every study's settings are checked before any work, by one generic check driven by the
Config's fields: a NaN or infinite float (or tuple element) is refused, an integer outside its declared range is
refused with the range in the message, valid values pass, and a new study gets all of it without a line of its own.
The CLI turns the refusal into one `error:` line and exit code 2, and a page into one error sentence."""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyses import STUDIES, cli, find_study
from analyses.config_check import _numeric_kind, check_settings
from analyses.lab.config import Config as LabConfig
from analyses.study import Study, setting
from steering.errors import SettingError

NON_FINITE = [float("nan"), float("inf"), -float("inf")]
CONFIGS = [s.Config for s in STUDIES] + [LabConfig]


def _float_fields() -> list[tuple[type, str, bool]]:
    """(Config, field, is a tuple) for every float field of every study."""
    out = []
    for config_cls in CONFIGS:
        hints = typing.get_type_hints(config_cls)
        for f in fields(config_cls):
            if _numeric_kind(hints[f.name]) is float:
                out.append((config_cls, f.name, typing.get_origin(hints[f.name]) is tuple))
    return out


FLOAT_FIELDS = _float_fields()


def _with(config_cls: type, name: str, is_tuple: bool, value: float):
    default = config_cls()
    return replace(default, **{name: (*getattr(default, name), value) if is_tuple else value})


def test_every_study_has_float_settings_and_its_defaults_pass():
    assert {c.__module__.split(".")[1] for c, _, _ in FLOAT_FIELDS} >= {"truthfulness", "refusal", "knowledge",
                                                                         "confidence"}
    for study in STUDIES:
        study.check(study.Config())


@pytest.mark.parametrize("bad", NON_FINITE)
@pytest.mark.parametrize("where", FLOAT_FIELDS, ids=lambda w: f"{w[0].__module__.split('.')[1]}.{w[1]}")
def test_every_non_finite_float_setting_is_refused_before_any_work(where, bad):
    config_cls, name, is_tuple = where
    config = _with(config_cls, name, is_tuple, bad)
    with pytest.raises(SettingError, match=f"{name} must be a finite number"):
        check_settings(config)
    study = next((s for s in STUDIES if s.Config is config_cls), None)
    if study is not None:  # run refuses it before touching the pair (None here) or the data
        with pytest.raises(SettingError):
            study.run(None, config)
        with pytest.raises(SettingError):
            study.resolve_data(None, config)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(FLOAT_FIELDS), st.floats(allow_nan=True, allow_infinity=True))
def test_a_float_setting_passes_exactly_when_finite_and_within_its_bounds(where, value):
    config_cls, name, is_tuple = where
    meta = next(f for f in fields(config_cls) if f.name == name).metadata
    ok = math.isfinite(value) and (("at_least" not in meta or value >= meta["at_least"])
                                   and ("above" not in meta or value > meta["above"])
                                   and ("at_most" not in meta or value <= meta["at_most"])
                                   and ("below" not in meta or value < meta["below"]))
    config = _with(config_cls, name, is_tuple, value)
    if ok:
        check_settings(config)
    else:
        with pytest.raises(SettingError, match=f"{name} must be"):
            check_settings(config)


def _valid(f, kind: type):
    meta = f.metadata
    low = meta.get("at_least", meta.get("above", -1e6 if kind is float else -10**6))
    high = meta.get("at_most", meta.get("below", 1e6 if kind is float else 10**6))
    if kind is int:
        return st.integers(int(math.ceil(low)), int(math.floor(high)))
    return st.floats(low, high, allow_nan=False, allow_infinity=False,
                     exclude_min="above" in meta, exclude_max="below" in meta)


@st.composite
def valid_configs(draw):
    config_cls = draw(st.sampled_from(CONFIGS))
    hints, changes = typing.get_type_hints(config_cls), {}
    for f in fields(config_cls):
        kind = _numeric_kind(hints[f.name])
        if kind is None or not draw(st.booleans()):
            continue
        value = draw(_valid(f, kind))
        changes[f.name] = (value,) if typing.get_origin(hints[f.name]) is tuple else value
    return replace(config_cls(), **changes)


@settings(max_examples=80, deadline=None)
@given(valid_configs())
def test_finite_values_within_the_declared_ranges_pass(config):
    check_settings(config)


@pytest.mark.parametrize("study, name, value, message", [
    ("truthfulness", "n_test", -5, "n_test must be an integer of at least 0 (0 = all), not -5."),
    ("truthfulness", "probe_layer", -3, "probe_layer must be an integer of at least -2 (-1 = the paper's depth fraction, "
     "-2 = the best), not -3."),
    ("refusal", "n_test", -5, "n_test must be an integer of at least 1 (empty or all = the whole split), not -5."),
    ("refusal", "n_test", 0, "n_test must be an integer of at least 1"),
    ("refusal", "prune_layer_fraction", 1.0, "prune_layer_fraction must be a finite number of at least 0 and "
                                             "below 1, not 1.0."),
    ("refusal", "positions", (-1, 3), "every value of positions must be an integer of at least -1000 and at most -1"),
    ("knowledge", "noise_scale", 0.0, "noise_scale must be a finite number above 0, not 0.0."),
    ("knowledge", "n_items", 0, "n_items must be an integer of at least 1, not 0."),
    ("confidence", "top_norm_fraction", 1.5, "top_norm_fraction must be a finite number above 0 and at most 1"),
    ("diffing", "position", -3, "position must be an integer of at least -1 (-1 = where KL peaks), not -3."),
    ("truthfulness", "n_train", 2.5, "n_train must be an integer of at least 0 (0 = all), not 2.5."),
])
def test_out_of_range_settings_name_the_allowed_range(study, name, value, message):
    record = find_study(study)
    with pytest.raises(SettingError) as refused:
        record.check(replace(record.Config(), **{name: value}))
    assert str(refused.value).startswith(message)


@dataclass(frozen=True)
class NewSettings:
    strength: float = setting(1.0, "how hard")
    scales: tuple[float, ...] = setting((0.5,), "several", above=0)
    n_items: int | None = setting(None, "how many", at_least=1, special="empty = all")


def _new_study(calls: list) -> Study:
    return Study(name="new", title="New", about="A new study.", version="new@1", Config=NewSettings, Result=dict,
                 run=lambda pair, config, **kw: calls.append(config), charts=lambda r: {}, headline=lambda r: {},
                 default_data=lambda pair, config: calls.append("data"), data_hash=lambda data: "")


@pytest.mark.parametrize("changes", [{"strength": float("nan")}, {"scales": (1.0, float("inf"))},
                                     {"scales": (0.0,)}, {"n_items": 0}])
def test_a_new_study_gets_the_check_for_free(changes):
    calls: list = []
    study = _new_study(calls)
    with pytest.raises(SettingError):
        study.run(None, NewSettings(**changes))
    with pytest.raises(SettingError):
        study.resolve_data(None, NewSettings(**changes))
    assert calls == []  # neither the method nor the data loader ran
    study.run(None, NewSettings(n_items=None))
    assert len(calls) == 1


@pytest.mark.parametrize("argv, message", [
    (["--alphas", "nan"], "error: every value of alphas must be a finite number of at least -100 and at most 100, "
                          "not nan (in nan)."),
    (["--alphas", "inf,-1e30"], "error: every value of alphas must be a finite number of at least -100 and at most "
                                "100, not inf (in inf, -1e+30)."),
    (["--alphas", "1,-1e30"], "error: every value of alphas must be a finite number of at least -100 and at most "
                              "100, not -1e+30 (in 1.0, -1e+30)."),
    (["--n-test=-5"], "error: n_test must be an integer of at least 0 (0 = all), not -5."),
])
def test_the_cli_prints_one_error_line_and_exits_2_before_loading_anything(argv, message, tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cli, "pair_from_args", lambda args, **kwargs: pytest.fail("loaded the pair first"))
    code = cli.main(["truthfulness", "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [message]
    assert not any((tmp_path / "cache").rglob("manifest.json"))
