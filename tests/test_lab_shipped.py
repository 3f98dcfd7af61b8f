"""The shipped lab run (assets/demo/results/lab/) on the demo pair: current for this code (its version names every
study's version), complete (every stage, study and panel series), its loss curves the committed training logs, one
cheap slice recomputed now (diffing at the first SFT checkpoint) equal to it, and the lab page showing it without a
click.

A study's new version makes the shipped run out of date until the whole lab is shipped again (88 min on the 2-core
machine). Then these tests check that it is marked so, honestly, by the store's own mechanism: the reason names the
version, the studies whose versions moved are the only difference, and the page warns instead of showing it; the
checks that do not depend on those studies (losses, the diffing slice, completeness) still run on the stored run."""
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from numeric import assert_argmax_agrees, forward_tolerance, logit_tolerance

from analyses import STUDIES, STUDY_NAMES, find_study
from analyses.lab import LAB, headline_rows, study_config
from analyses.store import SHIPPED_ROOT, config_json, read_result, shipped
from steering.pairs import load_beside, with_base_only
from steering.stages import stages, training_losses

pytestmark = pytest.mark.demo


@pytest.fixture(scope="module")
def found(demo_pair):
    return shipped(LAB, demo_pair)


def moved(versions: dict) -> set[str]:
    """The studies whose version in the shipped run is not the code's."""
    return {name for name in STUDY_NAMES if versions.get(name) != find_study(name).version}


@pytest.fixture(scope="module")
def result(found):
    """The shipped run: read by the store when current; when out of date, read from its folder (never shown)."""
    assert found is not None, "no shipped lab result for this demo pair (another fingerprint?)"
    if found.reason is None:
        return found.stored.result
    as_computed = replace(LAB, version=found.manifest["version"])  # the lab record of the version that wrote it
    return read_result(SHIPPED_ROOT / LAB.name, as_computed).result


def test_the_shipped_lab_is_current_or_honestly_out_of_date(found, result):
    stale = moved(result.versions)
    if found.reason is None:
        assert not stale
        return
    assert stale, found.reason  # out of date for another reason than a study's new version: ship the lab again
    assert found.reason.startswith("it was computed by version") and found.manifest["version"] != LAB.version
    for name in stale:
        assert result.versions[name] in found.reason and find_study(name).version in found.reason


def test_the_shipped_lab_covers_every_stage_study_and_series(result):
    table = result.timeline
    assert list(dict.fromkeys(table["stage"])) == [s.name for s in stages("demo")]
    stale = moved(result.versions)
    assert {n: v for n, v in result.versions.items() if n not in stale} == {
        name: find_study(name).version for name in STUDY_NAMES if name not in stale}
    for stage in table["stage"].unique():
        here = table[table.stage == stage]
        for study in STUDIES:
            if study.name in stale:  # its panel reads the new version's headline
                continue
            rows = here[here.study == study.name]
            assert set(study.lab.series) <= set(zip(rows.metric, rows.model)), (stage, study.name)
    assert set(result.transfer["stage"]) == set(table["stage"])
    assert {n: c for n, c in result.settings.items() if n not in stale} == {
        name: config_json(study_config(find_study(name))) for name in STUDY_NAMES if name not in stale}


def test_the_loss_curves_are_the_committed_training_logs(result):
    assert result.losses.reset_index(drop=True).equals(pd.DataFrame(training_losses("demo")))


def _answer_layer_is_a_near_tie(lens: pd.DataFrame, model: str, layers: range, tol: float) -> bool:
    """At every layer in `layers`, the final answer sits at the top-5 boundary within tol: its probability is a near
    tie with the 5th (when it is outside the top 5) or the 6th (inside)."""
    rows = lens[lens["model"] == model]
    answer = int(rows[(rows["layer"] == rows["layer"].max()) & (rows["rank"] == 1)]["token_id"].iloc[0])
    for layer in layers:
        here = rows[rows["layer"] == layer].set_index("rank")
        mine = here[here["token_id"] == answer]
        if mine.empty:
            return False
        rank, p = int(mine.index[0]), float(mine["prob"].iloc[0])
        if abs(p - float(here.loc[6 if rank <= 5 else 5, "prob"])) > 2 * tol:
            return False
    return True


