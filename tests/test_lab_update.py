"""`python -m analyses lab --studies S --into-shipped`: the shipped road with one study recomputed at every stage and
every other study's cells kept, only when those cells are current; stored under the full road's key."""
import pandas as pd
import pytest
from test_lab import tiny_road  # noqa: F401  (the fixture: a tiny pair with a road of five stages)

from analyses import STUDY_NAMES, find_study
from analyses.lab import LAB, Config, study_config
from analyses.lab.compute import Result
from analyses.lab.update import merge_into_shipped
from analyses.store import ResultStore, config_json, manifest_for, pair_for, result_key, run_cached, ship, shipped
from analyses.store_entry import write_result
from steering import load_pair
from steering.errors import InvalidInputError
from steering.stages import stages


def old_road(pair, versions: dict) -> Result:
    """A shipped road as an older lab wrote it: one cell per stage and study, marked -1 so a kept cell is seen."""
    rows = [{"stage": s.name, "step": s.step, "phase": s.phase, "study": n, "metric": "marker", "model": "pair",
             "value": -1.0} for s in stages(pair.name) for n in STUDY_NAMES]
    runs = pd.DataFrame([{"stage": r["stage"], "study": r["study"], "key": "old", "seconds": 1.0} for r in rows])
    return Result(pd.DataFrame(rows), pd.DataFrame({"stage": ["sft"], "refusal_rate": [0.5]}),
                  pd.DataFrame({"step": [1], "value": [0.1]}), runs,
                  {n: config_json(study_config(find_study(n))) for n in STUDY_NAMES}, versions)


def ship_old(root, pair, versions: dict) -> None:
    old = replace_version(versions)
    manifest = manifest_for(old, pair_for(LAB, pair), Config(), "oldkey", "olddata", 1.0, "an older lab")
    write_result(old_road(pair, versions), root / "lab", {**manifest, "key": "oldkey"})


def replace_version(versions: dict):
    from dataclasses import replace

    return replace(LAB, version="lab@0 (" + ", ".join(versions.values()) + ")")


@pytest.fixture
def part(tiny_road, tmp_path):  # noqa: F811
    """Diffing recomputed at every stage of the tiny road with the lab's own settings (a few seconds)."""
    pair = load_pair("tiny", base_only=True)
    store = ResultStore(tmp_path / "store")
    return pair, store, run_cached(LAB, pair, Config(studies=("diffing",), transfer=False), store=store,
                                   notice=pytest.fail)


def current_versions() -> dict:
    return {n: find_study(n).version for n in STUDY_NAMES}


def test_one_study_recomputed_into_the_shipped_road(part, tmp_path):
    pair, store, recomputed = part
    root = tmp_path / "shipped"
    ship_old(root, pair, {**current_versions(), "diffing": "diffing@0"})
    road = merge_into_shipped(LAB, pair, recomputed, "the command", store, root=root)
    timeline = road.result.timeline
    kept = timeline[timeline["study"] != "diffing"]
    assert set(kept["value"]) == {-1.0} and len(kept) == len(stages("tiny")) * (len(STUDY_NAMES) - 1)
    fresh = timeline[timeline["study"] == "diffing"].reset_index(drop=True)
    assert "marker" not in set(fresh["metric"])
    pd.testing.assert_frame_equal(fresh, recomputed.result.timeline.reset_index(drop=True), check_like=True)
    assert road.result.versions == current_versions()
    assert road.result.transfer.equals(old_road(pair, current_versions()).transfer)  # refusal not recomputed
    runs = road.result.runs
    assert len(runs) == len(stages("tiny")) * len(STUDY_NAMES) and set(runs[runs.study == "diffing"]["key"]) != {"old"}
    full = Config()
    assert road.manifest["key"] == result_key(LAB, pair, full, LAB.data_hash(LAB.resolve_data(pair, full)))
    assert road.manifest["merged_from"]["key"] == "oldkey" and road.manifest["merged_from"]["recomputed"] == ["diffing"]
    assert road.manifest["command"] == "the command"
    assert road.manifest["merged_from"]["merged_from"] is None  # the kept road was a full run
    # what the page reads: the full road's key now finds it in the store
    assert run_cached(LAB, pair, full, store=store, notice=pytest.fail).manifest["key"] == road.manifest["key"]
    assert shipped(LAB, pair, root=root).reason is not None  # the old shipped road stays until `ship` replaces it
    ship(LAB, road, root=root)  # merged again: the chain leads back to the full run
    again = merge_into_shipped(LAB, pair, recomputed, "again", store, root=root)
    assert again.manifest["merged_from"]["merged_from"]["key"] == "oldkey"


def test_a_kept_study_of_another_version_is_refused(part, tmp_path):
    pair, store, recomputed = part
    root = tmp_path / "shipped"
    ship_old(root, pair, {**current_versions(), "confidence": "confidence@0"})
    with pytest.raises(InvalidInputError, match=r"confidence cells were made by confidence@0.*recompute confidence"):
        merge_into_shipped(LAB, pair, recomputed, "the command", store, root=root)


def test_a_recomputed_study_must_cover_the_road(tiny_road, tmp_path):  # noqa: F811
    pair = load_pair("tiny", base_only=True)
    store = ResultStore(tmp_path / "store")
    two = run_cached(LAB, pair, Config(stages=("base", "sft"), studies=("diffing",), transfer=False), store=store,
                     notice=pytest.fail)
    ship_old(tmp_path / "shipped", pair, current_versions())
    with pytest.raises(InvalidInputError, match=r"diffing at every stage; missing: step2, dpo-step1, dpo"):
        merge_into_shipped(LAB, pair, two, "the command", store, root=tmp_path / "shipped")


@pytest.mark.parametrize("argv", [["--into-shipped"], ["--into-shipped", "--studies", "diffing", "--ship"],
                                  ["--into-shipped", "--studies", "diffing", "--stages", "sft"]])
def test_the_cli_refuses_a_merge_it_cannot_make_before_loading_anything(argv, tmp_path, capsys):
    from analyses.cli import main

    assert main(["lab", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --into-shipped is for the demo pair with --studies") and "\n" not in err
