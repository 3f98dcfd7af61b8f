"""The studies' stored Directions for a pair (analyses/study_directions.py), on a hand-made store: every Direction
field and every entry of a dict of them, for this pair's models and this version of the study only."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest
import torch

import analyses
from analyses.store import fingerprints, write_result
from analyses.study import Study
from analyses.study_directions import directions_for
from steering.directions import Direction, DirectionInfo


@dataclass
class Result:
    table: pd.DataFrame
    direction: Direction
    directions: dict
    note: str = ""


class FakePair:
    post = object()

    def __init__(self, name: str = "tiny"):
        self.name = name

    def fingerprint(self, role: str) -> str:
        return f"{self.name}/{role}@abc/float32/none"


def _direction(seed: int, model: str) -> Direction:
    g = torch.Generator().manual_seed(seed)
    return Direction(torch.randn(3, 4, generator=g), DirectionInfo(model, "toy", "h"), torch.rand(3, generator=g))


def _study(version: str = "toy@1") -> Study:
    return Study(name="toy", title="Toy", about="A toy study.", version=version, Config=dict, Result=Result,
                 run=None, charts=None, headline=None, default_data=None, data_hash=None)


def _write(folder, pair, created_at: str, seed: int, version: str = "toy@1") -> Result:
    result = Result(pd.DataFrame({"a": [1]}), _direction(seed, "mean"),
                    {"base": _direction(seed + 1, "base"), "post": _direction(seed + 2, "post")})
    write_result(result, folder, {"study": "toy", "version": version, "key": folder.name,
                                  "fingerprints": fingerprints(pair), "created_at": created_at})
    return result


@pytest.fixture
def store(tmp_path, monkeypatch):
    from analyses.store import ResultStore

    monkeypatch.setattr(analyses, "STUDIES", [_study()])
    return ResultStore(tmp_path / "results")


def test_every_direction_of_this_pairs_results_is_listed_newest_first(store, tmp_path):
    pair = FakePair()
    old = _write(store.root / "toy" / "k-old", pair, "2026-01-02T10:00:00+00:00", seed=0)
    new = _write(store.root / "toy" / "k-new", pair, "2026-12-01T10:00:00+00:00", seed=10)
    _write(store.root / "toy" / "k-other-pair", FakePair("other"), "2026-12-05T10:00:00+00:00", seed=20)
    _write(store.root / "toy" / "k-old-version", pair, "2026-12-06T10:00:00+00:00", seed=30, version="toy@0")
    (store.root / "toy" / "k-broken").mkdir()
    (store.root / "toy" / "k-broken" / "manifest.json").write_text("{not json")
    shipped = _write(tmp_path / "shipped" / "toy", pair, "2025-06-01T10:00:00+00:00", seed=40)

    found = directions_for(pair, store, shipped_root=tmp_path / "shipped")
    labels = [label for label, _ in found]
    assert labels == ["toy · direction · 2026-12-01", "toy · directions · base · 2026-12-01",
                      "toy · directions · post · 2026-12-01",
                      "toy · direction · 2026-01-02", "toy · directions · base · 2026-01-02",
                      "toy · directions · post · 2026-01-02",
                      "toy · direction · 2025-06-01 (shipped)", "toy · directions · base · 2025-06-01 (shipped)",
                      "toy · directions · post · 2025-06-01 (shipped)"]
    expected = [r.direction if i == 0 else r.directions[("base", "post")[i - 1]]
                for r in (new, old, shipped) for i in range(3)]
    for (label, got), want in zip(found, expected):
        assert torch.equal(got.vectors, want.vectors) and got.info == want.info, label


def test_a_pair_without_stored_results_gets_an_empty_list(store, tmp_path):
    _write(store.root / "toy" / "k", FakePair(), "2026-12-01T10:00:00+00:00", seed=0)
    assert directions_for(FakePair("unseen"), store, shipped_root=tmp_path / "none") == []


def test_an_unreadable_direction_file_is_left_out(store, tmp_path):
    folder = store.root / "toy" / "k"
    _write(folder, FakePair(), "2026-12-01T10:00:00+00:00", seed=0)
    (folder / "directions.base.direction.safetensors").write_bytes(b"garbage")
    (store.root / "toy" / "k2").mkdir()  # another key's entry copied into k2's folder is not k2's
    for file in folder.iterdir():
        (store.root / "toy" / "k2" / file.name).write_bytes(file.read_bytes())
    labels = [label for label, _ in directions_for(FakePair(), store, shipped_root=tmp_path / "none")]
    assert labels == ["toy · direction · 2026-12-01", "toy · directions · post · 2026-12-01"]