@pytest.mark.numeric
def test_a_slice_recomputed_now_matches(demo_pair, result):
    """Diffing at the first SFT checkpoint, recomputed now. The shipped run was computed on another processor:
    values within tolerances written from the float32 arithmetic (tests/numeric.py), and the integer metrics (an
    argmax position or layer, a first layer in the top 5) equal or apart by a near tie."""
    study = find_study("diffing")
    stage = next(s for s in stages("demo") if s.name == "step36")
    pair = load_beside(with_base_only(demo_pair), stage.pair)
    run = study.run(pair, study_config(study))
    now = pd.DataFrame(headline_rows(stage, study.name, dict(study.headline(run))))
    shipped = result.timeline[(result.timeline.stage == "step36") & (result.timeline.study == "diffing")]
    merged = now.merge(shipped, on=["metric", "model"], suffixes=("_now", "_shipped"))
    assert len(merged) == len(now) == len(shipped) > 5
    dz = logit_tolerance(pair.post, pair.tokenizer)
    relative_tol = 2 * forward_tolerance(pair.post, 1.0)  # a difference of mean streams, relative to their norm
    for row in merged.itertuples(index=False):
        now_value, then = row.value_now, row.value_shipped
        name = row.metric
        if name.startswith("peak_kl_position_"):
            text = name.removeprefix("peak_kl_position_")
            kl = run.tokens[run.tokens["text"] == text]["kl_post_base"].reset_index(drop=True)
            assert_argmax_agrees(kl, int(then), 4 * dz + 2 * dz * kl.max())
        elif name == "difference_peak_layer":
            assert_argmax_agrees(run.difference_norms.iloc[:-1]["relative"], int(then), relative_tol)
        elif name.startswith("answer_top5_layer_"):
            lens = run.lens[run.lens["text"] == name.removeprefix("answer_top5_layer_")]
            low, high = sorted((int(now_value), int(then)))
            assert low == high or _answer_layer_is_a_near_tie(lens, row.model, range(low, high), 2 * dz), name
        elif name == "difference_peak_relative_norm":
            assert abs(now_value - then) <= relative_tol, name
        elif "_tv_" in name:
            assert abs(now_value - then) <= 2 * dz, name  # TV moves by up to 2Δz
        else:  # a KL: log-probabilities off by 2Δz, weights p by p·2Δz
            assert abs(now_value - then) <= 4 * dz + 2 * dz * abs(then), name


def test_the_lab_page_shows_the_shipped_run_without_a_click_or_says_it_is_out_of_date(found, result, monkeypatch,
                                                                                      tmp_path):
    from streamlit.testing.v1 import AppTest

    from app_pages.ui.pair_picker import PairRequest

    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app_pages" / "7_Lab.py"),
                           default_timeout=300)
    at.session_state["pair_request"] = PairRequest("demo")
    at.run()
    assert not at.exception and not at.error
    if found.reason is not None:  # one message: shown, with the studies whose version moved named, and what Run does
        stale = moved(result.versions)
        assert not at.warning and len(at.info) == 1, [m.value for m in (*at.warning, *at.info)]
        assert "Shown: the shipped run" in at.info[0].value and all(name in at.info[0].value for name in stale)
        assert "Press **Run**" in at.info[0].value and "No result" not in at.info[0].value
        assert len(at.get("vega_lite_chart")) == 1 + len(STUDY_NAMES) + 1
        return
    assert any("shipped with the project" in c.value for c in at.caption)
    assert len(at.get("vega_lite_chart")) == 1 + len(STUDY_NAMES) + 1  # losses, a panel per study, transfer
    assert any("two models are in memory at once" in c.value for c in at.caption)


def test_the_lab_page_on_two_stages_of_the_road_shows_the_shipped_road():
    from streamlit.testing.v1 import AppTest

    from app_pages.ui.pair_picker import PairRequest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app_pages" / "7_Lab.py"),
                           default_timeout=600)
    at.session_state["pair_request"] = PairRequest("demo@step108..dpo")
    at.run()
    assert not at.exception and not at.error
    assert not at.warning and len(at.info) == 1, [m.value for m in (*at.warning, *at.info)]  # one message
    assert "the shipped run of the demo road" in at.info[0].value and "demo@step108..dpo" in at.info[0].value
    assert len(at.get("vega_lite_chart")) == 1 + len(STUDY_NAMES) + 1
