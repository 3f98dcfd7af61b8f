"""The result store (analyses/store.py): a result round-trips through Parquet, safetensors and JSON; one key finds it
again; a corrupt or stale entry is reported in one line and recomputed, never silently dropped; shipped results are
current only for their pair, version, config and data."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analyses.store import (ResultStore, StoredResultError, read_result, result_key, run_cached, ship, shipped,
                            write_result)
from analyses.study import Study, setting
from steering.directions import Direction, DirectionInfo

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    layers: int = setting(3, "layers read")
    alphas: tuple[float, ...] = setting((1.0, 4.0), "strengths, 20% of the norm")


@dataclass
class Result:
    table: pd.DataFrame
    directions: dict
    means: dict
    vectors: np.ndarray
    gap: torch.Tensor
    best: dict = field(default_factory=dict)
    note: str = ""


def make_result(config: Config, offset: float = 0.0) -> Result:
    info = DirectionInfo(model="tiny/base", dataset="toy", dataset_hash="abc", position=-1)
    torch.manual_seed(0)
    return Result(
        table=pd.DataFrame({"layer": range(config.layers), "accuracy": np.linspace(0.5, 0.9, config.layers) + offset,
                            "model": ["base"] * config.layers, "kept": [True, False, True][:config.layers]}),
        directions={"base": Direction(torch.randn(config.layers, 4), info, torch.rand(config.layers)),
                    "post": Direction(torch.randn(config.layers, 4), replace(info, model="tiny/post"))},
        means={"base": torch.randn(config.layers, 4)}, vectors=np.arange(6.0).reshape(2, 3),
        gap=torch.tensor([1.5, 2.5]), best={"base": {"logistic": [2, 0.9]}}, note="ok")


class FakePair:
    post = object()

    def __init__(self, name: str = "tiny"):
        self.name = name

    def fingerprint(self, role: str) -> str:
        return f"{self.name}/{role}@abc/float32/none"


def make_study(calls: list, version: str = "toy@1") -> Study:
    def run(pair, config, *, data=None, progress=None):
        calls.append(config)
        return make_result(config)

    return Study(name="toy", title="Toy", about="A toy study.", version=version, Config=Config, Result=Result,
                 run=run, charts=lambda r: {}, headline=lambda r: {"best/base": 0.9},
                 default_data=lambda pair, config: ["a", "b"], data_hash=lambda data: "|".join(data))


def assert_same(a: Result, b: Result) -> None:
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.directions.keys() == b.directions.keys()
    for role in a.directions:
        assert torch.equal(a.directions[role].vectors, b.directions[role].vectors)
        assert a.directions[role].info == b.directions[role].info
    assert torch.equal(a.directions["base"].resid_norms, b.directions["base"].resid_norms)
    assert b.directions["post"].resid_norms is None
    assert torch.equal(a.means["base"], b.means["base"]) and torch.equal(a.gap, b.gap)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert (a.best, a.note) == (b.best, b.note)


def test_a_result_round_trips_through_its_folder(tmp_path):
    study, result = make_study([]), make_result(Config())
    write_result(result, tmp_path / "entry", {"study": "toy", "version": "toy@1"})
    assert sorted(p.name for p in (tmp_path / "entry").iterdir()) == [
        "directions.base.direction.safetensors", "directions.post.direction.safetensors", "manifest.json",
        "table.parquet", "tensors.safetensors"]
    assert_same(result, read_result(tmp_path / "entry", study).result)


def test_a_field_that_is_not_json_is_refused_when_written(tmp_path):
    bad = replace(make_result(Config()), note=object())
    with pytest.raises(TypeError):
        write_result(bad, tmp_path / "entry", {})


def test_the_key_changes_with_models_version_config_and_data():
    study, pair = make_study([]), FakePair()
    key = result_key(study, pair, Config(), "h")
    assert key == result_key(make_study([]), FakePair(), Config(), "h")
    assert len({key, result_key(study, FakePair("other"), Config(), "h"),
                result_key(make_study([], "toy@2"), pair, Config(), "h"),
                result_key(study, pair, Config(layers=2), "h"), result_key(study, pair, Config(), "g")}) == 5


def test_run_cached_computes_once_and_finds_it_again(tmp_path):
    calls, store = [], ResultStore(tmp_path)
    study, pair = make_study(calls), FakePair()
    first = run_cached(study, pair, Config(), store=store, command="python -m analyses toy")
    again = run_cached(study, pair, Config(), store=ResultStore(tmp_path))
    assert len(calls) == 1 and again.folder == first.folder
    assert again.manifest["command"] == "python -m analyses toy" and again.manifest["data_hash"] == "a|b"
    assert again.manifest["config"] == {"layers": 3, "alphas": [1.0, 4.0]}
    assert_same(first.result, again.result)
    run_cached(study, pair, Config(), store=store, refresh=True)
    run_cached(study, pair, Config(layers=2), store=store)
    assert len(calls) == 3


@pytest.mark.parametrize("damage", ["manifest", "table", "version"])
def test_a_bad_entry_is_reported_in_one_line_and_recomputed(tmp_path, damage):
    calls, store, notices = [], ResultStore(tmp_path), []
    study, pair = make_study(calls), FakePair()
    folder = run_cached(study, pair, Config(), store=store).folder
    if damage == "manifest":
        (folder / "manifest.json").write_text("{not json")
    elif damage == "table":
        (folder / "table.parquet").write_bytes(b"PAR1 broken")
    else:
        manifest = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**manifest, "version": "toy@0"}))
    with pytest.raises(StoredResultError):
        store.load(study, folder.name)
    again = run_cached(study, pair, Config(), store=store, notice=notices.append)
    assert len(calls) == 2 and len(notices) == 1 and "\n" not in notices[0]
    assert again.folder == folder and store.load(study, folder.name) is not None


def test_a_bad_entry_is_kept_when_recomputing_fails(tmp_path):
    store, study, pair = ResultStore(tmp_path), make_study([]), FakePair()
    folder = run_cached(study, pair, Config(), store=store).folder
    (folder / "table.parquet").write_bytes(b"broken")

    def failing(pair, config, *, data=None, progress=None):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        run_cached(replace(study, run=failing), pair, Config(), store=store, notice=lambda m: None)
    assert (folder / "table.parquet").read_bytes() == b"broken" and (folder / "manifest.json").exists()


def test_a_shipped_result_is_current_only_for_its_pair_version_config_and_data(tmp_path):
    study, pair = make_study([]), FakePair()
    stored = run_cached(study, pair, Config(), store=ResultStore(tmp_path / "store"))
    root = tmp_path / "shipped"
    ship(study, stored, root)
    found = shipped(study, pair, root)
    assert found.reason is None
    assert_same(stored.result, found.stored.result)
    assert shipped(study, FakePair("other"), root) is None
    assert "version" in shipped(make_study([], "toy@2"), pair, root).reason
    assert "settings" in shipped(replace(study, Config=_OtherDefaults), pair, root).reason
    assert "data" in shipped(replace(study, data_hash=lambda d: "changed"), pair, root).reason


@dataclass(frozen=True)
class _OtherDefaults(Config):
    layers: int = setting(2, "layers read")


def test_nothing_in_the_project_uses_pickle():
    sources = [*ROOT.glob("steering/**/*.py"), *ROOT.glob("analyses/**/*.py"), *ROOT.glob("app_pages/**/*.py"),
               ROOT / "app.py"]
    users = [str(p.relative_to(ROOT)) for p in sources if "pickle" in p.read_text()]
    assert sources and users == []
