"""The shipped lab run (assets/demo/results/lab/) on the demo pair: current for this code (its version names every
study's version), complete (every stage, study and panel series), its loss curves the committed training logs, one
cheap slice recomputed now (diffing at the first SFT checkpoint) equal to it, and the lab page showing it without a
click."""
from pathlib import Path

import pandas as pd
import pytest

from analyses import STUDY_NAMES, find_study
from analyses.lab import LAB, PANELS, headline_rows, study_config
from analyses.store import config_json
from steering.pairs import load_beside, with_base_only
from steering.stages import stages, training_losses

pytestmark = pytest.mark.demo


@pytest.fixture(scope="module")
def result(shipped_result):
    return shipped_result(LAB)


def test_the_shipped_lab_covers_every_stage_study_and_series_with_the_current_versions(result):
    table = result.timeline
    assert list(dict.fromkeys(table["stage"])) == [s.name for s in stages("demo")]
    assert result.versions == {name: find_study(name).version for name in STUDY_NAMES}
    for stage in table["stage"].unique():
        here = table[table.stage == stage]
        for study, (series, _) in PANELS.items():
            rows = here[here.study == study]
            assert set(series) <= set(zip(rows.metric, rows.model)), (stage, study)
    assert set(result.transfer["stage"]) == set(table["stage"])
    assert result.settings == {name: config_json(study_config(find_study(name))) for name in STUDY_NAMES}


def test_the_loss_curves_are_the_committed_training_logs(result):
    assert result.losses.reset_index(drop=True).equals(pd.DataFrame(training_losses("demo")))


def test_a_slice_recomputed_now_matches(demo_pair, result):
    study = find_study("diffing")
    stage = next(s for s in stages("demo") if s.name == "step36")
    pair = load_beside(with_base_only(demo_pair), stage.pair)
    now = pd.DataFrame(headline_rows(stage, study.name, dict(study.headline(study.run(pair, study_config(study))))))
    shipped = result.timeline[(result.timeline.stage == "step36") & (result.timeline.study == "diffing")]
    merged = now.merge(shipped, on=["metric", "model"], suffixes=("_now", "_shipped"))
    assert len(merged) == len(now) == len(shipped) > 5
    assert (merged["value_now"] - merged["value_shipped"]).abs().max() < 1e-3


def test_the_lab_page_shows_the_shipped_run_without_a_click(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    from app_pages.ui.pair_picker import PairRequest

    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app_pages" / "7_Lab.py"),
                           default_timeout=300)
    at.session_state["pair_request"] = PairRequest("demo")
    at.run()
    assert not at.exception and not at.error
    assert any("shipped with the project" in c.value for c in at.caption)
    assert len(at.get("vega_lite_chart")) == 1 + len(PANELS) + 1  # losses, a panel per study, transfer
    assert any("two models are in memory at once" in c.value for c in at.caption)


def test_the_lab_page_on_two_stages_of_the_road_shows_the_shipped_road():
    from streamlit.testing.v1 import AppTest

    from app_pages.ui.pair_picker import PairRequest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app_pages" / "7_Lab.py"),
                           default_timeout=600)
    at.session_state["pair_request"] = PairRequest("demo@step108..dpo")
    at.run()
    assert not at.exception and not at.error
    assert any("the shipped run of the demo road" in c.value for c in at.caption)
    assert len(at.get("vega_lite_chart")) == 1 + len(PANELS) + 1
